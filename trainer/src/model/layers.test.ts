import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../backend/testing.ts';
import { instanceNorm, useReferenceNorm } from './layers.ts';

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
    expect(tf.max(tf.abs(tf.sub(instanceNorm(x), (useReferenceNorm(true), instanceNorm(x))))).dataSync()[0]).toBeLessThan(1e-5);
    useReferenceNorm(false);
  });
});
