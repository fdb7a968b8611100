import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { mulberry32 } from '../util/random.ts';
import { readCheckpoint, restoreVariables, writeCheckpoint } from './checkpoint.ts';
import { appendHistory, readHistory, truncateHistory } from './history.ts';
import { Adam, SgdMomentum, cosineLearningRate, useStackedUpdates, type NamedVariable } from './optimizers.ts';

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
    const a = tf.variable(
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
    );
    await writeCheckpoint(dir, { epoch: 1 }, new Map([['a', a]]));
    a.assign(
      tf.tensor2d([
        [5, 6],
        [7, 8],
      ]),
    );
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
    writeFileSync(
      file,
      `${readHistory(file)
        .map((r) => `${JSON.stringify(r)}\n`)
        .join('')}{"epoch": 5, "lo`,
    );
    expect(readHistory(file).map((r) => r.epoch)).toEqual([1, 2, 3, 4]);
    truncateHistory(file, 2);
    expect(readHistory(file).map((r) => r.epoch)).toEqual([1, 2]);
  });
});

// The optimizers update variables stacked by shape. Against a plain float64 reference
// of PyTorch's torch.nn.utils.clip_grad_norm_ followed by SGD(momentum, weight_decay)
// or Adam(weight_decay), over several steps and variables of mixed shapes, some
// without a gradient (pruned operations).

/** Deterministic values in [-1, 1). */
function prng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => 2 * next() - 1;
}

// Shape [3, 3, 2, 4] four times, [5, 6] three times, [2, 2] twice; a [1], and unique
// shapes [6, 5] (as many elements as [5, 6]), [7] and [3].
const SPECS: { name: string; shape: number[] }[] = [
  { name: 'cell0/edge0/conv/kernel', shape: [3, 3, 2, 4] },
  { name: 'cell0/edge1/conv/kernel', shape: [3, 3, 2, 4] },
  { name: 'cell1/edge0/conv/kernel', shape: [3, 3, 2, 4] },
  { name: 'cell1/edge1/conv/kernel', shape: [3, 3, 2, 4] },
  { name: 'cell0/pre0/kernel', shape: [5, 6] },
  { name: 'cell0/pre1/kernel', shape: [5, 6] },
  { name: 'cell1/pre0/kernel', shape: [5, 6] },
  { name: 'cell1/pre1/kernel', shape: [6, 5] },
  { name: 'cell0/norm/gamma', shape: [2, 2] },
  { name: 'cell1/norm/gamma', shape: [2, 2] },
  { name: 'head/bias', shape: [1] },
  { name: 'head/kernel', shape: [7] },
  { name: 'cell1/norm/beta', shape: [3] },
];
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const STEPS = 3;
const LEARNING_RATES = [0.1, 0.07, 0.04];
// Gradient magnitude per step: the global norm is clipped in steps 1 and 3, not in step 2.
const GRAD_SCALE = [3, 0.02, 1.5];
const GRAD_CLIP = 1;

/**
 * Which variables have a gradient in each step (0-based). With `resume`, one variable
 * skips step 2 only: SGD keeps no step count per variable, but PyTorch's Adam does
 * (the optimizer here counts steps globally), so the Adam case uses only variables
 * that stop for good, as a pruned operation does.
 */
function hasGrad(name: string, step: number, resume: boolean): boolean {
  if (name === 'cell0/pre1/kernel' || name === 'cell1/norm/beta') return false; // never: one of a group, and a shape of its own
  if (name === 'cell1/edge0/conv/kernel') return step < 2; // pruned before step 3
  if (resume && name === 'cell1/norm/gamma') return step !== 1; // its [2, 2] group is a single variable in step 2
  return true;
}

interface Problem {
  init: Float32Array[];
  grads: (Float32Array | undefined)[][];
}

function problem(seed: number, resume: boolean): Problem {
  const rand = prng(seed);
  const init = SPECS.map((s) => Float32Array.from({ length: size(s.shape) }, () => rand()));
  const grads = Array.from({ length: STEPS }, (_, step) =>
    SPECS.map((s) => {
      const g = Float32Array.from({ length: size(s.shape) }, () => rand() * GRAD_SCALE[step]);
      return hasGrad(s.name, step, resume) ? g : undefined;
    }),
  );
  return { init, grads };
}

/** torch.nn.utils.clip_grad_norm_(params, maxNorm): the factor applied to every gradient. */
function clipCoefficient(grads: readonly (Float64Array | undefined)[], maxNorm: number): number {
  let sq = 0;
  for (const g of grads) if (g) for (const v of g) sq += v * v;
  return Math.min(1, maxNorm / (Math.sqrt(sq) + 1e-6));
}

const f64 = (a: Float32Array | undefined) => (a ? Float64Array.from(a) : undefined);

/** torch.optim.SGD(lr, momentum, weight_decay) after clip_grad_norm_, in float64. */
function sgdReference(p: Problem, o: { momentum: number; weightDecay: number; gradClip: number }) {
  const params = p.init.map((a) => Float64Array.from(a));
  const velocity = p.init.map((a) => new Float64Array(a.length));
  const coefficients: number[] = [];
  p.grads.forEach((stepGrads, step) => {
    const grads = stepGrads.map(f64);
    const coef = clipCoefficient(grads, o.gradClip);
    coefficients.push(coef);
    grads.forEach((g, i) => {
      if (!g) return; // p.grad is None: the parameter and its momentum buffer stay
      for (let k = 0; k < g.length; k++) {
        const d = g[k] * coef + o.weightDecay * params[i][k];
        velocity[i][k] = o.momentum * velocity[i][k] + d;
        params[i][k] -= LEARNING_RATES[step] * velocity[i][k];
      }
    });
  });
  return { params, slots: { velocity }, coefficients };
}

/** torch.optim.Adam(lr, betas, eps, weight_decay) after clip_grad_norm_, in float64 (a step count per parameter). */
function adamReference(p: Problem, o: { beta1: number; beta2: number; epsilon: number; weightDecay: number; gradClip: number }) {
  const params = p.init.map((a) => Float64Array.from(a));
  const m = p.init.map((a) => new Float64Array(a.length));
  const v = p.init.map((a) => new Float64Array(a.length));
  const steps = p.init.map(() => 0);
  const coefficients: number[] = [];
  p.grads.forEach((stepGrads, step) => {
    const grads = stepGrads.map(f64);
    const coef = clipCoefficient(grads, o.gradClip);
    coefficients.push(coef);
    grads.forEach((g, i) => {
      if (!g) return;
      const t = ++steps[i];
      const bc1 = 1 - o.beta1 ** t;
      const bc2 = 1 - o.beta2 ** t;
      for (let k = 0; k < g.length; k++) {
        const d = g[k] * coef + o.weightDecay * params[i][k];
        m[i][k] = o.beta1 * m[i][k] + (1 - o.beta1) * d;
        v[i][k] = o.beta2 * v[i][k] + (1 - o.beta2) * d * d;
        const denom = Math.sqrt(v[i][k]) / Math.sqrt(bc2) + o.epsilon;
        params[i][k] -= (LEARNING_RATES[step] / bc1) * (m[i][k] / denom);
      }
    });
  });
  return { params, slots: { m, v }, coefficients };
}

/**
 * |actual - expected| <= 1e-5 * max(|expected|, 1% of the tensor's largest |expected|):
 * relative, except where float32 cancellation (a momentum or moment that sums to
 * nearly 0) leaves an element under 1% of its tensor's scale.
 */
function expectRelClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const tol = 1e-5 * Math.max(Math.abs(expected[i]), 1e-2 * scale);
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) throw new Error(`${what}[${i}]: ${actual[i]} vs reference ${expected[i]} (tolerance ${tol})`);
  }
}

function runOptimizer(
  make: (vars: NamedVariable[]) => SgdMomentum | Adam,
  p: Problem,
): { params: Float32Array[]; slots: Map<string, Float32Array>; step: number; slotNames: string[] } {
  const vars = SPECS.map((s, i) => ({ name: s.name, variable: tf.variable(tf.tensor(p.init[i], s.shape)) }));
  const opt = make(vars);
  const live = tf.memory().numTensors;
  p.grads.forEach((stepGrads, step) => {
    const grads = stepGrads.map((g, i) => (g ? tf.tensor(g, SPECS[i].shape) : undefined));
    opt.apply(grads, LEARNING_RATES[step]);
    tf.dispose(grads.filter((g): g is tf.Tensor => g !== undefined));
    expect(tf.memory().numTensors, `tensors after step ${step + 1}`).toBe(live);
  });
  const params = vars.map((v) => v.variable.dataSync().slice() as Float32Array);
  for (const [i, v] of vars.entries()) expect(v.variable.shape, `${v.name} keeps its shape`).toEqual(SPECS[i].shape);
  const slots = new Map([...opt.slots()].map(([k, t]) => [k, t.dataSync().slice() as Float32Array]));
  const result = { params, slots, step: opt.step, slotNames: [...opt.slots().keys()] };
  opt.dispose();
  for (const v of vars) v.variable.dispose();
  return result;
}

describeEachBackend(
  'stacked optimizer updates',
  (backend) => {
    beforeAll(async () => {
      await initBackend({ backend, quiet: true });
      expect(tf.getBackend()).toBe(backend);
    });

    afterEach(() => useStackedUpdates(true));

    afterAll(async () => {
      useStackedUpdates(true);
      await tf.setBackend('cpu');
    });

    it('updates the variables stacked by shape (Pack kernels and fewer kernels in all; none with useStackedUpdates(false))', async () => {
      const p = problem(3, true);
      const packs = async (stacked: boolean, make: (vars: NamedVariable[]) => SgdMomentum | Adam) => {
        useStackedUpdates(stacked);
        try {
          const vars = SPECS.map((s, i) => ({ name: s.name, variable: tf.variable(tf.tensor(p.init[i], s.shape)) }));
          const opt = make(vars);
          const grads = p.grads[0].map((g, i) => (g ? tf.tensor(g, SPECS[i].shape) : undefined));
          const kernels = (await tf.profile(() => opt.apply(grads, 0.1))).kernels.map((k) => k.name);
          tf.dispose(grads.filter((g): g is tf.Tensor => g !== undefined));
          opt.dispose();
          for (const v of vars) v.variable.dispose();
          return { pack: kernels.filter((k) => k === 'Pack').length, total: kernels.length };
        } finally {
          useStackedUpdates(true);
        }
      };
      for (const make of [
        (vars: NamedVariable[]) => new SgdMomentum(vars, { momentum: 0.9, weightDecay: 0.05, gradClip: GRAD_CLIP }),
        (vars: NamedVariable[]) => new Adam(vars, { weightDecay: 0.01, gradClip: GRAD_CLIP }),
      ]) {
        const stacked = await packs(true, make);
        const single = await packs(false, make);
        // Step 1 has gradients for all four [3, 3, 2, 4], two [5, 6] and both [2, 2]: three stacked groups.
        expect(stacked.pack).toBeGreaterThanOrEqual(3);
        expect(single.pack).toBe(0);
        expect(stacked.total).toBeLessThan(single.total);
      }
    });

    for (const stackedUpdates of [true, false]) {
      it(`SGD with momentum, weight decay and gradient clipping matches PyTorch over 3 steps, variables without a gradient untouched (${stackedUpdates ? 'stacked' : 'one by one'})`, () => {
        useStackedUpdates(stackedUpdates);
        const opts = { momentum: 0.9, weightDecay: 0.05, gradClip: GRAD_CLIP };
        const p = problem(1, true);
        const ref = sgdReference(p, opts);
        expect(
          ref.coefficients.map((c) => c < 1),
          'the clip is active in steps 1 and 3 only',
        ).toEqual([true, false, true]);
        const got = runOptimizer((vars) => new SgdMomentum(vars, opts), p);
        expect(got.step).toBe(3);
        expect(got.slotNames).toEqual(SPECS.map((s) => `${s.name}/velocity`));
        SPECS.forEach((s, i) => {
          expectRelClose(got.params[i], ref.params[i], s.name);
          expectRelClose(got.slots.get(`${s.name}/velocity`)!, ref.slots.velocity[i], `${s.name}/velocity`);
          if (p.grads.every((g) => !g[i])) {
            expect(Array.from(got.params[i]), `${s.name} has no gradient and keeps its value`).toEqual(Array.from(p.init[i]));
            expect(
              got.slots.get(`${s.name}/velocity`)!.every((v) => v === 0),
              `${s.name}/velocity stays 0`,
            ).toBe(true);
          }
        });
        // Not vacuous: had the skipping variable had a gradient in step 2, it would have ended elsewhere.
        const skipped = SPECS.findIndex((s) => s.name === 'cell1/norm/gamma');
        const withStep2 = sgdReference(
          { init: p.init, grads: p.grads.map((g, step) => g.map((x, i) => (i === skipped && step === 1 ? p.grads[0][i] : x))) },
          opts,
        );
        expect(Math.abs(withStep2.params[skipped][0] - ref.params[skipped][0])).toBeGreaterThan(1e-4);
      });
    }

    for (const stackedUpdates of [true, false]) {
      it(`Adam with weight decay and gradient clipping matches PyTorch over 3 steps, a pruned variable keeps its moments (${stackedUpdates ? 'stacked' : 'one by one'})`, () => {
        useStackedUpdates(stackedUpdates);
        const opts = { beta1: 0.5, beta2: 0.999, epsilon: 1e-8, weightDecay: 0.01, gradClip: GRAD_CLIP };
        const p = problem(2, false);
        const ref = adamReference(p, opts);
        expect(
          ref.coefficients.map((c) => c < 1),
          'the clip is active in steps 1 and 3 only',
        ).toEqual([true, false, true]);
        const got = runOptimizer((vars) => new Adam(vars, opts), p);
        expect(got.step).toBe(3);
        expect(got.slotNames).toEqual([...SPECS.map((s) => `${s.name}/m`), ...SPECS.map((s) => `${s.name}/v`)]);
        SPECS.forEach((s, i) => {
          expectRelClose(got.params[i], ref.params[i], s.name);
          expectRelClose(got.slots.get(`${s.name}/m`)!, ref.slots.m[i], `${s.name}/m`);
          expectRelClose(got.slots.get(`${s.name}/v`)!, ref.slots.v[i], `${s.name}/v`);
          if (p.grads.every((g) => !g[i])) {
            expect(Array.from(got.params[i]), `${s.name} has no gradient and keeps its value`).toEqual(Array.from(p.init[i]));
            expect(
              [...got.slots.get(`${s.name}/m`)!, ...got.slots.get(`${s.name}/v`)!].every((v) => v === 0),
              `${s.name} moments stay 0`,
            ).toBe(true);
          }
        });
      });
    }
  },
  ['cpu', 'wasm', 'tensorflow'],
);
