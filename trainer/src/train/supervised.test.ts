import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../backend/testing.ts';
import { ProgressReporter } from '../report/progress.ts';
import { fakeDataset } from '../search/testing/fake-data.ts';
import { fakeModelKit } from '../search/testing/fake-model.ts';
import { namedVariables, validate } from './common.ts';
import { readHistory } from './history.ts';
import { type SupervisedOptions, trainSupervised, trainingPaths } from './supervised.ts';

const quiet = { write: () => true };
const data = fakeDataset({ patients: 6 });

async function train(root: string, over: Partial<SupervisedOptions> = {}) {
  const net = fakeModelKit.createNetwork({ backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1, learningRate: 1e-3 }, inChannels: 1, numClasses: 2, cells: 'none', seed: 1 });
  const events: string[] = [];
  try {
    const r = await trainSupervised({
      net,
      loss: fakeModelKit.loss,
      data,
      vars: namedVariables(net, 'all'),
      epochs: 6,
      batchSize: 4,
      learningRate: 0.02,
      seed: 2,
      stream: 'test',
      ...trainingPaths(root),
      fingerprint: 'f',
      reporter: new ProgressReporter({ phase: 'retrain', stdout: { write: (t: string) => events.push(t) }, stderr: quiet, env: {} }),
      events: true,
      label: 'retrain',
      ...over,
    });
    const weights = [...net.namedWeights()].map(([n, v]) => [n, Array.from(v.dataSync())]);
    const val = await validate(net, data, data.val, fakeModelKit.loss, 4);
    return { r, weights, val, events };
  } finally {
    net.dispose();
  }
}

const tmp = () => mkdtempSync(join(tmpdir(), 'supervised-'));

describeEachBackend('trainSupervised', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('keeps the best-validation weights as the result', async () => {
    const { r, val, events } = await train(tmp());
    expect(r.epochs).toBe(6);
    expect(r.bestEpoch).toBeGreaterThan(0);
    expect(val.dice).toBeCloseTo(r.bestValDice, 6);
    expect(events.filter((e) => e.includes('"progress"'))).toHaveLength(6);
  });

  it('resumes exactly after an interruption', async () => {
    const whole = await train(tmp());
    const root = tmp();
    await expect(
      train(root, {
        onEpoch: (e) => {
          if (e === 2) throw new Error('killed');
        },
      }),
    ).rejects.toThrow('killed');
    const seen: number[] = [];
    const resumed = await train(root, { onEpoch: (e) => seen.push(e) });
    expect(seen).toEqual([3, 4, 5, 6]);
    expect(resumed.weights).toEqual(whole.weights);
    expect(resumed.r.bestValDice).toBe(whole.r.bestValDice);
    expect(readHistory(join(root, 'history.jsonl')).map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('stops early when validation Dice stops improving', async () => {
    const root = tmp();
    // A learning rate of ~0 freezes the model: Dice never improves after epoch 1.
    const { r } = await train(root, { learningRate: 1e-12, earlyStoppingPatience: 2, epochs: 20 });
    expect(r.stoppedEarly).toBe(true);
    expect(r.epochs).toBe(3);
    expect(r.bestEpoch).toBe(1);
  });

  it('refuses a checkpoint of another configuration', async () => {
    const root = tmp();
    await train(root, { epochs: 1 });
    await expect(train(root, { fingerprint: 'other' })).rejects.toThrow(/different configuration; use a new --workdir/);
  });

  it('does not leak tensors', async () => {
    const counts: number[] = [];
    await train(tmp(), { onEpoch: () => counts.push(tf.memory().numTensors) });
    expect(counts[4]).toBe(counts[1]);
  });

  it('fails clearly when the loss diverges, keeping the last good checkpoint', async () => {
    const root = tmp();
    await expect(train(root, { learningRate: 1e30, epochs: 3 })).rejects.toThrow(/loss became (NaN|Infinity|-Infinity) in epoch 1; lower the learning rate/);
  });
});
