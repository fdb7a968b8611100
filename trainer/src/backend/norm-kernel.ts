// Normalisation (mean 0, variance 1 along one axis) as one kernel each way on the wasm
// backend, computed in JavaScript on views of the wasm heap.
//
// Composed of tfjs ops, an instance norm is 7 kernels forward and 7 backward (mean,
// subtract, square, mean, add, rsqrt, multiply), and on wasm 4 transposes more to
// bring the channels to rows, since wasm reduces only along the last axis quickly.
// Here the input is read as [outer, n, inner] (an instance norm of [B, H, W, C]:
// outer B, n H*W, inner C; the cells' rows [R, n]: outer R, inner 1) and every
// (outer, inner) pair is normalised over n in place, with no transpose: one pass for
// the statistics, one to write, and two passes back for the gradient
// dx = rstd * (dy - mean(dy) - y * mean(dy * y)). Sums are taken in float64.
// test/bench/step-changes.ts measures what it buys a step.
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

/**
 * y and rstd ([outer, inner]) of x read as [outer, n, inner]. One (outer, inner)
 * pair at a time, strided: its sums stay in registers (about 2.5x faster than
 * accumulating all channels of a pixel together). The variance is E[x^2] - mean^2
 * over float64 sums, which stays exact to float32 precision unless the mean exceeds
 * the spread by about 10^6.
 */
function normalize(xs: Float32Array, ys: Float32Array, rs: Float32Array, { outer, n, inner, eps }: Attrs): void {
  const block = n * inner;
  for (let o = 0; o < outer; o++) {
    const base = o * block;
    for (let i = 0; i < inner; i++) {
      const end = base + block;
      let s = 0;
      let q = 0;
      for (let k = base + i; k < end; k += inner) {
        const v = xs[k];
        s += v;
        q += v * v;
      }
      const mean = s / n;
      const r = 1 / Math.sqrt(Math.max(0, q / n - mean * mean) + eps);
      rs[o * inner + i] = r;
      for (let k = base + i; k < end; k += inner) ys[k] = (xs[k] - mean) * r;
    }
  }
}

/** dx from dy, y and rstd, all read as normalize's layout. */
function normalizeGrad(dys: Float32Array, ys: Float32Array, rs: Float32Array, dxs: Float32Array, { outer, n, inner }: Attrs): void {
  const block = n * inner;
  for (let o = 0; o < outer; o++) {
    const base = o * block;
    for (let i = 0; i < inner; i++) {
      const end = base + block;
      let a = 0;
      let b = 0;
      for (let k = base + i; k < end; k += inner) {
        const g = dys[k];
        a += g;
        b += g * ys[k];
      }
      a /= n;
      b /= n;
      const r = rs[o * inner + i];
      for (let k = base + i; k < end; k += inner) dxs[k] = r * (dys[k] - a - ys[k] * b);
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
