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

/** dL/dx of conv2d(x, filter, stride 1, pad, dilation): dy correlated with the flipped, in/out-swapped filter. */
export function conv2dInputGrad(dy: tf.Tensor4D, filter: tf.Tensor4D, dilation: [number, number], pad: Pad): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw] = filter.shape;
    const p = stride1Padding(kh, kw, dilation, pad);
    const q = inputGradPadding(kh, kw, dilation, p);
    const flipped = kh === 1 && kw === 1 ? filter : tf.reverse(filter, [0, 1]);
    const swapped = tf.transpose(flipped, [0, 1, 3, 2]);
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
    const flipped = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, c * m, 1]) as tf.Tensor4D;
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

let installed = false;

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
  if (installed) return;
  installed = true;
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
  tf.registerGradient(conv2dGrad);
  tf.registerGradient(depthwiseGrad);
}
