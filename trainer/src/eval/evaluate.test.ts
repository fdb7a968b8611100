import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseTrainerConfig } from '../config/index.ts';
import type { PatientInfo, SliceBatch, SliceDataset, SliceSource } from '../data/types.ts';
import type { Network, NetworkOptions } from '../model/api.ts';
import type { ModelKit } from '../train/model-kit.ts';
import { evaluatePatients, readGenotype, runEvaluate } from './evaluate.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/**
 * Slices whose image holds the label value itself, so a network that rounds its
 * input is a perfect segmenter. Slices are stored in reverse order, so rebuilding
 * a volume in storage order instead of slicing-axis order would be caught.
 */
class LabelImageSource implements SliceSource {
  readonly patients: PatientInfo[] = [];
  readonly slicesData: Int32Array[] = [];
  constructor(volumes: { id: string; slices: number[][]; spacing: [number, number, number] }[], size: number) {
    for (const v of volumes) {
      const base = this.slicesData.length;
      const count = v.slices.length;
      for (let s = count - 1; s >= 0; s--) this.slicesData.push(Int32Array.from(v.slices[s]));
      this.patients.push({ id: v.id, slices: v.slices.map((_, s) => base + (count - 1 - s)), spacing: v.spacing, shape: [size, size, count] });
    }
  }
  get length() {
    return this.slicesData.length;
  }
  ref(i: number) {
    const p = this.patients.find((q) => q.slices.includes(i))!;
    return { patient: p.id, index: p.slices.indexOf(i) };
  }
  async batch(indices: readonly number[]): Promise<SliceBatch> {
    const plane = this.slicesData[0].length;
    const images = new Float32Array(indices.length * plane);
    const labels = new Int32Array(indices.length * plane);
    indices.forEach((i, b) => {
      labels.set(this.slicesData[i], b * plane);
      images.set(Float32Array.from(this.slicesData[i]), b * plane);
    });
    return { images, labels, n: indices.length };
  }
}

/** A "network" that segments by rounding its input, or predicts background only. */
function fakeNet(options: NetworkOptions): Network & { mode: string } {
  const net = {
    options,
    mode: 'round',
    apply(x: tf.Tensor4D): tf.Tensor4D {
      return tf.tidy(() => {
        const k = options.numClasses;
        const cls = net.mode === 'round' ? tf.cast(tf.squeeze(tf.clipByValue(tf.round(x), 0, k - 1), [3]), 'int32') : tf.zeros(x.shape.slice(0, 3), 'int32');
        return tf.mul(tf.oneHot(cls as tf.Tensor3D, k), 10) as tf.Tensor4D;
      });
    },
    backboneVariables: [],
    cellVariables: [],
    namedWeights: () => new Map(),
    dispose() {},
  };
  return net;
}

const created: NetworkOptions[] = [];
const kit = {
  createNetwork(options: NetworkOptions) {
    created.push(options);
    return fakeNet(options);
  },
  async loadWeights(net: Network, dir: string) {
    (net as Network & { mode: string }).mode = JSON.parse(readFileSync(join(dir, 'weights.json'), 'utf8')).mode;
  },
} as unknown as ModelKit;

// Patient A: a column of class 1 across slices 0-1 of 5 (1x1 slices), predicted at slices 0-3 by
// the "shifted" image below; patient B: class 2 in one slice.
function dataset(): { data: SliceDataset; source: LabelImageSource } {
  const source = new LabelImageSource(
    [
      { id: 'A', slices: [[1], [1], [0], [0], [0]], spacing: [1, 1, 2] },
      { id: 'B', slices: [[0], [2], [0]], spacing: [1, 1, 3] },
    ],
    1,
  );
  const data: SliceDataset = { name: 'toy', numClasses: 3, classNames: ['background', 'one', 'two'], sliceSize: 1, channels: 1, train: source, val: source, test: source };
  return { data, source };
}

describe('patient-level evaluation', () => {
  it('rebuilds volumes in slicing-axis order and measures them in millimetres', async () => {
    const { data, source } = dataset();
    // Make the prediction of patient A cover slices 0-3 while the truth covers 0-1: images of
    // slices 2 and 3 say 1, labels say 0.
    const a = source.patients[0];
    const batch = source.batch.bind(source);
    source.batch = async (indices) => {
      const b = await batch(indices);
      indices.forEach((i, k) => {
        if (i === a.slices[2] || i === a.slices[3]) b.images[k] = 1;
      });
      return b;
    };
    const net = fakeNet({ backbone: parseTrainerConfig({}).backbone, inChannels: 1, numClasses: 3, cells: 'none', seed: 0 });
    const [pa, pb] = await evaluatePatients(net, data, source, { batchSize: 2 });
    expect(pa.id).toBe('A');
    expect(pa.dice[0]).toBeCloseTo((2 * 2) / (2 + 4), 12);
    // Hand-computed in metrics.test.ts: 1.75 voxels along the slice axis, here 2 mm slices.
    expect(pa.hd95[0]).toBeCloseTo(3.5, 12);
    expect(pa.dice[1]).toBe(1); // class 2 absent from both
    expect(pa.hd95[1]).toBeNull();
    expect(pb.dice).toEqual([1, 1]);
    expect(pb.hd95).toEqual([null, 0]);
    expect(pa.spacing).toEqual([2, 1, 1]);
  });

  it('runEvaluate writes results.json, patients.csv and report.html, with the baseline', async () => {
    const { data } = dataset();
    const workdir = mkdtempSync(join(tmpdir(), 'evaluate-'));
    const genotype = { cells: [{ nodes: [[{ input: 0, op: 'conv_3x3' }, { input: 1, op: 'skip_connect' }]] }] };
    writeFileSync(join(workdir, 'genotype.json'), JSON.stringify(genotype));
    mkdirSync(join(workdir, 'retrain', 'model'), { recursive: true });
    writeFileSync(join(workdir, 'retrain', 'model', 'weights.json'), JSON.stringify({ mode: 'round' }));
    mkdirSync(join(workdir, 'backbone'), { recursive: true });
    writeFileSync(join(workdir, 'backbone', 'weights.json'), JSON.stringify({ mode: 'background' }));
    const config = parseTrainerConfig({ name: 'toy-run', evaluate: { baseline: true }, search: { nodes: 1 } });
    created.length = 0;
    const lines: string[] = [];
    const r = await runEvaluate({ config, workdir, kit, data, log: (l) => lines.push(l) });
    expect(created[0].cells).toEqual(genotype);
    expect(created[1].cells).toBe('none');
    expect(r.ok).toBe(true);
    expect(r.meanDice).toBe(1);
    expect(r.dicePerClass).toEqual({ one: 1, two: 1 });
    expect(r.hd95).toBe(0);
    const results = JSON.parse(readFileSync(join(workdir, 'results.json'), 'utf8'));
    expect(results.model.patients.map((p: { id: string }) => p.id)).toEqual(['A', 'B']);
    // Baseline predicts background only: Dice 0 where a class exists, 1 where it is absent.
    expect(results.baseline.patients[0].dice).toEqual([0, 1]);
    expect(results.baseline.dicePerClass).toEqual({ one: 0.5, two: 0.5 });
    expect(results.diceGain).toBeCloseTo(0.5, 12);
    // A missed class gets the volume diagonal: patient A, 5 slices of 2 mm and a 1x1 mm plane.
    expect(results.baseline.patients[0].hd95[0]).toBeCloseTo(Math.hypot(10, 1, 1), 12);
    const csv = readFileSync(join(workdir, 'patients.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('patient,model,dice_one,dice_two,dice_mean,hd95_one_mm,hd95_two_mm');
    expect(csv).toContain('A,iac,1.0000,1.0000,1.0000,0.0000,');
    expect(csv).toHaveLength(5);
    const html = readFileSync(join(workdir, 'report.html'), 'utf8');
    expect(html).toContain('toy-run: IAC-LTH search report');
    expect(html).toContain('U-Net (baseline)');
    expect(lines.some((l) => /mean Dice 1\.0000/.test(l))).toBe(true);
  });

  it('names the missing input of the evaluate phase', async () => {
    const { data } = dataset();
    const workdir = mkdtempSync(join(tmpdir(), 'evaluate-missing-'));
    const config = parseTrainerConfig({});
    await expect(runEvaluate({ config, workdir, kit, data })).rejects.toThrow(/genotype\.json not found: run the prune phase first/);
    writeFileSync(join(workdir, 'genotype.json'), JSON.stringify({ cells: [[[[0, 'conv_3x3'], [1, 'skip_connect']]]] }));
    expect(readGenotype(join(workdir, 'genotype.json')).cells[0].nodes[0][1]).toEqual({ input: 1, op: 'skip_connect' });
    await expect(runEvaluate({ config, workdir, kit, data })).rejects.toThrow(/retrain[/\\]model not found: run the retrain phase first/);
  });
});
