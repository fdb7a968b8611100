// Small building blocks shared by the backbone and the cell operations.
import * as tf from '@tensorflow/tfjs-core';
import { normalizeOver, wasmNormalizeActive } from '../backend/norm-kernel.ts';

const NORM_EPS = 1e-5;

/**
 * Instance normalisation over height and width, per sample and channel. Used
 * instead of batch normalisation: no running statistics to keep or save, and the
 * same result in training and inference (nnU-Net uses it for the same reasons).
 *
 * Computed on rows: [B, H, W, C] is transposed to [B*C, H*W] so that the statistics
 * are reductions along the last axis and the corrections broadcast [rows, 1]. The
 * wasm backend reduces over inner axes by transposing anyway, and broadcasts
 * [B, 1, 1, C] against [B, H, W, C] about ten times slower than [rows, 1] against
 * [rows, n]. TensorFlow (the native backends) reduces and broadcasts along any axis
 * at full speed and pays for every transpose, so there the statistics are taken in
 * place, over axes 1 and 2 (normalizeSpatial). On wasm, one kernel each way does it
 * in place (backend/norm-kernel.ts) unless useSpatialNorm chose a layout.
 */
export function instanceNorm(x: tf.Tensor4D, gamma?: tf.Tensor, beta?: tf.Tensor): tf.Tensor4D {
  if (referenceNorm) return referenceInstanceNorm(x, gamma, beta);
  let y: tf.Tensor4D;
  const [b0, h0, w0, c0] = x.shape;
  if (wasmNormalizeActive() && spatialNorm === undefined) {
    y = normalizeOver(x, b0, h0 * w0, c0, NORM_EPS);
  } else if (spatialNorm ?? tf.getBackend() === 'tensorflow') {
    y = normalizeSpatial(x);
  } else {
    const [b, h, w, c] = x.shape;
    const rows = tf.reshape(tf.transpose(tf.reshape(x, [b, h * w, c]), [0, 2, 1]), [b * c, h * w]) as tf.Tensor2D;
    y = tf.reshape(tf.transpose(tf.reshape(normalizeRows(rows), [b, c, h * w]), [0, 2, 1]), [b, h, w, c]) as tf.Tensor4D;
  }
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return y;
}

let referenceNorm = false;
let spatialNorm: boolean | undefined;

/**
 * Forces the instance norm's layout (true: statistics over axes 1 and 2 in place;
 * false: rows); undefined chooses by backend. For measurements and tests.
 */
export function useSpatialNorm(on: boolean | undefined): void {
  spatialNorm = on;
}

/**
 * The textbook formulation (NHWC statistics, gradient by differentiating each op),
 * for before/after measurements (test/bench/trainer-throughput.ts) and tests.
 */
export function useReferenceNorm(on: boolean): void {
  referenceNorm = on;
}

function referenceInstanceNorm(x: tf.Tensor4D, gamma?: tf.Tensor, beta?: tf.Tensor): tf.Tensor4D {
  const centered = tf.sub(x, tf.mean(x, [1, 2], true));
  let y = tf.mul(centered, tf.rsqrt(tf.add(tf.mean(tf.square(centered), [1, 2], true), NORM_EPS))) as tf.Tensor4D;
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return y;
}

/**
 * x to mean 0 and variance 1 along `axes` (kept as size 1), with the analytic gradient
 * dx = rstd * (dy - mean(dy) - y * mean(dy * y)): 7 kernels each way instead of the
 * ~25 that differentiating mean, sub, square, mean, add, rsqrt and mul one by one takes.
 */
function normalizer(axes: number | number[]) {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    const save = args[1] as tf.GradSaveFunc;
    const centered = tf.sub(x, tf.mean(x, axes, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), axes, true), NORM_EPS));
    const y = tf.mul(centered, rstd);
    save([y, rstd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = dy as tf.Tensor;
        const [yy, rs] = saved;
        const proj = tf.mean(tf.mul(g, yy), axes, true);
        return tf.mul(tf.sub(tf.sub(g, tf.mean(g, axes, true)), tf.mul(yy, proj)), rs);
      },
    };
  });
}

const composedRows = normalizer(1) as (x: tf.Tensor2D) => tf.Tensor2D;

/** Each row of x [rows, n] to mean 0 and variance 1 (on wasm, one kernel each way). */
export function normalizeRows(x: tf.Tensor2D): tf.Tensor2D {
  return wasmNormalizeActive() ? normalizeOver(x, x.shape[0], x.shape[1], 1, NORM_EPS) : composedRows(x);
}

/** normalizeRows for [B, H, W, C]: each (sample, channel) over H and W, in place. */
export const normalizeSpatial = normalizer([1, 2]) as (x: tf.Tensor4D) => tf.Tensor4D;

/** 1x1 convolution as a matrix product (its gradients are matrix products on every backend). */
export function pointwise(x: tf.Tensor4D, w: tf.Tensor2D): tf.Tensor4D {
  const [b, h, wd, c] = x.shape;
  const y = tf.matMul(tf.reshape(x, [b * h * wd, c]) as tf.Tensor2D, w);
  return tf.reshape(y, [b, h, wd, w.shape[1]]);
}

/** Nearest-neighbour 2x upsampling. */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  const [, h, w] = x.shape;
  return tf.image.resizeNearestNeighbor(x, [2 * h, 2 * w]);
}
