// `iacnas predict`: label maps for new scans, one NIfTI per scan on the scan's own
// grid. The output header is the scan's own header (dimensions, pixdim, units,
// qform/sform codes, quaternion and srow rows unchanged), so the label map opens
// aligned with the scan in ITK-SNAP or 3D Slicer; only what describes the voxel data
// changes: uint8, no scaling, intent "label", display range 0..classes-1.
import { existsSync, mkdirSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { checkIntensities } from '../data/layout.ts';
import { DataError, type NiftiHeader, readNifti, readNiftiHeaderBytes } from '../data/nifti.ts';
import { type Modality, chooseAxis } from '../data/slicing.ts';
import type { Network } from '../model/api.ts';
import { segmentVolume } from './segment.ts';
import { badInput } from '../util/bad-input.ts';
import { writeFileAtomic } from '../util/atomic.ts';

/** NIfTI-1 intent code of a label map (NIFTI_INTENT_LABEL). */
export const NIFTI_INTENT_LABEL = 1002;

/**
 * A NIfTI-1 single file holding `labels` (uint8, i fastest) with the header of the
 * scan they belong to (`template`: its 348 header bytes as stored).
 */
export function encodeLabelNifti(template: Uint8Array, labels: Uint8Array, o: { numClasses: number; description?: string; gzip: boolean }): Uint8Array {
  const view0 = new DataView(template.buffer, template.byteOffset, template.byteLength);
  const le = view0.getInt32(0, true) === 348;
  const ndim = view0.getInt16(40, le);
  const dims = [1, 2, 3].map((d) => (d <= ndim ? view0.getInt16(40 + 2 * d, le) : 1));
  if (dims[0] * dims[1] * dims[2] !== labels.length) {
    throw new Error(`encodeLabelNifti: ${labels.length} labels for a ${dims.join('x')} header`);
  }
  const voxOffset = 352;
  const bytes = new Uint8Array(voxOffset + labels.length);
  bytes.set(template.subarray(0, 348));
  const v = new DataView(bytes.buffer);
  v.setFloat32(56, 0, le); // intent_p1..p3
  v.setFloat32(60, 0, le);
  v.setFloat32(64, 0, le);
  v.setInt16(68, NIFTI_INTENT_LABEL, le);
  v.setInt16(70, 2, le); // datatype uint8
  v.setInt16(72, 8, le); // bitpix
  v.setFloat32(108, voxOffset, le);
  v.setFloat32(112, 1, le); // scl_slope, scl_inter: stored values are the classes
  v.setFloat32(116, 0, le);
  v.setFloat32(124, o.numClasses - 1, le); // cal_max, cal_min: the display range
  v.setFloat32(128, 0, le);
  v.setInt32(140, 0, le); // glmax, glmin (unused)
  v.setInt32(144, 0, le);
  bytes.fill(0, 148, 228);
  const descrip = (o.description ?? 'iacnas predict').slice(0, 79);
  for (let i = 0; i < descrip.length; i++) bytes[148 + i] = descrip.charCodeAt(i) & 0x7f;
  bytes.fill(0, 328, 344);
  const name = 'labels';
  for (let i = 0; i < name.length; i++) bytes[328 + i] = name.charCodeAt(i);
  bytes.fill(0, 348, 352); // no extensions
  bytes.set(labels, voxOffset);
  return o.gzip ? gzipSync(bytes, { level: 6 }) : bytes;
}

const NIFTI_NAME = /\.nii(\.gz)?$/;

/** The NIfTI files of a directory (not its subdirectories), sorted by name. */
export function niftiFilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => NIFTI_NAME.test(f) && !f.startsWith('.'))
    .sort()
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

/**
 * The output file of an input scan: `<case>_seg.nii.gz`, where the case is the file
 * name without .nii/.nii.gz and without nnU-Net's channel suffix _0000; or, with
 * `keepName`, the input's own file name.
 */
export function outputName(input: string, keepName: boolean): string {
  const name = basename(input);
  if (keepName) return NIFTI_NAME.test(name) ? name : `${name}.nii.gz`;
  return `${name.replace(NIFTI_NAME, '').replace(/_0000$/, '')}_seg.nii.gz`;
}

function realOrResolved(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

/**
 * Output path of every input, refusing (bad input, nothing written) an output that
 * would replace an input file or two inputs that would be written to the same file.
 */
export function planOutputs(inputs: readonly string[], out: string, keepName: boolean): string[] {
  const real = new Map(inputs.map((f) => [realOrResolved(f), f]));
  const taken = new Map<string, string>();
  return inputs.map((input) => {
    const output = join(out, outputName(input, keepName));
    const key = join(realOrResolved(dirname(output)), basename(output));
    const clash = real.get(key);
    if (clash !== undefined) {
      throw badInput('usage', `refusing to overwrite the input ${clash} with its label map; choose another --out${keepName ? ' or drop --keep-names' : ''}`);
    }
    const other = taken.get(key);
    if (other !== undefined) {
      throw badInput('usage', `${other} and ${input} would both be written to ${output}; predict them into different --out directories`);
    }
    taken.set(key, input);
    return output;
  });
}

export interface PredictOptions {
  net: Network;
  inputs: readonly string[];
  /** Output path of each input (planOutputs). */
  outputs: readonly string[];
  /** The trainer configuration's dataset section (axis setting, slice size). */
  axis: 'auto' | 'i' | 'j' | 'k';
  sliceSize: number;
  numClasses: number;
  modality: Modality;
  batchSize?: number;
  /** Written into each output's descrip field. */
  description?: string;
  /** A progress line per scan. */
  log?: (line: string) => void;
}

export interface PredictOutcome {
  written: { input: string; output: string; shape: [number, number, number]; seconds: number }[];
  failed: { input: string; message: string }[];
}

const mm = (v: number) => String(Number(v.toFixed(3)));

/** Segments every input; a bad file is reported and skipped, the others are still written. */
export async function predictFiles(o: PredictOptions): Promise<PredictOutcome> {
  const log = o.log ?? (() => {});
  const outcome: PredictOutcome = { written: [], failed: [] };
  const n = o.inputs.length;
  for (let i = 0; i < n; i++) {
    const input = o.inputs[i];
    const output = o.outputs[i];
    const tag = `predict [${i + 1}/${n}] ${input}`;
    const started = performance.now();
    try {
      if (!existsSync(input)) throw new DataError(`${input}: no such file`, input);
      const template = readNiftiHeaderBytes(input);
      const { header, data } = readNifti(input);
      checkIntensities(input, data, header.shape);
      const axis = chooseAxis(o.axis, header.spacing);
      const seg = await segmentVolume(o.net, data, header.shape, axis, o.modality, {
        sliceSize: o.sliceSize,
        numClasses: o.numClasses,
        batchSize: o.batchSize,
      });
      mkdirSync(dirname(output), { recursive: true });
      writeFileAtomic(output, encodeLabelNifti(template, seg.labels, { numClasses: o.numClasses, description: o.description, gzip: output.endsWith('.gz') }));
      const seconds = (performance.now() - started) / 1000;
      outcome.written.push({ input, output, shape: [...header.shape], seconds });
      log(`${tag}: ${describe(header)}, ${seg.count} slices across ${'ijk'[axis]} -> ${output} (${seconds.toFixed(1)} s)`);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      outcome.failed.push({ input, message });
      log(`${tag}: failed: ${message}`);
    }
  }
  return outcome;
}

function describe(h: NiftiHeader): string {
  return `${h.shape.join('x')} voxels of ${h.spacing.map(mm).join('x')} mm`;
}
