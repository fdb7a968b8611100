import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { instanceNorm, normalizeSpatial, useReferenceNorm, useSpatialNorm } from './layers.ts';

describeEachBackend('instance norm', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('normalises every sample and channel to mean 0 and variance 1', () => {
    const x = tf.randomNormal([2, 5, 4, 3], 3, 2, 'float32', 1) as tf.Tensor4D;
    const y = instanceNorm(x);
    const { mean, variance } = tf.moments(y, [1, 2]);
    for (const m of mean.dataSync()) expect(Math.abs(m)).toBeLessThan(1e-5);
    for (const v of variance.dataSync()) expect(v).toBeCloseTo(1, 3);
  });

  it('has the gradient of its definition (finite differences, with affine parameters)', () => {
    const x = tf.randomNormal([2, 3, 3, 2], 0, 1, 'float32', 2) as tf.Tensor4D;
    const gamma = tf.tensor1d([1.5, -0.5]);
    const beta = tf.tensor1d([0.1, 0.2]);
    const r = tf.randomNormal([2, 3, 3, 2], 0, 1, 'float32', 3);
    const loss = (a: tf.Tensor) => tf.sum(tf.mul(tf.square(instanceNorm(a as tf.Tensor4D, gamma, beta)), r));
    const analytic = tf.grad(loss)(x).dataSync();
    const base = x.dataSync();
    const eps = 1e-2;
    for (let i = 0; i < base.length; i++) {
      const at = (d: number) => {
        const v = base.slice();
        v[i] += d;
        return tf.tidy(() => loss(tf.tensor(v, x.shape)).dataSync()[0]);
      };
      const numeric = (at(eps) - at(-eps)) / (2 * eps);
      expect(Math.abs(analytic[i] - numeric)).toBeLessThan(2e-2 * Math.max(1, Math.abs(numeric)));
    }
  });

  it('gives the same values and gradients as the textbook formulation', () => {
    const x = tf.randomNormal([2, 4, 6, 3], 1, 2, 'float32', 4) as tf.Tensor4D;
    const gamma = tf.tensor1d([1, 2, 3]);
    const r = tf.randomNormal([2, 4, 6, 3], 0, 1, 'float32', 5);
    const run = () => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(instanceNorm(a as tf.Tensor4D, gamma), r)))(x);
    const fast = run();
    useReferenceNorm(true);
    const ref = run();
    useReferenceNorm(false);
    expect(tf.max(tf.abs(tf.sub(fast, ref))).dataSync()[0]).toBeLessThan(1e-4);
    const fastValue = instanceNorm(x);
    useReferenceNorm(true);
    expect(tf.max(tf.abs(tf.sub(fastValue, instanceNorm(x)))).dataSync()[0]).toBeLessThan(1e-5);
    useReferenceNorm(false);
  });
});

/** max |a - b| over max(1e-6, max |b|). */
function relDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] / Math.max(1e-6, tf.max(tf.abs(b)).dataSync()[0]));
}

// The two layouts of the fast instance norm (statistics over axes 1 and 2 in place,
// or rows after a transpose), each forced on every backend, against the textbook one.
describeEachBackend(
  'instance norm layouts',
  (backend) => {
    beforeAll(async () => {
      await initBackend({ backend, quiet: true });
      expect(tf.getBackend()).toBe(backend);
    });

    afterEach(() => {
      useSpatialNorm(undefined);
      useReferenceNorm(false);
    });

    /** Values of sum(instanceNorm(x, gamma, beta) * r) and its gradients w.r.t. x, gamma, beta. */
    function normAndGrads(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, r: tf.Tensor): { y: tf.Tensor; grads: tf.Tensor[] } {
      const y = instanceNorm(x, gamma, beta);
      const grads = tf.grads((a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(instanceNorm(a as tf.Tensor4D, g, b), r)))([x, gamma, beta]);
      return { y, grads };
    }

    it('runs in place by default on tensorflow and wasm (no Transpose: the spatial layout, one kernel), and useSpatialNorm forces either layout', async () => {
      const x = tf.randomNormal([2, 4, 5, 3], 0, 1, 'float32', 40) as tf.Tensor4D;
      const transposes = async () => (await tf.profile(() => instanceNorm(x).dispose())).kernels.filter((k) => k.name === 'Transpose').length;
      useSpatialNorm(undefined);
      if (backend === 'cpu') expect(await transposes()).toBeGreaterThan(0);
      else expect(await transposes()).toBe(0);
      useSpatialNorm(true);
      expect(await transposes()).toBe(0);
      useSpatialNorm(false);
      expect(await transposes()).toBeGreaterThan(0);
      x.dispose();
    });

    for (const spatial of [true, false, undefined]) {
      it(`${spatial === undefined ? 'default' : spatial ? 'spatial' : 'rows'} layout: the reference's values and gradients (x, gamma, beta), a constant channel included`, () => {
        // H != W, odd sizes; sample 0 channel 1 is constant (variance 0: only eps keeps it finite).
        const x = tf.tidy(() => {
          const v = tf.randomNormal([2, 5, 3, 4], 1.5, 2, 'float32', 41).bufferSync();
          for (let i = 0; i < 5; i++) for (let j = 0; j < 3; j++) v.set(3, 0, i, j, 1);
          return v.toTensor() as tf.Tensor4D;
        });
        const gamma = tf.tensor1d([1.5, -0.5, 2, 0.25]);
        const beta = tf.tensor1d([0.1, 0.2, -0.3, 1]);
        const r = tf.randomNormal([2, 5, 3, 4], 0, 1, 'float32', 42);
        useReferenceNorm(true);
        const ref = normAndGrads(x, gamma, beta, r);
        useReferenceNorm(false);
        useSpatialNorm(spatial);
        const fast = normAndGrads(x, gamma, beta, r);
        expect(relDiff(fast.y, ref.y), 'values').toBeLessThan(2e-5);
        ['x', 'gamma', 'beta'].forEach((name, i) => {
          expect(fast.grads[i].shape, `gradient of ${name}: shape`).toEqual(ref.grads[i].shape);
          expect(relDiff(fast.grads[i], ref.grads[i]), `gradient of ${name}`).toBeLessThan(1e-4);
        });
        // The constant channel normalises to 0, and then beta.
        const constant = tf.tidy(() => tf.slice(fast.y, [0, 0, 0, 1], [1, 5, 3, 1]).dataSync());
        for (const v of constant) expect(v).toBeCloseTo(0.2, 3);
        tf.dispose([x, gamma, beta, r, ref.y, ...ref.grads, fast.y, ...fast.grads]);
      });

      it(`${spatial === undefined ? 'default' : spatial ? 'spatial' : 'rows'} layout: no position is special (flips and a spatial transpose commute with it, samples and channels are independent)`, () => {
        useSpatialNorm(spatial);
        const x = tf.randomNormal([2, 4, 6, 3], -1, 3, 'float32', 43) as tf.Tensor4D;
        const y = instanceNorm(x);
        const flipped = tf.tidy(() => relDiff(instanceNorm(tf.reverse(x, [1, 2]) as tf.Tensor4D), tf.reverse(y, [1, 2])));
        expect(flipped, 'flip of H and W').toBeLessThan(1e-5);
        const swapped = tf.tidy(() => relDiff(instanceNorm(tf.transpose(x, [0, 2, 1, 3]) as tf.Tensor4D), tf.transpose(y, [0, 2, 1, 3])));
        expect(swapped, 'H and W swapped').toBeLessThan(1e-5);
        // Changing sample 1 and channel 2 of sample 0 leaves sample 0's other channels as they were.
        const changed = tf.tidy(() => {
          const v = x.bufferSync();
          for (let i = 0; i < 4; i++)
            for (let j = 0; j < 6; j++) {
              v.set(v.get(0, i, j, 2) * 5 + 1, 0, i, j, 2);
              for (let c = 0; c < 3; c++) v.set(-(v.get(1, i, j, c) ** 3), 1, i, j, c);
            }
          return instanceNorm(v.toTensor() as tf.Tensor4D);
        });
        const keep = (t: tf.Tensor) => tf.slice(t, [0, 0, 0, 0], [1, 4, 6, 2]);
        expect(tf.tidy(() => tf.max(tf.abs(tf.sub(keep(changed), keep(y)))).dataSync()[0])).toBe(0);
        tf.dispose([x, y, changed]);
      });
    }

    it('normalizeSpatial has the gradient of finite differences at every position, borders and corners included', () => {
      const x = tf.randomNormal([2, 3, 4, 2], 0.5, 1.5, 'float32', 44) as tf.Tensor4D;
      const r = tf.randomNormal([2, 3, 4, 2], 0, 1, 'float32', 45);
      const r2 = tf.randomNormal([2, 3, 4, 2], 0, 1, 'float32', 46);
      // Linear and quadratic in the output, so dy depends on y as in training.
      const loss = (a: tf.Tensor) => {
        const y = normalizeSpatial(a as tf.Tensor4D);
        return tf.add(tf.sum(tf.mul(y, r)), tf.mul(tf.sum(tf.mul(tf.square(y), r2)), 0.5));
      };
      const analytic = tf.tidy(() => tf.grad(loss)(x).dataSync().slice());
      const base = x.dataSync();
      const eps = 1e-2;
      let scale = 0;
      const numeric = Array.from(base, (_, i) => {
        const at = (d: number) => {
          const v = base.slice();
          v[i] += d;
          return tf.tidy(() => loss(tf.tensor(v, x.shape)).dataSync()[0]);
        };
        const n = (at(eps) - at(-eps)) / (2 * eps);
        scale = Math.max(scale, Math.abs(n));
        return n;
      });
      expect(scale).toBeGreaterThan(0.1);
      for (const [i, n] of numeric.entries()) {
        expect(Math.abs(analytic[i] - n), `element ${i}: analytic ${analytic[i]}, numeric ${n}`).toBeLessThan(5e-3 * Math.max(scale, 1));
      }
      // Its value is the normalisation: mean 0, variance 1 per (sample, channel).
      const { mean, variance } = tf.moments(normalizeSpatial(x), [1, 2]);
      for (const m of mean.dataSync()) expect(Math.abs(m)).toBeLessThan(1e-5);
      for (const v of variance.dataSync()) expect(v).toBeCloseTo(1, 3);
      tf.dispose([x, r, r2, mean, variance]);
    });
  },
  ['cpu', 'wasm', 'tensorflow'],
);
