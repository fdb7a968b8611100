// `iacnas dataset check`: decodes every case of a raw dataset directory and reports
// what a training run would trip over, all cases at once, plus a summary of what the
// data holds. Also writes the phantom dataset to disk in nnU-Net v2 layout.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkHeaders, checkIntensities, type DatasetLayout, detectFormat, readLayout } from './layout.ts';
import { DataError, dataLimits, readNifti, readNiftiLabels, writeNifti } from './nifti.ts';
import { PHANTOM_CLASSES, phantomVolume } from './phantom.ts';
import type { RawFormat } from '../config/dataset.ts';

export interface RangeSummary {
  min: number;
  max: number;
}

export interface DatasetSummary {
  format: RawFormat;
  name: string;
  modality: string;
  classNames: string[];
  cases: number;
  /** Cases that passed every check. */
  goodCases: number;
  shape: { i: RangeSummary; j: RangeSummary; k: RangeSummary };
  spacing: { i: RangeSummary; j: RangeSummary; k: RangeSummary };
  imageDatatypes: Record<string, number>;
  labelDatatypes: Record<string, number>;
  /** Voxel counts per label value over all good cases. */
  labelVoxels: Record<string, number>;
  intensity: RangeSummary;
  seconds: number;
}

export interface CheckReport {
  summary?: DatasetSummary;
  problems: string[];
  warnings: string[];
}

function range(values: number[]): RangeSummary {
  return values.length === 0 ? { min: NaN, max: NaN } : { min: Math.min(...values), max: Math.max(...values) };
}

/** Checks a dataset directory thoroughly (every voxel of every case). */
export function checkDataset(dir: string, format?: RawFormat): CheckReport {
  const started = performance.now();
  const problems: string[] = [];
  const warnings: string[] = [];
  let layout: DatasetLayout;
  try {
    dataLimits(); // a bad IACNAS_MAX_* is reported once, not for every file
    layout = readLayout(dir, format ?? detectFormat(dir));
  } catch (e) {
    return { problems: [(e as Error).message], warnings };
  }
  const { ok, problems: headerProblems } = checkHeaders(layout.cases, layout.root);
  problems.push(...headerProblems);
  const shapes: number[][] = [[], [], []];
  const spacings: number[][] = [[], [], []];
  const imageTypes: Record<string, number> = {};
  const labelTypes: Record<string, number> = {};
  const labelVoxels: Record<string, number> = {};
  let lo = Infinity;
  let hi = -Infinity;
  let good = 0;
  for (const c of ok) {
    try {
      const img = readNifti(c.files.image);
      const { labels } = readNiftiLabels(c.files.label);
      const { min: caseLo, max: caseHi } = checkIntensities(c.files.image, img.data, img.header.shape);
      const counts = new Map<number, number>();
      for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
      const unknown = [...counts.keys()].filter((v) => v >= layout.classNames.length);
      if (unknown.length > 0) {
        throw new DataError(
          `${c.files.label}: label value(s) ${unknown.join(', ')} not named in dataset.json 'labels' (0..${layout.classNames.length - 1})`,
          c.files.label,
        );
      }
      if (c.image.spacing.some((s, d) => Math.abs(s - c.label.spacing[d]) > 1e-3 * Math.max(s, 1))) {
        warnings.push(
          `${c.files.label}: spacing ${c.label.spacing.join('x')} differs from its image (${c.image.spacing.join('x')}); the image spacing is used`,
        );
      }
      if (c.label.datatype !== 'uint8' && c.label.datatype !== 'int16' && c.label.datatype !== 'uint16' && c.label.datatype !== 'int8') {
        warnings.push(`${c.files.label}: labels stored as ${c.label.datatype} (whole numbers, accepted)`);
      }
      for (const [v, n] of counts) labelVoxels[v] = (labelVoxels[v] ?? 0) + n;
      lo = Math.min(lo, caseLo);
      hi = Math.max(hi, caseHi);
      for (let d = 0; d < 3; d++) {
        shapes[d].push(c.image.shape[d]);
        spacings[d].push(c.image.spacing[d]);
      }
      imageTypes[c.image.datatype] = (imageTypes[c.image.datatype] ?? 0) + 1;
      labelTypes[c.label.datatype] = (labelTypes[c.label.datatype] ?? 0) + 1;
      good++;
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  return {
    problems,
    warnings,
    summary: {
      format: layout.format,
      name: layout.name,
      modality: layout.modality,
      classNames: layout.classNames,
      cases: layout.cases.length,
      goodCases: good,
      shape: { i: range(shapes[0]), j: range(shapes[1]), k: range(shapes[2]) },
      spacing: { i: range(spacings[0]), j: range(spacings[1]), k: range(spacings[2]) },
      imageDatatypes: imageTypes,
      labelDatatypes: labelTypes,
      labelVoxels,
      intensity: { min: lo, max: hi },
      seconds: (performance.now() - started) / 1000,
    },
  };
}

/** Human-readable summary lines. */
export function formatSummary(s: DatasetSummary): string {
  const r = (x: RangeSummary, digits = 0) => (x.min === x.max ? x.min.toFixed(digits) : `${x.min.toFixed(digits)}-${x.max.toFixed(digits)}`);
  const types = (t: Record<string, number>) =>
    Object.entries(t)
      .map(([k, v]) => `${k} x${v}`)
      .join(', ');
  return [
    `dataset   ${s.name} (${s.format} layout, ${s.modality})`,
    `cases     ${s.cases} (${s.goodCases} readable)`,
    `classes   ${s.classNames.map((n, v) => `${v}=${n}`).join(', ')}`,
    `shape     ${r(s.shape.i)} x ${r(s.shape.j)} x ${r(s.shape.k)} voxels`,
    `spacing   ${r(s.spacing.i, 2)} x ${r(s.spacing.j, 2)} x ${r(s.spacing.k, 2)} mm`,
    `images    ${types(s.imageDatatypes)}`,
    `labels    ${types(s.labelDatatypes)}; voxels per value: ${Object.entries(s.labelVoxels)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ')}`,
    `intensity ${s.intensity.min.toPrecision(4)} .. ${s.intensity.max.toPrecision(4)}`,
    `checked in ${s.seconds.toFixed(1)} s`,
  ].join('\n');
}

/** Writes phantom patients 0..cases-1 as an nnU-Net v2 raw dataset. */
export function writePhantomDataset(dir: string, cases: number, seed: number): void {
  mkdirSync(join(dir, 'imagesTr'), { recursive: true });
  mkdirSync(join(dir, 'labelsTr'), { recursive: true });
  for (let i = 0; i < cases; i++) {
    const v = phantomVolume(seed, i);
    writeNifti(join(dir, 'imagesTr', `${v.id}_0000.nii.gz`), { shape: v.shape, spacing: v.spacing, datatype: 'float32', data: v.image });
    writeNifti(join(dir, 'labelsTr', `${v.id}.nii.gz`), { shape: v.shape, spacing: v.spacing, datatype: 'uint8', data: v.labels });
  }
  const labels = Object.fromEntries(PHANTOM_CLASSES.map((name, v) => [name, v]));
  const json = {
    name: 'phantom',
    description: `Synthetic cardiac short-axis MRI phantom (seed ${seed}): LV cavity, myocardium, right ventricle`,
    channel_names: { '0': 'MRI' },
    labels,
    numTraining: cases,
    file_ending: '.nii.gz',
  };
  writeFileSync(join(dir, 'dataset.json'), `${JSON.stringify(json, null, 2)}\n`);
}
