// The engine's bookkeeping replacements (engine-tuning.ts, every backend) and the
// native kernels (native-tuning.ts, tensorflow only) change how a gradient is
// recorded, never what it is: every test here compares against the engine's own
// code path (uninstallEngineTuning), the cpu backend, an analytic value or finite
// differences.
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { OPERATIONS } from '../config/index.ts';
import type { Network, NetworkOptions } from '../model/api.ts';
import { diceCrossEntropyLoss } from '../model/loss.ts';
import { createNetwork } from '../model/network.ts';
import { engineTuningInstalled, installEngineTuning, uninstallEngineTuning } from './engine-tuning.ts';
import { initBackend, type BackendChoice } from './index.ts';
import { NATIVE_RELU_GRAD } from './native-tuning.ts';
import { describeEachBackend } from '../../testing/backend.ts';

const ALL_BACKENDS: readonly BackendChoice[] = ['cpu', 'wasm', 'tensorflow'];

/** Runs f with the engine tuning on or off, and always leaves it installed afterwards. */
function withTuning<T>(on: boolean, f: () => T): T {
  if (on) installEngineTuning();
  else uninstallEngineTuning();
  try {
    expect(engineTuningInstalled()).toBe(on);
    return f();
  } finally {
    installEngineTuning();
  }
}

async function withTuningAsync<T>(on: boolean, f: () => Promise<T>): Promise<T> {
  if (on) installEngineTuning();
  else uninstallEngineTuning();
  try {
    expect(engineTuningInstalled()).toBe(on);
    return await f();
  } finally {
    installEngineTuning();
  }
}

/** Every element of `actual` equals `expected` up to 1e-6 of the tensor's largest magnitude. */
function expectSameValues(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  const tol = 1e-6 * scale;
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol)) {
      throw new Error(`${what}[${i}]: ${actual[i]} vs ${expected[i]} (tolerance ${tol})`);
    }
  }
}

/** Leak counters: engine tensors, engine data buffers and the backend's own buffers. */
function memoryCounts(): { numTensors: number; numDataBuffers: number; backendDataIds: number } {
  const m = tf.memory();
  return { numTensors: m.numTensors, numDataBuffers: m.numDataBuffers, backendDataIds: tf.backend().numDataIds() };
}

const backbone = { depth: 2, baseFilters: 8, pretrainEpochs: 1, learningRate: 1e-3 };
const space = { operations: [...OPERATIONS], nodes: 2, partialChannels: 4 };
const netOptions = (seed: number): NetworkOptions => ({ backbone, inChannels: 1, numClasses: 3, cells: 'supernet', space, seed });

/**
 * A supernet whose cells contribute: fresh cells' output convolutions are zero (the
 * network starts as the plain U-Net), which would leave alphas and betas without a gradient.
 */
function searchNetwork(seed: number): Network {
  const net = createNetwork(netOptions(seed));
  let k = 0;
  for (const [name, v] of net.namedWeights()) {
    if (name.endsWith('/out/kernel')) v.assign(tf.tidy(() => tf.randomNormal(v.shape, 0, 0.3, 'float32', seed * 100 + k++)));
  }
  expect(k).toBeGreaterThan(0);
  return net;
}

/** The search step's gradient: loss w.r.t. the cell weights, alphas and betas, by variable name. */
function searchGradients(net: Network, x: tf.Tensor4D, labels: tf.Tensor): Map<string, Float32Array> {
  const vars = [...net.cellVariables, ...net.arch!.alphas, ...net.arch!.betas];
  const { value, grads } = tf.variableGrads(() => diceCrossEntropyLoss(net.apply(x, { training: true }), labels), vars);
  const out = new Map<string, Float32Array>([['<loss>', value.dataSync().slice() as Float32Array]]);
  for (const [name, g] of Object.entries(grads)) out.set(name, g!.dataSync().slice() as Float32Array);
  tf.dispose([value, ...Object.values(grads).filter((g): g is tf.Tensor => g !== null)]);
  return out;
}

/** A Conv2D/Relu chain; every op saves tensors for its gradient. */
function convReluLoss(x: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor): tf.Scalar {
  const h = tf.relu(tf.conv2d(x as tf.Tensor4D, w1 as tf.Tensor4D, 1, 'same'));
  return tf.sum(tf.relu(tf.conv2d(h, w2 as tf.Tensor4D, 1, 'same')));
}

const convReluGrads = tf.grads((x: tf.Tensor, w1: tf.Tensor, w2: tf.Tensor) => convReluLoss(x, w1, w2));

describeEachBackend(
  'engine tuning',
  (backend) => {
    let x: tf.Tensor4D;
    let w1: tf.Tensor4D;
    let w2: tf.Tensor4D;

    beforeAll(async () => {
      await initBackend({ backend, quiet: true });
      expect(tf.getBackend()).toBe(backend);
      x = tf.randomNormal([2, 6, 5, 3], 0, 1, 'float32', 11) as tf.Tensor4D;
      w1 = tf.randomNormal([3, 3, 3, 4], 0, 0.5, 'float32', 12) as tf.Tensor4D;
      w2 = tf.randomNormal([3, 3, 4, 2], 0, 0.5, 'float32', 13) as tf.Tensor4D;
    });

    afterAll(() => {
      tf.dispose([x, w1, w2]);
      // Whatever happened above, the process goes on with the tuning that initBackend installs.
      installEngineTuning();
      expect(engineTuningInstalled()).toBe(true);
    });

    it('is installed by initBackend', () => {
      expect(engineTuningInstalled()).toBe(true);
    });

    it('leaves the gradients of a supernet (cell weights, alphas, betas) unchanged, with pruned edges too', () => {
      const net = searchNetwork(5);
      const input = tf.randomNormal([2, 16, 16, 1], 0, 1, 'float32', 21) as tf.Tensor4D;
      const labels = tf.tidy(() => tf.reshape(tf.cast(tf.greater(input, 0.3), 'int32'), [2, 16, 16]));
      const compare = (label: string, expectPruned: boolean) => {
        const tuned = withTuning(true, () => searchGradients(net, input, labels));
        const engine = withTuning(false, () => searchGradients(net, input, labels));
        const again = withTuning(true, () => searchGradients(net, input, labels));
        expect([...tuned.keys()].sort(), `${label}: the same variables get gradients`).toEqual([...engine.keys()].sort());
        for (const [name, g] of engine) {
          expectSameValues(tuned.get(name)!, g, `${label} ${name} (tuned vs engine)`);
          expectSameValues(again.get(name)!, g, `${label} ${name} (re-installed vs engine)`);
        }
        // Not vacuous: every alpha and beta and most cell weights get a non-zero gradient.
        for (const v of [...net.arch!.alphas, ...net.arch!.betas]) {
          expect(
            tuned.get(v.name)!.some((e) => e !== 0),
            `${label}: ${v.name} has a gradient`,
          ).toBe(true);
        }
        const cellGrads = net.cellVariables.filter((v) => tuned.has(v.name)).length;
        if (expectPruned) expect(cellGrads, `${label}: pruned weights get no gradient`).toBeLessThan(net.cellVariables.length);
        else expect(cellGrads, `${label}: every cell weight gets a gradient`).toBe(net.cellVariables.length);
      };
      compare('full supernet', false);
      const ops = space.operations;
      // A couple of pruned edges: cell 0 edge 1 and cell 1 edges 0 and 3 keep two operations each.
      net.arch!.prune(0, 1, [ops.indexOf('sep_conv_3x3'), ops.indexOf('max_pool_3x3')]);
      net.arch!.prune(1, 0, [ops.indexOf('dil_conv_3x3'), ops.indexOf('skip_connect')]);
      net.arch!.prune(1, 3, [ops.indexOf('conv_3x3'), ops.indexOf('avg_pool_3x3')]);
      compare('pruned supernet', true);
      expect(engineTuningInstalled()).toBe(true);
      tf.dispose([input, labels]);
      net.dispose();
    });

    it('runs no Identity kernel while recording a Conv2D/Relu gradient (the engine runs one per saved tensor)', async () => {
      const identities = async (on: boolean) =>
        withTuningAsync(on, async () => {
          const info = await tf.profile(() => {
            tf.dispose(convReluGrads([x, w1, w2]));
          });
          return info.kernels.filter((k) => k.name === 'Identity').length;
        });
      expect(await identities(true)).toBe(0);
      // Two Conv2Ds save x and filter, two Relus save x: six clones.
      expect(await identities(false)).toBeGreaterThanOrEqual(6);
      expect(await identities(true)).toBe(0);
    });

    it('gives the same Conv2D/Relu gradients with and without the tuning', () => {
      const run = (on: boolean) =>
        withTuning(on, () => {
          const gs = convReluGrads([x, w1, w2]);
          const values = gs.map((g) => g.dataSync().slice());
          tf.dispose(gs);
          return values;
        });
      const tuned = run(true);
      const engine = run(false);
      tuned.forEach((g, i) => {
        expectSameValues(g, engine[i], `argument ${i}`);
      });
      expect(engine[0].some((v) => v !== 0)).toBe(true);
    });

    it('computes a gradient of a gradient (x*x*x: 6x), where saved tensors must stay on the tape', () => {
      const xs = [-2, -0.5, 0, 0.25, 1, 3];
      const cube = (t: tf.Tensor) => tf.sum(tf.mul(tf.mul(t, t), t));
      for (const on of [true, false]) {
        const second = withTuning(on, () => tf.tidy(() => tf.grad(tf.grad(cube))(tf.tensor1d(xs)).dataSync().slice()));
        expectSameValues(
          second,
          xs.map((v) => 6 * v),
          `d2/dx2 x^3 with tuning ${on ? 'on' : 'off'}`,
        );
        const third = withTuning(on, () =>
          tf.tidy(() =>
            tf
              .grad(tf.grad(tf.grad(cube)))(tf.tensor1d(xs))
              .dataSync()
              .slice(),
          ),
        );
        expectSameValues(
          third,
          xs.map(() => 6),
          `d3/dx3 x^3 with tuning ${on ? 'on' : 'off'}`,
        );
      }
    });

    it('computes a gradient of a gradient through relu (sum(relu(x)^3): 6 relu(x))', () => {
      const xs = [-2, -0.5, 0, 0.25, 1, 3];
      const f = (t: tf.Tensor) => {
        const r = tf.relu(t);
        return tf.sum(tf.mul(tf.mul(r, r), r));
      };
      for (const on of [true, false]) {
        const first = withTuning(on, () => tf.tidy(() => tf.grad(f)(tf.tensor1d(xs)).dataSync().slice()));
        expectSameValues(
          first,
          xs.map((v) => 3 * Math.max(v, 0) ** 2),
          `d/dx relu(x)^3 with tuning ${on ? 'on' : 'off'}`,
        );
        const second = withTuning(on, () => tf.tidy(() => tf.grad(tf.grad(f))(tf.tensor1d(xs)).dataSync().slice()));
        expectSameValues(
          second,
          xs.map((v) => 6 * Math.max(v, 0)),
          `d2/dx2 relu(x)^3 with tuning ${on ? 'on' : 'off'}`,
        );
      }
    });

    for (const on of [true, false]) {
      it(`leaks no tensors or buffers with the tuning ${on ? 'on' : 'off'} (gradients, a gradient of a gradient, a supernet step)`, () => {
        const net = searchNetwork(9);
        const input = tf.randomNormal([1, 16, 16, 1], 0, 1, 'float32', 22) as tf.Tensor4D;
        const labels = tf.tidy(() => tf.reshape(tf.cast(tf.greater(input, 0), 'int32'), [1, 16, 16]));
        const cube = (t: tf.Tensor) => tf.sum(tf.mul(tf.mul(t, t), t));
        const work = () => {
          tf.dispose(convReluGrads([x, w1, w2]));
          tf.tidy(() => {
            tf.grad(tf.grad(cube))(tf.tensor1d([1, 2, 3]));
          });
          searchGradients(net, input, labels);
        };
        withTuning(on, () => {
          work(); // caches (the native backend's int32 constants, cell plans) fill once
          const before = memoryCounts();
          work();
          work();
          expect(memoryCounts()).toEqual(before);
        });
        tf.dispose([input, labels]);
        net.dispose();
      });
    }

    it("throws the engine's messages: a function of something else, a dy that is not float32", () => {
      const c = tf.tensor1d([1, 2, 3]);
      const messages = (on: boolean) =>
        withTuning(on, () => {
          const caught: string[] = [];
          for (const f of [
            () => tf.grad(() => tf.sum(tf.mul(c, c)))(tf.tensor1d([4, 5, 6])),
            () => tf.grad((t: tf.Tensor) => tf.mul(t, 2))(c, tf.tensor1d([1, 1, 1], 'int32')),
          ]) {
            const before = tf.memory().numTensors;
            try {
              tf.tidy(f);
              caught.push('no error');
            } catch (e) {
              caught.push((e as Error).message);
            }
            caught.push(`leaked ${tf.memory().numTensors - before}`);
          }
          return caught;
        });
      const tuned = messages(true);
      const engine = messages(false);
      expect(tuned[0]).toMatch(/^Cannot compute gradient of y=f\(x\) with respect to x/);
      expect(tuned[2]).toMatch(/dy must have 'float32' dtype/);
      expect(tuned).toEqual(engine);
      c.dispose();
    });
  },
  ALL_BACKENDS,
);

describeEachBackend('native kernels', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'tensorflow', quiet: true });
    expect(tf.getBackend()).toBe('tensorflow');
    expect(tf.getKernel(NATIVE_RELU_GRAD, 'tensorflow'), 'installNativeTuning ran').toBeDefined();
  });

  /** Runs f on the cpu backend and comes back to tensorflow. */
  async function onCpu<T>(f: () => T | Promise<T>): Promise<T> {
    await tf.setBackend('cpu');
    try {
      return await f();
    } finally {
      await tf.setBackend('tensorflow');
    }
  }

  const reluXs = [-3, -1, -1e-3, -1e-30, -0, 0, 1e-30, 1e-3, 0.5, 2];
  const reluDys = [0.7, -1.5, 2, -0.25, 3, -4, 1.25, -0.5, 0.1, -2];
  const reluGrad = () =>
    tf.tidy(() =>
      tf
        .grad((t: tf.Tensor) => tf.relu(t))(tf.tensor1d(reluXs), tf.tensor1d(reluDys))
        .dataSync()
        .slice(),
    );
  // +0 for -0: TensorFlow's dy * (x > 0) may give either zero.
  const plain = (a: ArrayLike<number>) => Array.from(a, (v) => v + 0);

  it("runs TensorFlow's ReluGrad for the gradient of Relu: dy where x > 0, else 0 (x = 0 and -0 included)", async () => {
    const expected = reluXs.map((v, i) => (v > 0 ? Math.fround(reluDys[i]) : 0));
    expect(plain(reluGrad())).toEqual(expected);
    const kernels = (await tf.profile(() => tf.dispose(tf.grad((t: tf.Tensor) => tf.sum(tf.relu(t)))(tf.tensor1d(reluXs))))).kernels.map((k) => k.name);
    expect(kernels).toContain(NATIVE_RELU_GRAD);
    expect(kernels).not.toContain('Step');
    // On another backend the same registered gradient falls back to tfjs's dy * step(x).
    const { values, names } = await onCpu(async () => {
      const names = (await tf.profile(() => tf.dispose(tf.grad((t: tf.Tensor) => tf.sum(tf.relu(t)))(tf.tensor1d(reluXs))))).kernels.map((k) => k.name);
      return { values: reluGrad(), names };
    });
    expect(plain(values)).toEqual(expected);
    expect(names).toContain('Step');
    expect(names).not.toContain(NATIVE_RELU_GRAD);
  });

  it('has the relu gradient of finite differences (a weighted sum of relu, away from 0)', () => {
    const xs = [-2, -0.7, -0.2, 0.2, 0.6, 1.5, 3];
    const r = [0.3, -1.2, 0.8, 1.7, -0.6, 2.2, -0.9];
    const loss = (t: tf.Tensor) => tf.sum(tf.mul(tf.relu(t), tf.tensor1d(r)));
    const analytic = tf.tidy(() => tf.grad(loss)(tf.tensor1d(xs)).dataSync().slice());
    const eps = 0.05;
    xs.forEach((_, i) => {
      const at = (d: number) => tf.tidy(() => loss(tf.tensor1d(xs.map((v, k) => (k === i ? v + d : v)))).dataSync()[0]);
      const numeric = (at(eps) - at(-eps)) / (2 * eps);
      expect(Math.abs(analytic[i] - numeric), `x = ${xs[i]}`).toBeLessThan(1e-4 * Math.max(1, Math.abs(numeric)));
    });
  });

  const reshapes: { from: number[]; to: number[] }[] = [
    { from: [2, 3, 4], to: [4, 6] },
    { from: [24], to: [2, 3, 4] },
    { from: [2, 3, 4, 5], to: [6, 20] },
    { from: [2, 3, 4, 5], to: [-1, 5] },
    { from: [1, 7, 1], to: [7] },
    { from: [6], to: [1, 6, 1, 1] },
  ];
  const transposes: { shape: number[]; perm: number[] }[] = [
    { shape: [3, 4], perm: [1, 0] },
    { shape: [2, 3, 4], perm: [0, 2, 1] },
    { shape: [2, 3, 4], perm: [2, 0, 1] },
    { shape: [2, 3, 4, 5], perm: [0, 3, 1, 2] },
    { shape: [2, 3, 4, 5], perm: [3, 2, 1, 0] },
    { shape: [2, 3, 4, 5], perm: [0, 1, 2, 3] },
  ];
  const seq = (shape: number[], dtype: 'float32' | 'int32' | 'bool') => {
    const n = shape.reduce((a, b) => a * b, 1);
    return Array.from({ length: n }, (_, i) => (dtype === 'bool' ? i % 3 === 0 : dtype === 'int32' ? i * 7 - 40 : i * 0.37 - 3.1));
  };
  type Result = { shape: number[]; values: number[] };
  const runReshapes = (dtype: 'float32' | 'int32' | 'bool'): Result[] =>
    reshapes.map(({ from, to }) =>
      tf.tidy(() => {
        const y = tf.reshape(tf.tensor(seq(from, dtype) as number[], from, dtype), to);
        return { shape: y.shape, values: Array.from(y.dataSync()) };
      }),
    );
  const runTransposes = (dtype: 'float32' | 'int32' | 'bool'): Result[] =>
    transposes.map(({ shape, perm }) =>
      tf.tidy(() => {
        const y = tf.transpose(tf.tensor(seq(shape, dtype) as number[], shape, dtype), perm);
        return { shape: y.shape, values: Array.from(y.dataSync()) };
      }),
    );

  for (const dtype of ['float32', 'int32', 'bool'] as const) {
    it(`reshapes and transposes ${dtype} tensors as the cpu backend does`, async () => {
      const native = { reshaped: runReshapes(dtype), transposed: runTransposes(dtype) };
      const cpu = await onCpu(() => ({ reshaped: runReshapes(dtype), transposed: runTransposes(dtype) }));
      expect(native).toEqual(cpu);
      expect(native.reshaped[3].shape).toEqual([24, 5]);
      expect(native.transposed[4].shape).toEqual([5, 4, 3, 2]);
    });
  }

  it('caches the shape and permutation constants: repeated calls upload nothing and keep the tensor count', () => {
    const x = tf.tensor(seq([2, 3, 4, 5], 'float32') as number[], [2, 3, 4, 5]);
    // Shapes nothing else in this file uses, first seen inside a tidy (the cache must outlive it).
    const shape = [5, 1, 24];
    const perm = [1, 3, 0, 2];
    const first = tf.tidy(() => [Array.from(tf.reshape(x, shape).dataSync()), Array.from(tf.transpose(x, perm).dataSync())]);
    const live = tf.memory().numTensors;
    const write = vi.spyOn(tf.backend(), 'write');
    try {
      for (let i = 0; i < 50; i++) {
        const y = tf.reshape(x, shape);
        const z = tf.transpose(x, perm);
        if (i === 49) expect([Array.from(y.dataSync()), Array.from(z.dataSync())]).toEqual(first);
        tf.dispose([y, z]);
      }
      expect(write, 'no int32 constant is uploaded again').not.toHaveBeenCalled();
    } finally {
      write.mockRestore();
    }
    expect(tf.memory().numTensors).toBe(live);
    // A new shape adds one cached constant, and only the first time.
    const before = tf.memory().numTensors;
    tf.dispose(tf.reshape(x, [3, 40]));
    const added = tf.memory().numTensors - before;
    expect(added).toBeLessThanOrEqual(1);
    for (let i = 0; i < 20; i++) tf.dispose(tf.reshape(x, [3, 40]));
    expect(tf.memory().numTensors - before).toBe(added);
    x.dispose();
  });

  it('keeps at most a bounded number of cached constants however many shapes come', () => {
    const x = tf.zeros([4096]);
    const before = tf.memory().numTensors;
    // Every ordered factorisation of 4096 = 2^12 into powers of two (2,048 shapes), each
    // also with a leading and with a trailing 1: 6,144 distinct shapes.
    let shapes = 0;
    for (let cuts = 0; cuts < 2 ** 11; cuts++) {
      const shape: number[] = [];
      let run = 1;
      for (let bit = 0; bit < 12; bit++) {
        run *= 2;
        if (bit === 11 || cuts & (1 << bit)) {
          shape.push(run);
          run = 1;
        }
      }
      for (const s of [shape, [1, ...shape], [...shape, 1]]) {
        tf.dispose(tf.reshape(x, s));
        shapes++;
      }
    }
    expect(shapes).toBe(6144);
    expect(tf.memory().numTensors - before).toBeLessThanOrEqual(4096);
    // Still right after the cache started over.
    const t = tf.tidy(() => tf.transpose(tf.reshape(tf.range(0, 6), [2, 3])));
    expect(Array.from(t.dataSync())).toEqual([0, 3, 1, 4, 2, 5]);
    t.dispose();
    x.dispose();
  });
}, ['tensorflow']);
