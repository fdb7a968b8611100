import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { ProgressReporter } from '../report/progress.ts';
import { fakeDataset } from '../../testing/search/fake-data.ts';
import { fakeModelKit } from '../../testing/search/fake-model.ts';
import { namedVariables, validate } from './common.ts';
import { readHistory } from './history.ts';
import { type SupervisedOptions, nearZeroDiceLine, trainSupervised, trainingPaths } from './supervised.ts';

const data = fakeDataset({ patients: 6 });

async function train(root: string, over: Partial<SupervisedOptions> = {}, prepare?: (net: ReturnType<typeof fakeModelKit.createNetwork>) => void) {
  const net = fakeModelKit.createNetwork({
    backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1, learningRate: 1e-3 },
    inChannels: 1,
    numClasses: 2,
    cells: 'none',
    seed: 1,
  });
  prepare?.(net);
  const events: string[] = [];
  const lines: string[] = [];
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
      reporter: new ProgressReporter({
        phase: 'retrain',
        stdout: { write: (t: string) => events.push(t) },
        stderr: { write: (t: string) => lines.push(t) },
        env: {},
      }),
      events: true,
      label: 'retrain',
      ...over,
    });
    const weights = [...net.namedWeights()].map(([n, v]) => [n, Array.from(v.dataSync())]);
    const val = await validate(net, data, data.val, fakeModelKit.loss, 4);
    return { r, weights, val, events, stderr: lines.join('') };
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

  it('explains a validation Dice of 0 in the first epochs, and says when it has become a problem', async () => {
    // A head that always scores background highest, and a learning rate that keeps it so.
    const background = (net: ReturnType<typeof fakeModelKit.createNetwork>) => {
      const head = net.backboneVariables[1];
      head.assign(tf.tidy(() => tf.concat([tf.ones([...head.shape.slice(0, 3), 1]), tf.fill([...head.shape.slice(0, 3), 1], -1)], 3)));
    };
    const { r, stderr, events } = await train(
      tmp(),
      { learningRate: 1e-12, epochs: 6, label: 'backbone', fields: { learningRate: 'backbone.learningRate', stepsPerEpoch: 'search.stepsPerEpoch' } },
      background,
    );
    expect(r.bestValDice).toBe(0);
    const expected = stderr.split('\n').filter((l) => l.includes('is expected in the first epochs'));
    expect(expected).toHaveLength(1);
    expect(expected[0]).toMatch(
      /^backbone: validation Dice 0\.0000 in epoch 1 is expected in the first epochs: the foreground is \d+(\.\d)?% of the validation pixels, .* still near 0 at epoch 4 of 6/,
    );
    const problem = stderr.split('\n').filter((l) => l.includes('still 0.0000'));
    expect(problem).toEqual([
      expect.stringMatching(/^backbone: validation Dice is still 0\.0000 after 4 of 6 epochs: .* raise backbone\.learningRate or search\.stepsPerEpoch/),
    ]);
    // The progress events are unchanged by it.
    expect(events.filter((e) => e.includes('"progress"'))).toHaveLength(6);
  });

  it('explains a Dice of 0 once while it is early, and warns once at two thirds of the epochs', () => {
    const at = (o: Partial<Parameters<typeof nearZeroDiceLine>[0]>) =>
      nearZeroDiceLine({
        label: 'retrain',
        epoch: 3,
        epochs: 30,
        valDice: 0,
        foreground: 0.016,
        noted: false,
        fields: { learningRate: 'lr', stepsPerEpoch: 'steps' },
        ...o,
      });
    // Dice 0.04 by chance in epoch 1, then 0 while the network learns the background: explained.
    expect(at({ epoch: 1, valDice: 0.04 })).toBeUndefined();
    expect(at({})?.kind).toBe('expected');
    expect(at({})?.line).toContain('the foreground is 1.6% of the validation pixels');
    expect(at({})?.line).toContain('still near 0 at epoch 20 of 30');
    expect(at({ epoch: 10, noted: true })).toBeUndefined(); // said once
    expect(at({ epoch: 20, noted: true })?.kind).toBe('problem');
    expect(at({ epoch: 21, noted: true })).toBeUndefined(); // warned once
    expect(at({ epoch: 20, valDice: 0.2 })).toBeUndefined(); // it found the structures
    expect(at({ epoch: 2, epochs: 2 })?.kind).toBe('expected'); // too short to judge
  });

  it('records the CPU time of every epoch in the history', async () => {
    const root = tmp();
    await train(root, { epochs: 2 });
    const h = readHistory<{ epoch: number; epochCpuSeconds: number; epochSeconds: number }>(join(root, 'history.jsonl'));
    expect(h.map((e) => e.epoch)).toEqual([1, 2]);
    expect(h.every((e) => e.epochCpuSeconds > 0 && e.epochSeconds > 0)).toBe(true);
  });

  it('fails clearly when the loss diverges, keeping the last good checkpoint', async () => {
    const root = tmp();
    await expect(train(root, { learningRate: 1e30, epochs: 3 })).rejects.toThrow(/loss became (NaN|Infinity|-Infinity) in epoch 1; lower the learning rate/);
  });
});
