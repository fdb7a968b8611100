// Evaluation on each scan's own grid, with networks whose answer is known, on small
// datasets written as real NIfTI files.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { DatasetConfig, parseTrainerConfig } from '../config/index.ts';
import { openCases } from '../data/index.ts';
import type { NetworkOptions } from '../model/api.ts';
import { type EvalCases, evaluateCases, readGenotype, runEvaluate } from './evaluate.ts';
import { bruteDice, bruteHd95 } from '../../testing/eval/brute-force.ts';
import { type TestCase, ellipsoidCase, writeMsdDataset } from '../../testing/eval/datasets.ts';
import { fakeKit, fakeNet } from '../../testing/eval/fake-net.ts';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
});

// Anisotropic voxels: 0.75 mm along i, 0.875 mm along j, 3 mm slices along k (the slicing axis).
const SPACING: [number, number, number] = [0.75, 0.875, 3];
const LESION = ['background', 'lesion'];

function lesionCases(prefix: string, n: number): TestCase[] {
  return Array.from({ length: n }, (_, c) => ellipsoidCase(`${prefix}_${c}`, [16, 16, 6], SPACING, [6 + (c % 3), 8, 2.5], [4, 5, 2]));
}

function openDir(dir: string, axis: 'auto' | 'i' | 'j' | 'k' = 'auto'): EvalCases {
  const { name, classNames, reader } = openCases(DatasetConfig.parse({ format: 'msd', path: dir, sliceSize: 16, axis }));
  return { name, classNames, reader, ids: reader.cases.map((c) => c.id), axis };
}

const options = (numClasses: number): NetworkOptions => ({ backbone: parseTrainerConfig({}).backbone, inChannels: 1, numClasses, cells: 'none', seed: 0 });

describe('evaluation on the native grid', () => {
  it('scores a perfect segmenter 1 / 0 mm and measures a shifted one in millimetres on the scan grid', async () => {
    const tcs = lesionCases('t', 2);
    const cases = openDir(writeMsdDataset(mkdtempSync(join(tmpdir(), 'eval-native-')), tcs, LESION));
    const lines: string[] = [];
    const nets = [
      { label: 'IAC', net: fakeNet(options(2), 'sign') },
      { label: 'shifted', net: fakeNet(options(2), 'shift') },
      { label: 'U-Net', net: fakeNet(options(2), 'background') },
    ];
    const [sign, shift, none] = await evaluateCases(nets, cases, { sliceSize: 16, numClasses: 2, log: (l) => lines.push(l) });
    expect(sign.map((p) => p.id)).toEqual(['t_0', 't_1']);
    for (const [c, tc] of tcs.entries()) {
      expect(sign[c]).toEqual({ id: tc.id, dice: [1], hd95: [0], sliceDice: [1], shape: [16, 16, 6], spacing: SPACING, axis: 'k' });
      // The shifted network's prediction on the scan's grid is the truth moved one voxel
      // along j (the slices' columns), the first column empty. The volume is i fastest, so
      // as [k][j][i] its spacing is [3, 0.875, 0.75].
      const [nx, ny, nz] = tc.shape;
      const expected = new Uint8Array(tc.labels.length);
      for (let k = 0; k < nz; k++)
        for (let j = 1; j < ny; j++) for (let i = 0; i < nx; i++) expected[i + nx * (j + ny * k)] = tc.labels[i + nx * (j - 1 + ny * k)];
      expect(shift[c].dice[0]).toBeCloseTo(bruteDice(expected, tc.labels, 1), 12);
      expect(shift[c].dice[0]).toBeLessThan(1);
      const hd = bruteHd95(expected, tc.labels, 1, [nz, ny, nx], [3, 0.875, 0.75])!;
      expect(hd).toBeGreaterThan(0);
      expect(shift[c].hd95[0]).toBeCloseTo(hd, 9);
      // Finding nothing: Dice 0 and the scan's diagonal in mm.
      expect(none[c].dice).toEqual([0]);
      expect(none[c].hd95[0]).toBeCloseTo(Math.hypot(16 * 0.75, 16 * 0.875, 6 * 3), 9);
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(
      /^evaluate \[1\/2\] t_0 \(16x16x6, slices across k\): IAC Dice 1\.0000, HD95 0\.00 mm; shifted Dice 0\.8667, HD95 0\.88 mm; U-Net Dice 0\.0000, HD95 25\.77 mm/,
    );
  });

  it('resamples back to a scan whose slices are not the slice size, along any axis', async () => {
    // 20 x 12 in-plane voxels, resized to 16 x 16 for the network and back for the metrics.
    const tc = ellipsoidCase('odd_0', [20, 12, 7], [0.6, 1.1, 2.5], [10, 6, 3], [6, 4, 2.5]);
    const dir = writeMsdDataset(mkdtempSync(join(tmpdir(), 'eval-odd-')), [tc], LESION);
    const net = [{ label: 'IAC', net: fakeNet(options(2), 'sign') }];
    const [[auto]] = await evaluateCases(net, openDir(dir), { sliceSize: 16, numClasses: 2 });
    expect(auto.shape).toEqual([20, 12, 7]);
    expect(auto.axis).toBe('k');
    // Two resamplings of a smooth blob lose little: close to 1, measured on the 20 x 12 x 7 grid.
    expect(auto.dice[0]).toBeGreaterThan(0.9);
    expect(auto.hd95[0]).toBeLessThanOrEqual(1.1);
    // Slices across i instead: 12 x 7 slices; the result is still on the scan's grid.
    const [[alongI]] = await evaluateCases(net, openDir(dir, 'i'), { sliceSize: 16, numClasses: 2 });
    expect(alongI.axis).toBe('i');
    expect(alongI.shape).toEqual([20, 12, 7]);
    expect(alongI.dice[0]).toBeGreaterThan(0.85);
  });
});

describe('the evaluate phase', () => {
  function workdirWith(opts: { baseline: boolean }): { workdir: string; genotype: unknown; training: Record<string, unknown> } {
    const workdir = mkdtempSync(join(tmpdir(), 'evaluate-'));
    const genotype = {
      cells: [
        {
          nodes: [
            [
              { input: 0, op: 'conv_3x3' },
              { input: 1, op: 'skip_connect' },
            ],
          ],
        },
      ],
    };
    writeFileSync(join(workdir, 'genotype.json'), JSON.stringify(genotype));
    mkdirSync(join(workdir, 'retrain', 'model'), { recursive: true });
    writeFileSync(join(workdir, 'retrain', 'model', 'weights.json'), JSON.stringify({ mode: 'sign' }));
    const training = {
      cells: 'none',
      startedFrom: 'backbone',
      epochs: 7,
      maxEpochs: 10,
      stepsPerEpoch: 4,
      batchSize: 8,
      learningRate: 0.001,
      seed: 0,
      bestValDice: 0.5,
    };
    if (opts.baseline) {
      mkdirSync(join(workdir, 'baseline', 'model'), { recursive: true });
      writeFileSync(join(workdir, 'baseline', 'model', 'weights.json'), JSON.stringify({ mode: 'background' }));
      writeFileSync(join(workdir, 'baseline', 'training.json'), JSON.stringify(training));
    }
    return { workdir, genotype, training };
  }

  it('evaluates the test split, the baseline trained with the same budget and each external dataset', async () => {
    const root = mkdtempSync(join(tmpdir(), 'evaluate-data-'));
    const own = writeMsdDataset(join(root, 'own'), lesionCases('own', 5), LESION);
    const ext = writeMsdDataset(join(root, 'ext'), lesionCases('site2', 3), LESION);
    const { workdir, genotype, training } = workdirWith({ baseline: true });
    const config = parseTrainerConfig({
      name: 'toy-run',
      dataset: { format: 'msd', path: own, sliceSize: 16 },
      evaluate: { baseline: true, external: [{ name: 'other-site', format: 'msd', path: ext }] },
      search: { nodes: 1 },
    });
    const created: NetworkOptions[] = [];
    const lines: string[] = [];
    const r = await runEvaluate({ config, workdir, kit: fakeKit(created), log: (l) => lines.push(l) });
    expect(created.map((c) => c.cells)).toEqual([genotype, 'none']);
    expect(created.every((c) => c.numClasses === 2)).toBe(true);
    expect(r).toMatchObject({ ok: true, meanDice: 1, dicePerClass: { lesion: 1 }, hd95: 0, baselineMeanDice: 0, diceGain: 1 });
    expect(r.external).toEqual([{ name: 'other-site', cases: 3, meanDice: 1, dicePerClass: { lesion: 1 }, hd95: 0 }]);

    const results = JSON.parse(readFileSync(join(workdir, 'results.json'), 'utf8'));
    expect(results).toMatchObject({
      dataset: 'TestSet',
      split: 'test',
      grid: 'native',
      classNames: LESION,
      sliceSize: 16,
      modality: 'MRI',
      axis: 'auto',
      diceGain: 1,
    });
    expect(results.model.patients).toHaveLength(1); // 20 % of 5 patients
    expect(results.model.patients[0]).toMatchObject({ dice: [1], hd95: [0], sliceDice: [1], shape: [16, 16, 6], spacing: SPACING, axis: 'k' });
    expect(results.model.sliceMeanDice).toBe(1);
    expect(results.baseline.meanDice).toBe(0);
    expect(results.baselineTraining).toEqual(training);
    expect(results.external).toHaveLength(1);
    expect(results.external[0]).toMatchObject({ name: 'other-site', path: ext, cases: 3, model: { meanDice: 1 }, baseline: { meanDice: 0 } });
    expect(results.conventions.join(' ')).toMatch(/own voxel grid/);

    const extResults = JSON.parse(readFileSync(join(workdir, 'external', 'other-site', 'results.json'), 'utf8'));
    expect(extResults).toMatchObject({ split: 'all', grid: 'native', path: ext, run: workdir });
    expect(extResults.model.patients.map((p: { id: string }) => p.id)).toEqual(['site2_0', 'site2_1', 'site2_2']);
    expect(
      readFileSync(join(workdir, 'external', 'other-site', 'patients.csv'), 'utf8')
        .trim()
        .split('\n'),
    ).toHaveLength(1 + 6);

    const csv = readFileSync(join(workdir, 'patients.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('patient,model,dice_lesion,dice_mean,hd95_lesion_mm,slice_dice_mean');
    expect(csv[1]).toMatch(/^own_\d,iac,1\.0000,1\.0000,0\.0000,1\.0000$/);
    expect(csv[2]).toMatch(/^own_\d,baseline,0\.0000,0\.0000,\d+\.\d{4},0\.0000$/);
    expect(readFileSync(join(workdir, 'report.html'), 'utf8')).toContain('toy-run');
    expect(lines.filter((l) => /^evaluate other-site \[\d\/3\] site2_\d/.test(l))).toHaveLength(3);
    expect(lines.some((l) => /gain of the cells 1\.0000/.test(l))).toBe(true);
  });

  it('names what is missing or does not match, before evaluating anything', async () => {
    const root = mkdtempSync(join(tmpdir(), 'evaluate-bad-'));
    const own = writeMsdDataset(join(root, 'own'), lesionCases('own', 3), LESION);
    const three = writeMsdDataset(join(root, 'three'), [ellipsoidCase('x_0', [16, 16, 6], SPACING, [8, 8, 3], [5, 5, 2], true)], ['background', 'a', 'b']);
    const kit = fakeKit();
    const dataset = { format: 'msd', path: own, sliceSize: 16 };

    const empty = mkdtempSync(join(tmpdir(), 'evaluate-missing-'));
    await expect(runEvaluate({ config: parseTrainerConfig({ dataset }), workdir: empty, kit })).rejects.toThrow(
      /genotype\.json not found: run the prune phase first/,
    );
    writeFileSync(
      join(empty, 'genotype.json'),
      JSON.stringify({
        cells: [
          [
            [
              [0, 'conv_3x3'],
              [1, 'skip_connect'],
            ],
          ],
        ],
      }),
    );
    expect(readGenotype(join(empty, 'genotype.json')).cells[0].nodes[0][1]).toEqual({ input: 1, op: 'skip_connect' });
    await expect(runEvaluate({ config: parseTrainerConfig({ dataset }), workdir: empty, kit })).rejects.toThrow(
      /retrain[/\\]model not found: run the retrain phase first/,
    );

    const { workdir } = workdirWith({ baseline: false });
    await expect(runEvaluate({ config: parseTrainerConfig({ dataset, evaluate: { baseline: true } }), workdir, kit })).rejects.toMatchObject({
      kind: 'file',
      message: expect.stringMatching(/baseline[/\\]model not found: run the retrain phase again with evaluate\.baseline: true/),
    });

    const mismatch = parseTrainerConfig({ dataset, evaluate: { external: [{ name: 'three', format: 'msd', path: three }] } });
    await expect(runEvaluate({ config: mismatch, workdir, kit })).rejects.toMatchObject({
      kind: 'data',
      message: expect.stringMatching(
        /^evaluate\.external\[0\] \(three\): .* labels 3 classes \(background, a, b\) but the model predicts 2 \(background, lesion\)/,
      ),
    });
    const missing = parseTrainerConfig({ dataset, evaluate: { external: [{ name: 'gone', format: 'nnunet', path: join(root, 'nowhere') }] } });
    await expect(runEvaluate({ config: missing, workdir, kit })).rejects.toMatchObject({
      name: 'DataError',
      message: expect.stringMatching(/^evaluate\.external\[0\] \(gone\): .*dataset\.json: missing/),
    });
    expect(existsSync(join(workdir, 'results.json'))).toBe(false);

    expect(() =>
      parseTrainerConfig({
        evaluate: {
          external: [
            { name: 'a', format: 'msd', path: own },
            { name: 'a', format: 'nnunet', path: three },
          ],
        },
      }),
    ).toThrow(/evaluate\.external\.1\.name: 'a' is used twice/);
    expect(() => parseTrainerConfig({ evaluate: { external: [{ name: 'Site_2', format: 'msd', path: own }] } })).toThrow(
      /evaluate\.external\.0\.name: must be a DNS label/,
    );
  });
});
