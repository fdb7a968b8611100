// Small building blocks shared by the backbone and the cell operations.
import * as tf from '@tensorflow/tfjs-core';

const NORM_EPS = 1e-5;

/**
 * Instance normalisation over height and width, per sample and channel. Used
 * instead of batch normalisation: no running statistics to keep or save, and the
 * same result in training and inference (nnU-Net uses it for the same reasons).
 */
export function instanceNorm(x: tf.Tensor4D, gamma?: tf.Tensor, beta?: tf.Tensor): tf.Tensor4D {
  let y = normalize(x);
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return y;
}

/**
 * (x - mean) / sqrt(var + eps) with the analytic gradient
 * dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)): 7 kernels instead of the ~25
 * that differentiating mean, sub, square, mean, add, rsqrt and mul one by one takes.
 */
const normalize = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  const save = args[1] as tf.GradSaveFunc;
  const mean = tf.mean(x, [1, 2], true);
  const centered = tf.sub(x, mean);
  const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centered), [1, 2], true), NORM_EPS));
  const xhat = tf.mul(centered, rstd);
  save([xhat, rstd]);
  return {
    value: xhat,
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
      const g = dy as tf.Tensor;
      const [xh, rs] = saved;
      const proj = tf.mean(tf.mul(g, xh), [1, 2], true);
      return tf.mul(rs, tf.sub(tf.sub(g, tf.mean(g, [1, 2], true)), tf.mul(xh, proj)));
    },
  };
}) as (x: tf.Tensor4D) => tf.Tensor4D;

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
