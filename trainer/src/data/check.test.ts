import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseTrainerConfig } from '../config/index.ts';
import { checkDataset } from './check.ts';
import { datasetMain } from './cli.ts';
import { loadDataset } from './index.ts';
import { encodeNifti, writeNifti } from './nifti.ts';

const shape: [number, number, number] = [6, 5, 4];
const ramp = Array.from({ length: 120 }, (_, i) => i);
const labels = Array.from({ length: 120 }, (_, i) => (i % 7 === 0 ? 1 : 0));

/** An MSD-layout dataset: case names -> how to write them. */
function msd(cases: Record<string, (img: string, lbl: string) => void>): string {
  const root = mkdtempSync(join(tmpdir(), 'msd-'));
  mkdirSync(join(root, 'imagesTr'));
  mkdirSync(join(root, 'labelsTr'));
  const training = Object.entries(cases).map(([id, write]) => {
    const image = `./imagesTr/${id}.nii.gz`;
    const label = `./labelsTr/${id}.nii.gz`;
    write(join(root, image), join(root, label));
    return { image, label };
  });
  writeFileSync(join(root, 'dataset.json'), JSON.stringify({ name: 'toy', modality: { '0': 'MRI' }, labels: { '0': 'background', '1': 'thing' }, training }));
  return root;
}

const good = (img: string, lbl: string) => {
  writeNifti(img, { shape, datatype: 'int16', data: ramp });
  writeNifti(lbl, { shape, datatype: 'uint8', data: labels });
};

function capture() {
  const out: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  return out;
}

afterEach(() => vi.restoreAllMocks());

describe('iacnas dataset check', () => {
  it('passes a good dataset and prints its summary', async () => {
    const root = msd({ a: good, b: good, c: good });
    const out = capture();
    expect(await datasetMain(['check', root])).toBe(0);
    const text = out.join('\n');
    expect(text).toMatch(/cases\s+3 \(3 readable\)/);
    expect(text).toMatch(/shape\s+6 x 5 x 4 voxels/);
    expect(text).toMatch(/intensity 0\.000 \.\. 119\.0/);
    expect(text).toMatch(/voxels per value: 0: \d+, 1: \d+/);
  });

  it('names each bad file and exits non-zero, reporting all of them at once', async () => {
    const root = msd({
      a_good: good,
      b_nolabel: (img) => writeNifti(img, { shape, datatype: 'int16', data: ramp }),
      c_shape: (img, lbl) => {
        writeNifti(img, { shape, datatype: 'int16', data: ramp });
        writeNifti(lbl, { shape: [5, 6, 4], datatype: 'uint8', data: labels });
      },
      d_truncated: (img, lbl) => {
        const bytes = encodeNifti({ shape, datatype: 'float32', data: ramp }, false);
        writeFileSync(img, gzipSync(bytes.subarray(0, 400)));
        writeNifti(lbl, { shape, datatype: 'uint8', data: labels });
      },
      e_notnifti: (img, lbl) => {
        writeFileSync(img, `P5 6 5 255\n${'x'.repeat(500)}`);
        writeNifti(lbl, { shape, datatype: 'uint8', data: labels });
      },
      f_datatype: (img, lbl) => {
        const bytes = encodeNifti({ shape, datatype: 'uint8', data: labels }, false);
        new DataView(bytes.buffer).setInt16(70, 1792, true); // complex128
        writeFileSync(img, gzipSync(bytes));
        writeNifti(lbl, { shape, datatype: 'uint8', data: labels });
      },
      g_badlabel: (img, lbl) => {
        writeNifti(img, { shape, datatype: 'int16', data: ramp });
        writeNifti(lbl, { shape, datatype: 'uint8', data: labels.map((v) => v * 3) });
      },
    });
    const out = capture();
    expect(await datasetMain(['check', root])).toBe(1);
    const text = out.join('\n');
    expect(text).toMatch(/6 problem\(s\)/);
    expect(text).toMatch(/labelsTr\/b_nolabel\.nii\.gz: label file missing for case b_nolabel/);
    expect(text).toMatch(/labelsTr\/c_shape\.nii\.gz: shape 5x6x4 does not match its image .*c_shape\.nii\.gz \(6x5x4\)/);
    expect(text).toMatch(/imagesTr\/d_truncated\.nii\.gz: truncated/);
    expect(text).toMatch(/imagesTr\/e_notnifti\.nii\.gz: not a NIfTI-1 file/);
    expect(text).toMatch(/imagesTr\/f_datatype\.nii\.gz: unsupported NIfTI datatype code 1792/);
    expect(text).toMatch(/labelsTr\/g_badlabel\.nii\.gz: label value\(s\) 3 not named in dataset\.json/);
    expect(text).toMatch(/cases\s+7 \(1 readable\)/);

    // loadDataset refuses the same directory before reading any voxel, naming every file.
    const config = parseTrainerConfig({ dataset: { format: 'msd', path: root } }).dataset;
    const err = await loadDataset(config).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/6 problem\(s\) found before loading/);
    for (const name of ['b_nolabel', 'c_shape', 'd_truncated', 'e_notnifti', 'f_datatype', 'g_badlabel']) expect(err?.message).toContain(name);
  });

  it('reports an empty dataset and a missing dataset.json', async () => {
    const empty = msd({});
    const out = capture();
    expect(await datasetMain(['check', empty])).toBe(1);
    expect(out.join('\n')).toMatch(/the dataset has no cases/);
    const nowhere = mkdtempSync(join(tmpdir(), 'nojson-'));
    expect(await datasetMain(['check', nowhere])).toBe(1);
    expect(out.join('\n')).toMatch(/dataset\.json: missing/);
    expect(await datasetMain(['check'])).toBe(2);
  });

  it('writes the phantom in nnU-Net layout and checks it', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'ph-')), 'phantom');
    const out = capture();
    expect(await datasetMain(['phantom', '--out', dir, '--cases', '3', '--seed', '1'])).toBe(0);
    const report = checkDataset(dir);
    expect(report.problems).toEqual([]);
    expect(report.summary?.format).toBe('nnunet');
    expect(report.summary?.cases).toBe(3);
    expect(Object.keys(report.summary?.labelVoxels ?? {}).sort()).toEqual(['0', '1', '2', '3']);
    expect(await datasetMain(['phantom', '--out', dir, '--cases', 'many'])).toBe(2);
    expect(out.join('\n')).toMatch(/--cases must be a positive whole number/);
  });

  it('passes real MSD hippocampus cases, float32 labels included', () => {
    // A subset: 4 of the real cases copied into a dataset of their own (hippocampus_003 has
    // float32 labels); paths in dataset.json must stay inside the dataset directory.
    const real = resolve('../shared/data/msd-hippocampus');
    const root = mkdtempSync(join(tmpdir(), 'hippo-'));
    const ids = ['hippocampus_003', 'hippocampus_004', 'hippocampus_006', 'hippocampus_243'];
    for (const d of ['imagesTr', 'labelsTr']) {
      mkdirSync(join(root, d));
      for (const id of ids) copyFileSync(join(real, d, `${id}.nii.gz`), join(root, d, `${id}.nii.gz`));
    }
    const training = ids.map((id) => ({ image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` }));
    writeFileSync(
      join(root, 'dataset.json'),
      JSON.stringify({ name: 'Hippocampus', modality: { '0': 'MRI' }, labels: { '0': 'background', '1': 'Anterior', '2': 'Posterior' }, training }),
    );
    const report = checkDataset(root);
    expect(report.problems).toEqual([]);
    expect(report.summary?.goodCases).toBe(4);
    expect(report.summary?.labelDatatypes.float32).toBe(2);
    expect(report.summary?.spacing.k).toEqual({ min: 1, max: 1 });
    expect(report.warnings.filter((w) => /float32/.test(w))).toHaveLength(2);
  });
});
