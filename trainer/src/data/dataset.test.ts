import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseTrainerConfig } from '../config/index.ts';
import { isBadInput } from '../../../contract/src/index.ts';
import { trainerMain } from '../cli.ts';
import { checkDataset, writePhantomDataset } from './check.ts';
import { loadDataset } from './index.ts';
import { encodeNifti, readNiftiRaw, writeNifti } from './nifti.ts';
import { splitPatients } from './split.ts';
import type { SliceDataset, SliceSource } from './types.ts';

const phantomConfig = (over: Record<string, unknown> = {}) => parseTrainerConfig({ dataset: { cases: 10, ...over } }).dataset;

function all(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

describe('loadDataset on the built-in phantom', () => {
  it('splits at patient level: no patient on two sides, every slice accounted for', async () => {
    const ds = await loadDataset(phantomConfig());
    expect(ds.numClasses).toBe(4);
    expect(ds.classNames).toEqual(['background', 'LV', 'MYO', 'RV']);
    expect(ds.channels).toBe(1);
    const sides = [ds.train, ds.val, ds.test];
    const ids = sides.map((s) => new Set(s.patients.map((p) => p.id)));
    expect(ids[0].size + ids[1].size + ids[2].size).toBe(10);
    for (let a = 0; a < 3; a++) for (let b = a + 1; b < 3; b++) for (const id of ids[a]) expect(ids[b].has(id)).toBe(false);
    for (const s of sides) {
      // ref() agrees with patients[].slices, and slices are in slicing-axis order.
      for (const p of s.patients) {
        for (const [k, si] of p.slices.entries()) expect(s.ref(si)).toEqual({ patient: p.id, index: k });
        expect(p.slices.length).toBe(p.shape[2]); // the phantom's largest spacing is along k
        expect(p.spacing[2]).toBeGreaterThan(5);
      }
      expect(s.patients.reduce((t, p) => t + p.slices.length, 0)).toBe(s.length);
    }
  });

  it('gives normalised slices of the configured size with all classes present', async () => {
    const ds = await loadDataset(phantomConfig({ sliceSize: 24 }));
    const b = await ds.train.batch(all(ds.train.length));
    expect(b.images.length).toBe(b.n * 24 * 24);
    expect(b.labels.length).toBe(b.n * 24 * 24);
    const counts = [0, 0, 0, 0];
    for (const l of b.labels) counts[l]++;
    for (const c of counts) expect(c).toBeGreaterThan(0);
    let sum = 0;
    for (const v of b.images) sum += v;
    expect(Math.abs(sum / b.images.length)).toBeLessThan(0.2); // z-scored per volume
  });

  it('is deterministic by seed and differs between seeds', async () => {
    const a = await loadDataset(phantomConfig({ seed: 3 }));
    const b = await loadDataset(phantomConfig({ seed: 3 }));
    const c = await loadDataset(phantomConfig({ seed: 4 }));
    expect(a.test.patients.map((p) => p.id)).toEqual(b.test.patients.map((p) => p.id));
    const ba = await a.train.batch([0, 5, 9]);
    const bb = await b.train.batch([0, 5, 9]);
    expect(ba.images).toEqual(bb.images);
    const bc = await c.train.batch([0, 5, 9]);
    expect(bc.images).not.toEqual(ba.images);
  });

  it('augments image and label with the same geometric transform', async () => {
    const ds = await loadDataset(phantomConfig({ augment: { flip: true, rotate90: true, intensityScale: 0 } }));
    const i = ds.train.patients[0].slices[4];
    const plain = await ds.train.batch([i]);
    let seed = 1;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const size = ds.sliceSize;
    let changed = 0;
    for (let t = 0; t < 8; t++) {
      const aug = await ds.train.batch([i], { augment: true, random });
      // Every output pixel's (image, label) pair exists in the source at the mapped position:
      // checking the multiset of pairs catches a transform applied to only one of them.
      const key = (img: Float32Array, lbl: Int32Array) =>
        Array.from(img, (v, k) => `${v.toFixed(5)}:${lbl[k]}`)
          .sort()
          .join(',');
      expect(key(aug.images, aug.labels)).toBe(key(plain.images, plain.labels));
      if (aug.labels.some((l, k) => l !== plain.labels[k])) changed++;
      expect(aug.images.length).toBe(size * size);
    }
    expect(changed).toBeGreaterThan(0);
  });

  it('reads the same data from the phantom written to disk in nnU-Net layout', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'phantom-'));
    writePhantomDataset(dir, 6, 2);
    const mem: SliceDataset = await loadDataset(phantomConfig({ cases: 6, seed: 2 }));
    const disk: SliceDataset = await loadDataset(parseTrainerConfig({ dataset: { format: 'nnunet', path: dir, seed: 2 } }).dataset);
    expect(disk.classNames).toEqual(mem.classNames);
    expect(disk.test.patients).toEqual(mem.test.patients);
    const a = await mem.val.batch(all(mem.val.length));
    const b = await disk.val.batch(all(disk.val.length));
    expect(b.labels).toEqual(a.labels);
    for (let k = 0; k < a.images.length; k += 97) expect(b.images[k]).toBeCloseTo(a.images[k], 4);
  });
});

describe('loadDataset on real MRI (MSD hippocampus, 5 cases)', () => {
  it('loads the first cases, including a float32 label file, sliced along the last axis', async () => {
    const config = parseTrainerConfig({ dataset: { format: 'msd', path: '../shared/data/msd-hippocampus', cases: 5, sliceSize: 32 } }).dataset;
    const ds = await loadDataset(config);
    expect(ds.name).toBe('Hippocampus');
    expect(ds.numClasses).toBe(3);
    const ids = [ds.train, ds.val, ds.test].flatMap((s) => s.patients.map((p) => p.id)).sort();
    expect(ids).toEqual(['hippocampus_003', 'hippocampus_004', 'hippocampus_006', 'hippocampus_008', 'hippocampus_011']);
    const p003 = [ds.train, ds.val, ds.test].flatMap((s) => s.patients).find((p) => p.id === 'hippocampus_003')!;
    expect(p003.slices.length).toBe(p003.shape[2]); // 1 mm isotropic: a tie, so the last axis
    const b = await ds.train.batch(all(ds.train.length));
    const seen = new Set(b.labels);
    expect([...seen].sort()).toEqual([0, 1, 2]);
  });
});

describe('dataset.json details', () => {
  it("reads the modality for 'auto' normalisation and honours an explicit one", async () => {
    const { openCases } = await import('./index.ts');
    const dir = mkdtempSync(join(tmpdir(), 'ct-'));
    writePhantomDataset(dir, 3, 0);
    const json = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8'));
    writeFileSync(join(dir, 'dataset.json'), JSON.stringify({ ...json, channel_names: { '0': 'CT' } }));
    const cfg = (over: Record<string, unknown>) => parseTrainerConfig({ dataset: { format: 'nnunet', path: dir, ...over } }).dataset;
    expect(openCases(cfg({})).reader.modality).toBe('CT');
    expect(openCases(cfg({ modality: 'MRI' })).reader.modality).toBe('MRI');
    expect(openCases(phantomConfig()).reader.modality).toBe('MRI');
  });

  it('uses the first N cases by id and refuses fewer than 3 patients', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'few-'));
    writePhantomDataset(dir, 4, 0);
    const ds = await loadDataset(parseTrainerConfig({ dataset: { format: 'nnunet', path: dir, cases: 3 } }).dataset);
    expect([ds.train, ds.val, ds.test].flatMap((s) => s.patients.map((p) => p.id)).sort()).toEqual(['phantom_000', 'phantom_001', 'phantom_002']);
    rmSync(join(dir, 'labelsTr', 'phantom_003.nii.gz'));
    rmSync(join(dir, 'imagesTr', 'phantom_003_0000.nii.gz'));
    rmSync(join(dir, 'labelsTr', 'phantom_002.nii.gz'));
    rmSync(join(dir, 'imagesTr', 'phantom_002_0000.nii.gz'));
    await expect(loadDataset(parseTrainerConfig({ dataset: { format: 'nnunet', path: dir } }).dataset)).rejects.toThrow(
      /2 case\(s\); a train\/val\/test split needs at least 3 patients/,
    );
  });
});

describe('training reads cases with the checks of iacnas dataset check', () => {
  /** A phantom dataset on disk in which `bad` (a training patient) gets `spoil` applied to its image. */
  function spoiled(spoil: (file: string) => void): { dir: string; file: string } {
    const dir = mkdtempSync(join(tmpdir(), 'spoiled-'));
    writePhantomDataset(dir, 6, 0);
    const ids = Array.from({ length: 6 }, (_, i) => `phantom_00${i}`);
    const bad = splitPatients(ids, { train: 0.6, val: 0.2, test: 0.2 }, 0).train[0];
    const file = join(dir, 'imagesTr', `${bad}_0000.nii.gz`);
    spoil(file);
    return { dir, file };
  }
  const withNaN = (file: string) => {
    const { header, raw } = readNiftiRaw(file);
    const data = Float32Array.from(raw);
    data[100] = NaN;
    data[101] = Infinity;
    writeNifti(file, { shape: header.shape, spacing: header.spacing, datatype: 'float32', data });
  };
  async function failure(source: SliceSource): Promise<Error | undefined> {
    try {
      for (let i = 0; i < source.length; i += 16) await source.batch(all(Math.min(16, source.length - i)).map((k) => k + i));
    } catch (e) {
      return e as Error;
    }
    return undefined;
  }

  it('refuses NaN/Inf intensities when the case is read, naming the file and the voxel (bad input: exit status 2)', async () => {
    const { dir, file } = spoiled(withNaN);
    expect(checkDataset(dir).problems).toEqual([expect.stringContaining(`${file}: holds NaN or infinite intensities (first: NaN at voxel (`)]);
    const ds = await loadDataset(parseTrainerConfig({ dataset: { format: 'nnunet', path: dir } }).dataset);
    const err = await failure(ds.train);
    expect(err?.name).toBe('DataError');
    expect(err?.message).toMatch(/_0000\.nii\.gz: holds NaN or infinite intensities \(first: NaN at voxel \(\d+, \d+, \d+\)\)/);
    expect(err?.message).toContain(file);
    expect(isBadInput(err)).toBe(true);
    expect(await failure(ds.val)).toBeUndefined(); // the other patients still read
  });

  it('refuses a header that does not describe the data before loading, like the check', async () => {
    const { dir, file } = spoiled((f) => {
      const bytes = encodeNifti({ shape: [4, 4, 4], datatype: 'float32', data: new Float32Array(64) }, false);
      new DataView(bytes.buffer).setInt16(70, 2, true); // uint8 header on float32 voxels
      writeFileSync(f, bytes);
    });
    expect(checkDataset(dir).problems).toEqual([expect.stringContaining(`${file}: holds 608 bytes but the header describes 416`)]);
    await expect(loadDataset(parseTrainerConfig({ dataset: { format: 'nnunet', path: dir } }).dataset)).rejects.toThrow(
      /1 problem\(s\) found before loading.*\n.*_0000\.nii\.gz: holds 608 bytes but the header describes 416/,
    );
  });

  it('a search phase on a dataset with a NaN image exits with status 2 naming the file', async () => {
    const { dir, file } = spoiled(withNaN);
    const workdir = mkdtempSync(join(tmpdir(), 'nan-run-'));
    const config = {
      seed: 0,
      dataset: { format: 'nnunet', path: dir, sliceSize: 16 },
      backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1 },
      search: { maxEpochs: 2, warmupEpochs: 1, batchSize: 4, stepsPerEpoch: 2, nodes: 1, operations: ['none', 'skip_connect'] },
    };
    const err: string[] = [];
    const code = await trainerMain(['search', '--workdir', workdir, '--config-json', JSON.stringify(config)], {
      stdout: { write: () => true },
      stderr: { write: (t: string) => err.push(t) },
      env: {},
    });
    expect(code, err.join('')).toBe(2);
    expect(err.join('')).toContain(`${file}: holds NaN or infinite intensities`);
  });
});
