// Gradients of stride-1 convolutions written with forward ops that every backend
// has. The wasm backend lacks Conv2DBackpropFilter and both depthwise backprop
// kernels, the pure-JS cpu backend's Conv2DBackpropFilter runs at ~0.01 GFLOP/s, and
// tfjs has no gradient for dilated convolutions on any backend.
//
// The formulations are registered as the kernels' gradients (tf.registerGradient)
// rather than wrapped with tf.customGrad: the engine then computes only the input
// gradients a backward pass needs, so a frozen backbone's filter gradients are never
// computed. They are also exported as plain functions so tests can check them
// against finite differences.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, NamedAttrMap } from '@tensorflow/tfjs-core';

type Pad = 'same' | 'valid';

interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

function pair(v: unknown, what: string): [number, number] {
  if (v == null) return [1, 1];
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  throw new Error(`unsupported ${what}: ${JSON.stringify(v)}`);
}

/** TensorFlow 'same'/'valid' padding for stride 1 (extra pixel at the bottom/right). */
function stride1Padding(kh: number, kw: number, dilation: [number, number], pad: Pad): Padding {
  if (pad === 'valid') return { top: 0, bottom: 0, left: 0, right: 0 };
  const th = (kh - 1) * dilation[0];
  const tw = (kw - 1) * dilation[1];
  const top = Math.floor(th / 2);
  const left = Math.floor(tw / 2);
  return { top, bottom: th - top, left, right: tw - left };
}

function padSpatial<T extends tf.Tensor4D>(x: T, p: Padding): T {
  if (p.top === 0 && p.bottom === 0 && p.left === 0 && p.right === 0) return x;
  return tf.pad(x, [
    [0, 0],
    [p.top, p.bottom],
    [p.left, p.right],
    [0, 0],
  ]) as T;
}

/**
 * Pads dy so that a 'valid' correlation with the flipped filter gives the input
 * gradient; returns dy itself and 'same' when the padding is symmetric.
 */
function inputGradPadding(kh: number, kw: number, d: [number, number], p: Padding): Padding {
  const eh = (kh - 1) * d[0];
  const ew = (kw - 1) * d[1];
  return { top: eh - p.top, bottom: eh - p.bottom, left: ew - p.left, right: ew - p.right };
}

function isSymmetric(p: Padding, q: Padding): boolean {
  return p.top === q.top && p.bottom === q.bottom && p.left === q.left && p.right === q.right && p.top === p.bottom && p.left === p.right;
}

/** dL/dfilter of conv2d(x, filter, stride 1, pad, dilation), as one forward conv2d. */
export function conv2dFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: number[], dilation: [number, number], pad: Pad): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw] = filterShape;
    const xp = padSpatial(x, stride1Padding(kh, kw, dilation, pad));
    // Batch becomes the channel axis of both operands, input channels the batch.
    const input = tf.transpose(xp, [3, 1, 2, 0]);
    const filter = tf.transpose(dy, [1, 2, 0, 3]);
    const g = tf.conv2d(input, filter, dilation, 'valid'); // [Cin, kh, kw, Cout]
    return tf.transpose(g, [1, 2, 0, 3]);
  });
}

/**
 * Filters rearranged for an input gradient (flipped, in/out swapped), by the data of
 * the filter they came from. A tensor's data never changes (a variable's update gives
 * it new data), so an entry stays right while its source lives: on wasm and cpu the
 * frozen backbone's filters are flipped once per search instead of twice per step,
 * and a cell's once per step (the architecture and the weights pass share them).
 * Entries whose source has been disposed are dropped whenever one is added.
 */
const rearranged = new Map<object, { kind: string; backend: string; t: tf.Tensor }>();
let cacheRearranged = true;

/** Turns the cache of rearranged filters off (true: back on); for before/after measurements. */
export function useFilterCache(on: boolean): void {
  cacheRearranged = on;
  if (!on) clearFilterCache();
}

/** Drops every cached rearranged filter (the memory probe measures a pass that makes its own). */
export function clearFilterCache(): void {
  for (const e of rearranged.values()) e.t.dispose();
  rearranged.clear();
}

interface EngineState {
  state: { tensorInfo: { has(dataId: object): boolean } };
}

function rearrangedFilter<T extends tf.Tensor>(filter: tf.Tensor, kind: string, make: () => T): T {
  if (!cacheRearranged) return make();
  const backend = tf.getBackend();
  const hit = rearranged.get(filter.dataId);
  if (hit && hit.kind === kind && hit.backend === backend && !hit.t.isDisposed) return hit.t as T;
  const alive = (tf.engine() as unknown as EngineState).state.tensorInfo;
  for (const [id, e] of rearranged) {
    if (!alive.has(id) || e.t.isDisposed) {
      e.t.dispose();
      rearranged.delete(id);
    }
  }
  if (hit) {
    hit.t.dispose();
    rearranged.delete(filter.dataId);
  }
  const t = tf.keep(make());
  rearranged.set(filter.dataId, { kind, backend, t });
  return t;
}

/** dL/dx of conv2d(x, filter, stride 1, pad, dilation): dy correlated with the flipped, in/out-swapped filter. */
export function conv2dInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, dilation: [number, number], pad: Pad): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw] = filter.shape;
    const p = stride1Padding(kh, kw, dilation, pad);
    const q = inputGradPadding(kh, kw, dilation, p);
    const swapped = rearrangedFilter(
      filter,
      'conv2d',
      () => tf.transpose(kh === 1 && kw === 1 ? filter : tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D,
    );
    if (isSymmetric(p, q)) return tf.conv2d(dy, swapped, 1, 'same', 'NHWC', dilation);
    return tf.conv2d(padSpatial(dy, q), swapped, 1, 'valid', 'NHWC', dilation);
  });
}

/** dL/dfilter of depthwiseConv2d(x, filter [kh, kw, C, m], stride 1, pad, dilation). */
export function depthwiseFilterGrad(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: number[], dilation: [number, number], pad: Pad): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, c, m] = filterShape;
    const [b] = x.shape;
    const xp = padSpatial(x, stride1Padding(kh, kw, dilation, pad));
    const [, hp, wp] = xp.shape;
    const [, ho, wo] = dy.shape;
    // (batch, channel) pairs become the channels of one depthwise correlation whose
    // "filter" is dy; summing over the batch afterwards gives the filter gradient.
    const input = tf.reshape(tf.transpose(xp, [1, 2, 0, 3]), [1, hp, wp, b * c]);
    const filter = tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [ho, wo, b * c, m]);
    const g = tf.depthwiseConv2d(input as tf.Tensor4D, filter as tf.Tensor4D, dilation, 'valid'); // [1, kh, kw, b*c*m]
    return tf.sum(tf.reshape(g, [kh, kw, b, c, m]), 2) as tf.Tensor4D;
  });
}

/** dL/dx of depthwiseConv2d(x, filter [kh, kw, C, m], stride 1, pad, dilation). */
export function depthwiseInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, dilation: [number, number], pad: Pad): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, c, m] = filter.shape;
    const p = stride1Padding(kh, kw, dilation, pad);
    const q = inputGradPadding(kh, kw, dilation, p);
    const flipped = rearrangedFilter(filter, 'depthwise', () => tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]) as tf.Tensor4D);
    const g = isSymmetric(p, q)
      ? tf.depthwiseConv2d(dy, flipped, 1, 'same', 'NHWC', dilation)
      : tf.depthwiseConv2d(padSpatial(dy, q), flipped, 1, 'valid', 'NHWC', dilation);
    if (m === 1) return g;
    const [b, h, w] = g.shape;
    return tf.sum(tf.reshape(g, [b, h, w, c, m]), 4) as tf.Tensor4D;
  });
}

function stride1Attrs(attrs: NamedAttrMap): { ok: boolean; dilation: [number, number]; pad: Pad } {
  const strides = pair(attrs.strides, 'strides');
  const dilation = pair(attrs.dilations, 'dilations');
  const pad = attrs.pad;
  const format = attrs.dataFormat ?? 'NHWC';
  const ok = strides[0] === 1 && strides[1] === 1 && (pad === 'same' || pad === 'valid') && format === 'NHWC';
  return { ok, dilation, pad: pad as Pad };
}

/**
 * The count of a stride-1 'same' k x k pooling window that lies inside an h x w
 * image, at every position: [1, h, w, 1]. TensorFlow's average pooling divides by
 * this count (padding is not averaged in); cached per shape, shared by every cell.
 */
const windowCounts = new Map<string, tf.Tensor4D>();
function windowCount(h: number, w: number, kh: number, kw: number): tf.Tensor4D {
  const key = `${h}x${w}/${kh}x${kw}`;
  let t = windowCounts.get(key);
  if (!t || t.isDisposed) {
    const along = (n: number, k: number) => {
      const before = Math.floor((k - 1) / 2);
      return Array.from({ length: n }, (_, i) => Math.min(n - 1, i - before + k - 1) - Math.max(0, i - before) + 1);
    };
    const rows = along(h, kh);
    const cols = along(w, kw);
    const v = new Float32Array(h * w);
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) v[i * w + j] = rows[i] * cols[j];
    t = tf.keep(tf.tensor4d(v, [1, h, w, 1]));
    windowCounts.set(key, t);
  }
  return t;
}

/**
 * dL/dx of avgPool(x, [kh, kw], stride 1, 'same') for odd kh, kw. With n the window
 * count, y(p) = sum over the window N(p) of x(q), divided by n(p); since q is in N(p)
 * exactly when p is in N(q), dx(p) = sum over N(p) of dy(q) / n(q)
 * = avgPool(dy / n)(p) * n(p). (tfjs's AvgPoolGrad on the cpu and wasm backends
 * divides by kh * kw everywhere, which is wrong at the borders.)
 */
export function avgPoolSameInputGrad(dy: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [, h, w] = dy.shape;
    const n = windowCount(h, w, kh, kw);
    return tf.mul(tf.avgPool(tf.div(dy, n) as tf.Tensor4D, [kh, kw], 1, 'same'), n);
  });
}

/** Ours, once made; registered again whenever something replaced them. */
let ours: GradConfig[] | undefined;

/** Backends whose native backprop kernels are fast (tfjs-node). */
const NATIVE = new Set(['tensorflow']);

/**
 * Registers the stride-1 formulations as the gradients of Conv2D and
 * DepthwiseConv2dNative. On tfjs-node (fast native backprop kernels) undilated
 * convolutions keep tfjs's own gradient; the choice is made per call, so a process
 * that switches backends stays correct. Anything that is not stride 1 falls back to
 * tfjs's gradient.
 */
export function installConvGradients(): void {
  // Loading @tensorflow/tfjs-node (the union package it imports registers all of
  // tfjs-core's gradients again) replaces ours, so check rather than remember.
  if (ours) {
    for (const g of ours) if (tf.getGradient(g.kernelName) !== g) tf.registerGradient(g);
    return;
  }
  const preferNative = () => NATIVE.has(tf.getBackend());
  const conv2dNative = tf.getGradient('Conv2D');
  const depthwiseNative = tf.getGradient('DepthwiseConv2dNative');

  const conv2dGrad: GradConfig = {
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const { ok, dilation, pad } = stride1Attrs(attrs);
      const undilated = dilation[0] === 1 && dilation[1] === 1;
      if (!ok || (undilated && preferNative())) return conv2dNative.gradFunc(dy, saved, attrs);
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      return {
        x: () => conv2dInputGrad(dy as tf.Tensor4D, filter, dilation, pad),
        filter: () => conv2dFilterGrad(x, dy as tf.Tensor4D, filter.shape, dilation, pad),
      };
    },
  };
  const depthwiseGrad: GradConfig = {
    kernelName: 'DepthwiseConv2dNative',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const { ok, dilation, pad } = stride1Attrs(attrs);
      const undilated = dilation[0] === 1 && dilation[1] === 1;
      if (!ok || (undilated && preferNative())) return depthwiseNative.gradFunc(dy, saved, attrs);
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      return {
        x: () => depthwiseInputGrad(dy as tf.Tensor4D, filter, dilation, pad),
        filter: () => depthwiseFilterGrad(x, dy as tf.Tensor4D, filter.shape, dilation, pad),
      };
    },
  };
  const avgPoolNative = tf.getGradient('AvgPool');
  const avgPoolGrad: GradConfig = {
    kernelName: 'AvgPool',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const [kh, kw] = pair(attrs.filterSize, 'filterSize');
      const strides = pair(attrs.strides, 'strides');
      const sameStride1 = strides[0] === 1 && strides[1] === 1 && attrs.pad === 'same' && kh % 2 === 1 && kw % 2 === 1;
      // TensorFlow's own AvgPoolGrad (tfjs-node) is right; tfjs's cpu and wasm kernels are not.
      if (!sameStride1 || preferNative()) return avgPoolNative.gradFunc(dy, saved, attrs);
      return { x: () => avgPoolSameInputGrad(dy as tf.Tensor4D, kh, kw) };
    },
  };
  ours = [conv2dGrad, depthwiseGrad, avgPoolGrad];
  for (const g of ours) tf.registerGradient(g);
}

/**
 * The filter of a depthwise convolution with dilation d as an undilated one: d - 1
 * zeros between taps, [k, k, C, M] -> [(k - 1) d + 1, (k - 1) d + 1, C, M]. For
 * stride 1 and 'same' padding the two convolutions are equal.
 */
export function dilateFilter(filter: tf.Tensor4D, d: number): tf.Tensor4D {
  if (d === 1) return filter;
  const [kh, kw, c, m] = filter.shape;
  const spread = tf.pad(tf.reshape(filter, [kh, 1, kw, 1, c, m]), [
    [0, 0],
    [0, d - 1],
    [0, 0],
    [0, d - 1],
    [0, 0],
    [0, 0],
  ]);
  return tf.slice4d(tf.reshape(spread, [kh * d, kw * d, c, m]) as tf.Tensor4D, [0, 0, 0, 0], [(kh - 1) * d + 1, (kw - 1) * d + 1, c, m]);
}

/**
 * depthwiseConv2d(x, filter, stride 1, 'same', dilation) on every backend. TensorFlow's
 * DepthwiseConv2dNative takes dilations only through oneDNN, which is off by default
 * on most CPUs and never used on a GPU ("Current kernel implementation does not
 * support dilations"), so on the native backends the filter is dilated instead and
 * the convolution and its gradients stay native kernels.
 */
export function depthwiseSameDilated(x: tf.Tensor4D, filter: tf.Tensor4D, dilation: number): tf.Tensor4D {
  if (dilation === 1) return tf.depthwiseConv2d(x, filter, 1, 'same');
  if (NATIVE.has(tf.getBackend())) return tf.depthwiseConv2d(x, dilateFilter(filter, dilation), 1, 'same');
  return tf.depthwiseConv2d(x, filter, 1, 'same', 'NHWC', dilation);
}
