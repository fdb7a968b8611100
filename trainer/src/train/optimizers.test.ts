import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint, restoreVariables, writeCheckpoint } from './checkpoint.ts';
import { appendHistory, readHistory, truncateHistory } from './history.ts';
import { Adam, SgdMomentum, cosineLearningRate } from './optimizers.ts';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('optimizers', () => {
  it('SGD with momentum and weight decay follows the PyTorch update', () => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const opt = new SgdMomentum([{ name: 'w', variable: w }], { momentum: 0.9, weightDecay: 0.1 });
    const g = tf.tensor1d([0.5, 0.5]);
    opt.apply([g], 0.1);
    // v = g + 0.1 w = [0.6, 0.3]; w = w - 0.1 v = [0.94, -2.03]
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.94, 6), expect.closeTo(-2.03, 6)]);
    opt.apply([g], 0.1);
    // v = 0.9 [0.6, 0.3] + [0.5 + 0.094, 0.5 - 0.203] = [1.134, 0.567]; w -= 0.1 v
    expect(Array.from(w.dataSync())).toEqual([expect.closeTo(0.8266, 6), expect.closeTo(-2.0867, 6)]);
    opt.dispose();
  });

  it('clips the global gradient norm', () => {
    const a = tf.variable(tf.tensor1d([0]));
    const b = tf.variable(tf.tensor1d([0]));
    const opt = new SgdMomentum(
      [
        { name: 'a', variable: a },
        { name: 'b', variable: b },
      ],
      { momentum: 0, weightDecay: 0, gradClip: 5 },
    );
    opt.apply([tf.tensor1d([30]), tf.tensor1d([40])], 1); // norm 50 -> scaled by 0.1
    expect(a.dataSync()[0]).toBeCloseTo(-3, 5);
    expect(b.dataSync()[0]).toBeCloseTo(-4, 5);
  });

  it('Adam takes a first step of about lr in the direction against the gradient', () => {
    const w = tf.variable(tf.tensor1d([1, 1]));
    const opt = new Adam([{ name: 'w', variable: w }], { beta1: 0.5, beta2: 0.999 });
    opt.apply([tf.tensor1d([2, -0.01])], 0.01);
    const v = w.dataSync();
    expect(v[0]).toBeCloseTo(0.99, 5);
    expect(v[1]).toBeCloseTo(1.01, 5);
    expect(opt.step).toBe(1);
    expect([...opt.slots().keys()]).toEqual(['w/m', 'w/v']);
  });

  it('cosine schedule runs from max to min', () => {
    expect(cosineLearningRate(0, 11, 0.025, 0.001)).toBeCloseTo(0.025, 10);
    expect(cosineLearningRate(5, 11, 0.025, 0.001)).toBeCloseTo(0.013, 10);
    expect(cosineLearningRate(10, 11, 0.025, 0.001)).toBeCloseTo(0.001, 10);
  });
});

describe('checkpoints and history', () => {
  it('round-trips tensors and state, replacing the previous checkpoint', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'ckpt-')), 'search');
    const a = tf.variable(tf.tensor2d([[1, 2], [3, 4]]));
    await writeCheckpoint(dir, { epoch: 1 }, new Map([['a', a]]));
    a.assign(tf.tensor2d([[5, 6], [7, 8]]));
    await writeCheckpoint(dir, { epoch: 2 }, new Map([['a', a]]));
    expect(readdirSync(dir).filter((f) => f.startsWith('tensors-'))).toHaveLength(1);
    const ck = readCheckpoint<{ epoch: number }>(dir)!;
    expect(ck.state.epoch).toBe(2);
    const b = tf.variable(tf.zeros([2, 2]));
    restoreVariables(ck.tensors, new Map([['a', b]]), 'test');
    expect(Array.from(b.dataSync())).toEqual([5, 6, 7, 8]);
    const c = tf.variable(tf.zeros([4]));
    expect(() => restoreVariables(ck.tensors, new Map([['a', c]]), 'test')).toThrow(/shape \[2,2\]/);
    expect(() => restoreVariables(ck.tensors, new Map([['missing', c]]), 'test')).toThrow(/no tensor 'missing'/);
    expect(readCheckpoint(join(dir, 'nothing'))).toBeNull();
  });

  it('cuts the history back to the checkpoint and ignores a torn line', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'hist-')), 'history.jsonl');
    for (let e = 1; e <= 4; e++) appendHistory(file, { epoch: e, loss: e / 10 });
    writeFileSync(file, readHistory(file).map((r) => JSON.stringify(r) + '\n').join('') + '{"epoch": 5, "lo');
    expect(readHistory(file).map((r) => r.epoch)).toEqual([1, 2, 3, 4]);
    truncateHistory(file, 2);
    expect(readHistory(file).map((r) => r.epoch)).toEqual([1, 2]);
  });
});
