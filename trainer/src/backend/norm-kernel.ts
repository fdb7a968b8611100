// Normalisation (mean 0, variance 1 along one axis) as one kernel each way on the wasm
// backend, computed in JavaScript on views of the wasm heap.
//
// Composed of tfjs ops, an instance norm is 7 kernels forward and 7 backward (mean,
// subtract, square, mean, add, rsqrt, multiply), and on wasm 4 transposes more to
// bring the channels to rows, since wasm reduces only along the last axis quickly.
// Here the input is read as [outer, n, inner] (an instance norm of [B, H, W, C]:
// outer B, n H*W, inner C) and every (outer, inner) pair is normalised over n in
// place, with no transpose: two passes for the statistics, one to write, and two
// passes back for the gradient dx = rstd * (dy - mean(dy) - y * mean(dy * y)). Sums
// are taken in float64. Measured in a search step (test/bench/step-changes.ts): 6-8%
// less CPU at 32x32; the cells' row norms stay composed (layers.ts normalizeRows).
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';

export const NORMALIZE = 'IacnasNormalize';
export const NORMALIZE_GRAD = 'IacnasNormalizeGrad';

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: string): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

interface Attrs {
  outer: number;
  n: number;
  inner: number;
  eps: number;
}

function attrsOf(a: unknown): Attrs {
  const { outer, n, inner, eps } = a as Attrs;
  return { outer, n, inner, eps };
}

/** y and rstd ([outer, inner]) of x read as [outer, n, inner]. */
function normalize(xs: Float32Array, ys: Float32Array, rs: Float32Array, { outer, n, inner, eps }: Attrs): void {
  const sum = new Float64Array(inner);
  const mean = new Float64Array(inner);
  const rstd = new Float64Array(inner);
  const block = n * inner;
  for (let o = 0; o < outer; o++) {
    const base = o * block;
    sum.fill(0);
    for (let p = 0; p < n; p++) {
      const at = base + p * inner;
      for (let i = 0; i < inner; i++) sum[i] += xs[at + i];
    }
    for (let i = 0; i < inner; i++) mean[i] = sum[i] / n;
    sum.fill(0);
    for (let p = 0; p < n; p++) {
      const at = base + p * inner;
      for (let i = 0; i < inner; i++) {
        const d = xs[at + i] - mean[i];
        sum[i] += d * d;
      }
    }
    for (let i = 0; i < inner; i++) {
      rstd[i] = 1 / Math.sqrt(sum[i] / n + eps);
      rs[o * inner + i] = rstd[i];
    }
    for (let p = 0; p < n; p++) {
      const at = base + p * inner;
      for (let i = 0; i < inner; i++) ys[at + i] = (xs[at + i] - mean[i]) * rstd[i];
    }
  }
}

/** dx from dy, y and rstd, all read as normalize's layout. */
function normalizeGrad(dys: Float32Array, ys: Float32Array, rs: Float32Array, dxs: Float32Array, { outer, n, inner }: Attrs): void {
  const sdy = new Float64Array(inner);
  const sdyy = new Float64Array(inner);
  const block = n * inner;
  for (let o = 0; o < outer; o++) {
    const base = o * block;
    sdy.fill(0);
    sdyy.fill(0);
    for (let p = 0; p < n; p++) {
      const at = base + p * inner;
      for (let i = 0; i < inner; i++) {
        const g = dys[at + i];
        sdy[i] += g;
        sdyy[i] += g * ys[at + i];
      }
    }
    for (let i = 0; i < inner; i++) {
      sdy[i] /= n;
      sdyy[i] /= n;
    }
    for (let p = 0; p < n; p++) {
      const at = base + p * inner;
      for (let i = 0; i < inner; i++) dxs[at + i] = rs[o * inner + i] * (dys[at + i] - sdy[i] - ys[at + i] * sdyy[i]);
    }
  }
}

const forward: KernelConfig = {
  kernelName: NORMALIZE,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const x = inputs.x as TensorInfo;
    const a = attrsOf(attrs);
    const heap = backend as unknown as WasmBackendLike;
    const y = heap.makeOutput([...x.shape], 'float32');
    const rstd = heap.makeOutput([a.outer, a.inner], 'float32');
    // Views only after every makeOutput: allocating may grow (and move) the heap.
    normalize(heap.typedArrayFromHeap(x), heap.typedArrayFromHeap(y), heap.typedArrayFromHeap(rstd), a);
    return [y, rstd];
  },
};

const backward: KernelConfig = {
  kernelName: NORMALIZE_GRAD,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { dy, y, rstd } = inputs as { dy: TensorInfo; y: TensorInfo; rstd: TensorInfo };
    const heap = backend as unknown as WasmBackendLike;
    const dx = heap.makeOutput([...dy.shape], 'float32');
    normalizeGrad(heap.typedArrayFromHeap(dy), heap.typedArrayFromHeap(y), heap.typedArrayFromHeap(rstd), heap.typedArrayFromHeap(dx), attrsOf(attrs));
    return dx;
  },
};

let registered = false;
let enabled = true;

/** Registers the two kernels for wasm and the forward kernel's gradient. Idempotent. */
export function installWasmNormalize(): void {
  if (registered || !tf.findBackend('wasm')) return;
  registered = true;
  tf.registerKernel(forward);
  tf.registerKernel(backward);
  tf.registerGradient({
    kernelName: NORMALIZE,
    outputsToSave: [true, true],
    gradFunc: (dy, saved, attrs) => {
      const [y, rstd] = saved;
      const g = Array.isArray(dy) ? dy[0] : dy;
      return { x: () => tf.engine().runKernel(NORMALIZE_GRAD, { dy: g, y, rstd }, attrs) as tf.Tensor };
    },
  });
}

/** Turns the kernels off (true: back on) without unregistering them; for before/after measurements. */
export function setWasmNormalize(on: boolean): void {
  enabled = on;
}

/** Whether normalizeOver runs here: on the wasm backend, once installed. */
export function wasmNormalizeActive(): boolean {
  return registered && enabled && tf.getBackend() === 'wasm';
}

/** x read as [outer, n, inner], normalised over n for every (outer, inner); float32 only. */
export function normalizeOver<T extends tf.Tensor>(x: T, outer: number, n: number, inner: number, eps: number): T {
  if (x.dtype !== 'float32') throw new Error(`normalizeOver: float32 only, got ${x.dtype}`);
  if (outer * n * inner !== x.size) throw new Error(`normalizeOver: [${outer}, ${n}, ${inner}] does not cover shape [${x.shape}]`);
  const [y, rstd] = tf.engine().runKernel(NORMALIZE, { x }, { outer, n, inner, eps } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  rstd.dispose();
  return y as T;
}
