import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { depthwiseSameDilated, dilateFilter, useFilterCache } from './gradients.ts';
import { setWasmTuning, swappedGroups } from './wasm-tuning.ts';
import { initBackend } from './index.ts';
import { nativeInstalled } from '../../testing/backend.ts';

// The loss sum(f(x, w) * r) is linear in each argument separately, so a central
// difference is exact up to float32 rounding and a large step keeps rounding small.
const EPS = 0.5;

function seeded(shape: number[], seed: number): tf.Tensor {
  return tf.randomUniform(shape, -1, 1, 'float32', seed);
}

function numericGrad(f: (args: tf.Tensor[]) => tf.Scalar, args: tf.Tensor[], which: number): Float32Array {
  const base = args[which].dataSync().slice();
  const out = new Float32Array(base.length);
  for (let i = 0; i < base.length; i++) {
    const probe = (delta: number) =>
      tf.tidy(() => {
        const v = base.slice();
        v[i] += delta;
        const moved = args.map((a, k) => (k === which ? tf.tensor(v, a.shape) : a));
        return f(moved).dataSync()[0];
      });
    out[i] = (probe(EPS) - probe(-EPS)) / (2 * EPS);
  }
  return out;
}

function expectClose(actual: Float32Array, expected: Float32Array, what: string) {
  expect(actual.length, what).toBe(expected.length);
  let scale = 1e-6;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < actual.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > 2e-3 * scale + 1e-4) {
      throw new Error(`${what}[${i}]: analytic ${actual[i]} vs numeric ${expected[i]} (scale ${scale})`);
    }
  }
}

function checkGradients(f: (args: tf.Tensor[]) => tf.Tensor, args: tf.Tensor[], label: string, seed: number) {
  const outShape = tf.tidy(() => f(args).shape);
  const r = seeded(outShape, seed);
  const loss = (a: tf.Tensor[]) => tf.sum(tf.mul(f(a), r)) as tf.Scalar;
  const analytic = tf.grads((...a: tf.Tensor[]) => loss(a))(args);
  analytic.forEach((g, i) => {
    expect(g.shape, `${label} grad ${i} shape`).toEqual(args[i].shape);
    expectClose(g.dataSync() as Float32Array, numericGrad(loss, args, i), `${label} grad of argument ${i}`);
  });
  tf.dispose([...analytic, r]);
}

const conv2dCases = [
  { k: 3, d: 1, pad: 'same' as const },
  { k: 3, d: 2, pad: 'same' as const },
  { k: 5, d: 2, pad: 'same' as const },
  { k: 2, d: 1, pad: 'same' as const }, // asymmetric 'same' padding
  { k: 3, d: 2, pad: 'valid' as const },
  { k: 1, d: 1, pad: 'same' as const },
];

const depthwiseCases = [
  { k: 3, d: 1, m: 1 },
  { k: 3, d: 2, m: 1 },
  { k: 5, d: 2, m: 1 },
  { k: 3, d: 1, m: 2 },
  { k: 2, d: 1, m: 1 },
];

// Every backend the trainer may run on: the pure-JS reference, wasm, and native
// TensorFlow (required in CI; see testing.ts).
const ALL = nativeInstalled ? (['cpu', 'wasm', 'tensorflow'] as const) : (['cpu', 'wasm'] as const);

for (const backend of ALL) {
  describe(`convolution and pooling gradients on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend({ backend, quiet: true });
      expect(tf.getBackend()).toBe(backend);
    });

    for (const c of conv2dCases) {
      it(`conv2d ${c.k}x${c.k} dilation ${c.d} ${c.pad} matches finite differences`, () => {
        const x = seeded([2, 7, 6, 3], 1);
        const w = seeded([c.k, c.k, 3, 2], 2);
        checkGradients(([a, b]) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, c.pad, 'NHWC', c.d), [x, w], `conv2d k${c.k} d${c.d}`, 3);
        tf.dispose([x, w]);
      });
    }

    for (const c of depthwiseCases) {
      it(`depthwise ${c.k}x${c.k} dilation ${c.d} multiplier ${c.m} matches finite differences`, () => {
        const x = seeded([2, 6, 7, 3], 4);
        const w = seeded([c.k, c.k, 3, c.m], 5);
        // depthwiseSameDilated: how the model calls it (native TensorFlow takes dilations only through oneDNN).
        checkGradients(([a, b]) => depthwiseSameDilated(a as tf.Tensor4D, b as tf.Tensor4D, c.d), [x, w], `depthwise k${c.k} d${c.d} m${c.m}`, 6);
        tf.dispose([x, w]);
      });
    }

    it('depthwise separable conv (dilated depthwise then pointwise) matches finite differences', () => {
      const x = seeded([2, 6, 6, 3], 7);
      const dw = seeded([3, 3, 3, 1], 8);
      const pw = seeded([1, 1, 3, 4], 9);
      const sep = ([a, b, c]: tf.Tensor[]) => tf.conv2d(depthwiseSameDilated(a as tf.Tensor4D, b as tf.Tensor4D, 2), c as tf.Tensor4D, 1, 'same');
      // Bilinear in (dw, pw) jointly, so check each argument with the others fixed.
      checkGradients(sep, [x, dw, pw], 'separable', 10);
      tf.dispose([x, dw, pw]);
    });

    for (const pool of ['avg', 'max'] as const) {
      it(`${pool}Pool 3x3 stride 1 'same' matches finite differences, borders and corners included`, () => {
        // 5x6: every position is a border, a corner or next to one, where the window is cut.
        const x = seeded([2, 5, 6, 3], 30);
        const f = ([a]: tf.Tensor[]) => (pool === 'avg' ? tf.avgPool(a as tf.Tensor4D, 3, 1, 'same') : tf.maxPool(a as tf.Tensor4D, 3, 1, 'same'));
        if (pool === 'avg') {
          checkGradients(f, [x], 'avgPool', 31);
        } else {
          // Max pooling is piecewise linear: a small step keeps every window's argmax.
          const r = seeded(
            tf.tidy(() => f([x]).shape),
            31,
          );
          const loss = (a: tf.Tensor[]) => tf.sum(tf.mul(f(a), r)) as tf.Scalar;
          const [g] = tf.grads((a: tf.Tensor) => loss([a]))([x]);
          const base = x.dataSync().slice();
          const num = new Float32Array(base.length);
          for (let i = 0; i < base.length; i++) {
            const probe = (d: number) =>
              tf.tidy(() => {
                const v = base.slice();
                v[i] += d;
                return loss([tf.tensor(v, x.shape)]).dataSync()[0];
              });
            num[i] = (probe(1e-3) - probe(-1e-3)) / 2e-3;
          }
          expectClose(g.dataSync() as Float32Array, num, 'maxPool grad');
          tf.dispose([g, r]);
        }
        tf.dispose(x);
      });
    }

    it('avgPool divides by the part of the window inside the image (as TensorFlow does)', () => {
      const y = tf.avgPool(tf.ones([1, 4, 4, 1]) as tf.Tensor4D, 3, 1, 'same');
      expect(Array.from(y.dataSync())).toEqual(new Array(16).fill(1));
      tf.dispose(y);
    });

    it('a dilated depthwise convolution equals the undilated one with a zero-dilated filter, gradients too', () => {
      const x = seeded([2, 7, 6, 4], 40);
      const w = seeded([3, 3, 4, 2], 41);
      const direct = ([a, b]: tf.Tensor[]) => depthwiseSameDilated(a as tf.Tensor4D, b as tf.Tensor4D, 2);
      const viaFilter = ([a, b]: tf.Tensor[]) => tf.depthwiseConv2d(a as tf.Tensor4D, dilateFilter(b as tf.Tensor4D, 2), 1, 'same');
      const r = seeded([2, 7, 6, 8], 42);
      const g1 = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(direct([a, b]), r)))([x, w]);
      const g2 = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(viaFilter([a, b]), r)))([x, w]);
      const [y1, y2] = [direct([x, w]), viaFilter([x, w])];
      expectClose(y1.dataSync() as Float32Array, y2.dataSync() as Float32Array, 'output');
      expectClose(g1[0].dataSync() as Float32Array, g2[0].dataSync() as Float32Array, 'dx');
      expectClose(g1[1].dataSync() as Float32Array, g2[1].dataSync() as Float32Array, 'dfilter');
      checkGradients(direct, [x, w], 'dilated depthwise', 43);
      tf.dispose([x, w, r, y1, y2, ...g1, ...g2]);
    });

    it('input gradients follow a filter that changes (rearranged filters are cached by data) and keep no tensor of a disposed one', () => {
      const x = seeded([2, 6, 6, 3], 50);
      const r = seeded([2, 6, 6, 3], 51);
      // Variables own their data alone (a tensor that shares it would keep it alive).
      const own = (shape: number[], seed: number) => {
        const t = seeded(shape, seed);
        const v = tf.variable(t);
        t.dispose();
        return v;
      };
      const set = (v: tf.Variable, shape: number[], seed: number) => {
        const t = seeded(shape, seed);
        v.assign(t);
        t.dispose();
      };
      const w = own([3, 3, 3, 3], 52);
      const dw = own([3, 3, 3, 1], 53);
      const f = (a: tf.Tensor) =>
        tf.sum(
          tf.mul(depthwiseSameDilated(tf.conv2d(a as tf.Tensor4D, w as unknown as tf.Tensor4D, 1, 'same', 'NHWC', 2), dw as unknown as tf.Tensor4D, 2), r),
        );
      const dx = () =>
        tf.tidy(() =>
          Array.from(
            tf
              .grad(f)(x as tf.Tensor4D)
              .dataSync(),
          ),
        );
      const fresh = () => {
        useFilterCache(false);
        try {
          return dx();
        } finally {
          useFilterCache(true);
        }
      };
      const first = dx();
      expect(dx()).toEqual(first); // from the cache
      expect(first).toEqual(fresh());
      set(w, [3, 3, 3, 3], 54);
      set(dw, [3, 3, 3, 1], 55);
      const second = dx();
      expect(second).not.toEqual(first);
      expect(second).toEqual(fresh());
      // The cache holds at most one rearranged copy per live filter.
      dx();
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        set(w, [3, 3, 3, 3], 60 + i);
        dx();
      }
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([x, r, w, dw]);
    });

    it('undilated conv2d gradient agrees with the cpu backend reference kernels', async () => {
      const x = seeded([2, 5, 5, 3], 11);
      const w = seeded([3, 3, 3, 4], 12);
      const dy = seeded([2, 5, 5, 4], 13);
      const ours = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same'), dy)))([x, w]);
      const refX = tf.conv2dTranspose(dy as tf.Tensor4D, w as tf.Tensor4D, [2, 5, 5, 3], 1, 'same');
      expectClose(ours[0].dataSync() as Float32Array, refX.dataSync() as Float32Array, 'dx vs conv2dTranspose');
      tf.dispose([x, w, dy, refX, ...ours]);
    });
  });
}

describe('wasm kernels replaced for speed', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  it('slices, splits, concatenates and transposes exactly like the cpu backend, for contiguous and strided cases', async () => {
    const shape = [3, 4, 5, 6];
    const values = Float32Array.from({ length: 360 }, (_, i) => i * 0.5 - 7);
    const cases: [number[], number[]][] = [
      [
        [1, 0, 0, 0],
        [2, -1, -1, -1],
      ],
      [
        [0, 1, 2, 3],
        [3, 2, 3, 3],
      ],
      [
        [0, 0, 0, 2],
        [-1, -1, -1, 4],
      ],
      [
        [2, 3, 4, 5],
        [1, 1, 1, 1],
      ],
      [
        [0, 0, 1, 0],
        [-1, -1, 3, -1],
      ],
    ];
    const onWasm = () => {
      const x = tf.tensor(values, shape);
      const y = tf.tensor(
        values.map((v) => -v),
        shape,
      );
      const i32 = tf.tensor(
        Int32Array.from(values, (v) => Math.round(v)),
        shape,
        'int32',
      );
      // Runs of 1 to 360 elements; an empty piece; int32 and bool.
      const concats = [0, 1, 2, 3].map((axis) =>
        tf
          .concat(
            [
              x,
              tf.slice(
                y,
                0,
                shape.map((d, k) => (k === axis ? 1 : d)),
              ),
              x,
            ],
            axis,
          )
          .arraySync(),
      );
      concats.push(
        tf.concat([x, tf.zeros([3, 4, 0, 6]), y], 2).arraySync(),
        tf.concat([i32, i32], 3).arraySync(),
        tf.concat([tf.greater(x, 0), tf.less(x, 0)], 3).arraySync() as never,
      );
      // Tall matrices (tiled on the heap: [200, 9], a batch of [130, 8]) and the backend's own cases.
      const tall = tf.tensor(
        Float32Array.from({ length: 3 * 130 * 8 }, (_, i) => i),
        [3, 130, 8],
      );
      const transposes = [
        tf.transpose(tf.reshape(tall, [195, 16])).arraySync(),
        tf.transpose(tall, [0, 2, 1]).arraySync(),
        tf.transpose(tall, [2, 1, 0]).arraySync(),
        tf.transpose(x, [0, 2, 1, 3]).arraySync(),
        tf.transpose(x, [3, 0, 1, 2]).arraySync(),
      ];
      return {
        transposes,
        slices: cases.map(([b, s]) => tf.slice(x, b, s).arraySync()),
        splits: ([[1, 2], 2, [2, 3], [1, 2, 3]] as (number | number[])[]).map((how, axis) => tf.split(x, how, axis).map((t) => t.arraySync())),
        concats,
      };
    };
    const wasm = tf.tidy(() => JSON.stringify(onWasm()));
    await initBackend({ backend: 'cpu', quiet: true });
    const cpu = tf.tidy(() => JSON.stringify(onWasm()));
    await initBackend({ backend: 'wasm', quiet: true });
    expect(wasm).toBe(cpu);
  });

  it('tells a transpose that swaps two adjacent groups of axes (size-1 axes ignored) from one that does not', () => {
    expect(swappedGroups([2, 3, 4], [0, 2, 1])).toEqual([2, 3, 4, 1]);
    expect(swappedGroups([2, 3, 4], [2, 0, 1])).toEqual([1, 6, 4, 1]);
    expect(swappedGroups([2, 3, 4], [1, 2, 0])).toEqual([1, 2, 12, 1]);
    expect(swappedGroups([2, 3, 4, 5], [0, 2, 1, 3])).toEqual([2, 3, 4, 5]);
    expect(swappedGroups([2, 1, 3], [2, 1, 0])).toEqual([1, 2, 3, 1]);
    expect(swappedGroups([2, 3, 4], [2, 1, 0])).toBeUndefined();
    expect(swappedGroups([2, 3, 4], [0, 1, 2])).toBeUndefined();
    expect(swappedGroups([2, 1, 4], [1, 0, 2])).toBeUndefined();
  });

  it('matMul gradients with explicit transposes match finite differences', () => {
    const a = seeded([3, 4], 20);
    const b = seeded([4, 5], 21);
    checkGradients(([x, y]) => tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), [a, b], 'matMul', 22);
    // The other branch of each gradient (many rows; a single output column).
    const c = seeded([8, 3], 23);
    const d = seeded([3, 1], 24);
    checkGradients(([x, y]) => tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), [c, d], 'matMul column', 25);
    tf.dispose([a, b, c, d]);
  });

  it('maxPool gradients: the separable stride-1 pass gives the same inputs, ties included, as the window-by-window one', () => {
    // Values from {0, 1, 2}: most windows hold their maximum more than once, so the
    // tie rule (first largest in row-major window order) decides where dy goes.
    const x = tf.tensor4d(
      Float32Array.from({ length: 2 * 7 * 6 * 3 }, (_, i) => (i * 7 + (i >> 3)) % 3),
      [2, 7, 6, 3],
    );
    const cases: [number, 'same' | 'valid'][] = [
      [3, 'same'],
      [3, 'valid'],
      [2, 'same'],
      [5, 'same'],
    ];
    for (const [k, pad] of cases) {
      const grad = (separable: boolean) => {
        setWasmTuning(separable);
        try {
          return tf.tidy(() => {
            const y = tf.maxPool(x, k, 1, pad);
            const dy = tf.tensor4d(
              Float32Array.from({ length: y.size }, (_, i) => i + 1),
              y.shape,
            );
            return Array.from(
              tf
                .grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, k, 1, pad), dy)))(x)
                .dataSync(),
            );
          });
        } finally {
          setWasmTuning(true);
        }
      };
      expect(grad(true), `${k}x${k} ${pad}`).toEqual(grad(false));
    }
    x.dispose();
  });

  it("the gradient of a 2x nearest-neighbour upsampling sums the gradients of each input pixel's copies", () => {
    // Input values are their own indices, so the forward pass says where each output came from.
    const x = tf.tensor4d(
      Float32Array.from({ length: 2 * 3 * 5 * 4 }, (_, i) => i),
      [2, 3, 5, 4],
    );
    const dy = tf.tensor4d(
      Float32Array.from({ length: 2 * 6 * 10 * 4 }, (_, i) => ((i * 13) % 17) - 8),
      [2, 6, 10, 4],
    );
    const source = tf.tidy(() => tf.image.resizeNearestNeighbor(x, [6, 10]).dataSync());
    const expected = new Array<number>(x.size).fill(0);
    dy.dataSync().forEach((g, i) => {
      expected[source[i]] += g;
    });
    const grad = tf.tidy(() =>
      Array.from(
        tf
          .grad((a: tf.Tensor) => tf.sum(tf.mul(tf.image.resizeNearestNeighbor(a as tf.Tensor4D, [6, 10]), dy)))(x)
          .dataSync(),
      ),
    );
    // (tfjs's cpu backend gets the second image of the batch wrong here.)
    expect(grad).toEqual(expected);
    // Not a doubling (3 -> 7 rows): the backend's own kernel.
    const other = tf.tidy(() =>
      Array.from(
        tf
          .grad((a: tf.Tensor) => tf.sum(tf.image.resizeNearestNeighbor(a as tf.Tensor4D, [7, 10])))(x)
          .dataSync(),
      ),
    );
    expect(other.reduce((s, v) => s + v, 0)).toBe(2 * 7 * 10 * 4);
    tf.dispose([x, dy]);
  });

  it('identity shares the buffer yet stays valid after the original is disposed', () => {
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.clone(x);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    y.dispose();
  });
});
