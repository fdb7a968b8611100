import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { instanceNorm, normalizeRows, useSpatialNorm } from '../model/layers.ts';
import { initBackend } from './index.ts';
import { NORMALIZE, normalizeOver, setWasmNormalize, wasmNormalizeActive } from './norm-kernel.ts';

function seeded(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -2, 3, 'float32', seed);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Value and gradient of sum(instanceNorm(x) * r) with the fused kernel on or off. */
function normAndGrad(x: tf.Tensor4D, r: tf.Tensor, fused: boolean): { y: Float32Array; dx: Float32Array } {
  setWasmNormalize(fused);
  try {
    return tf.tidy(() => {
      const y = instanceNorm(x).dataSync() as Float32Array;
      const dx = tf
        .grad((a: tf.Tensor) => tf.sum(tf.mul(instanceNorm(a as tf.Tensor4D), r)))(x)
        .dataSync() as Float32Array;
      return { y, dx };
    });
  } finally {
    setWasmNormalize(true);
  }
}

describe('instance norm as one wasm kernel each way', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  it('runs on wasm for instanceNorm, in place of the composed ops', async () => {
    expect(wasmNormalizeActive()).toBe(true);
    const x = seeded([2, 5, 6, 3], 1) as tf.Tensor4D;
    const names = async (fused: boolean) => {
      setWasmNormalize(fused);
      try {
        return (await tf.profile(() => tf.tidy(() => void instanceNorm(x).dataSync()))).kernels.map((k) => k.name);
      } finally {
        setWasmNormalize(true);
      }
    };
    expect(await names(true)).toEqual([NORMALIZE]);
    expect(await names(false)).toContain('Transpose');
    // A layout asked for (measurements, tests) is kept: rows by transposes.
    useSpatialNorm(false);
    try {
      expect(await names(true)).toContain('Transpose');
    } finally {
      useSpatialNorm(undefined);
    }
    x.dispose();
  });

  it("gives the composed ops' values and gradients, for odd shapes, one channel, one pixel column and large offsets", () => {
    const cases: [number[], number][] = [
      [[2, 5, 6, 3], 10],
      [[1, 7, 1, 1], 11],
      [[3, 4, 4, 16], 12],
      [[2, 9, 5, 7], 13],
    ];
    for (const [shape, seed] of cases) {
      // An offset of 100 makes the variance small beside the mean's square: the two-pass form keeps it.
      const x = tf.tidy(() => tf.add(seeded(shape, seed), seed === 13 ? 100 : 0)) as tf.Tensor4D;
      const r = seeded(shape, seed + 100);
      const fused = normAndGrad(x, r, true);
      const composed = normAndGrad(x, r, false);
      expect(maxDiff(fused.y, composed.y), `${shape} values`).toBeLessThan(2e-4);
      expect(maxDiff(fused.dx, composed.dx), `${shape} gradient`).toBeLessThan(2e-3);
      tf.dispose([x, r]);
    }
  });

  it("normalises rows (the cells' layout) as the composed ops do, one kernel each way", async () => {
    for (const [shape, seed] of [
      [[6, 50], 30],
      [[1, 7], 31],
      [[40, 3], 32],
    ] as [[number, number], number][]) {
      const x = seeded(shape, seed) as tf.Tensor2D;
      const r = seeded(shape, seed + 100);
      const run = (fused: boolean) => {
        setWasmNormalize(fused);
        try {
          return tf.tidy(() => ({
            y: normalizeRows(x).dataSync() as Float32Array,
            dx: tf
              .grad((a: tf.Tensor) => tf.sum(tf.mul(normalizeRows(a as tf.Tensor2D), r)))(x)
              .dataSync() as Float32Array,
          }));
        } finally {
          setWasmNormalize(true);
        }
      };
      const [fused, composed] = [run(true), run(false)];
      expect(maxDiff(fused.y, composed.y), `${shape} values`).toBeLessThan(2e-4);
      expect(maxDiff(fused.dx, composed.dx), `${shape} gradient`).toBeLessThan(2e-3);
      tf.dispose([x, r]);
    }
    const x = seeded([4, 9], 33) as tf.Tensor2D;
    expect((await tf.profile(() => tf.tidy(() => void normalizeRows(x).dataSync()))).kernels.map((k) => k.name)).toEqual([NORMALIZE]);
    x.dispose();
  });

  it('its gradient matches finite differences', () => {
    const x = seeded([1, 3, 4, 2], 20) as tf.Tensor4D;
    const r = seeded([1, 3, 4, 2], 21);
    const loss = (a: tf.Tensor) => tf.sum(tf.mul(tf.square(instanceNorm(a as tf.Tensor4D)), r));
    const g = tf.tidy(() => tf.grad(loss)(x).dataSync() as Float32Array);
    const base = x.dataSync().slice();
    const h = 1e-2;
    for (let i = 0; i < base.length; i++) {
      const at = (d: number) =>
        tf.tidy(() => {
          const v = base.slice();
          v[i] += d;
          return loss(tf.tensor(v, x.shape)).dataSync()[0];
        });
      const numeric = (at(h) - at(-h)) / (2 * h);
      expect(Math.abs(g[i] - numeric), `element ${i}: ${g[i]} vs ${numeric}`).toBeLessThan(2e-2 * Math.max(1, Math.abs(numeric)));
    }
    tf.dispose([x, r]);
  });

  it('refuses a shape that the layout does not cover, naming both', () => {
    const x = tf.zeros([2, 3]);
    expect(() => normalizeOver(x, 2, 2, 2, 1e-5)).toThrow(/\[2, 2, 2\] does not cover shape \[2,3\]/);
    x.dispose();
  });
});
