// Small building blocks shared by the backbone and the cell operations.
import * as tf from '@tensorflow/tfjs-core';

const NORM_EPS = 1e-5;

/**
 * Instance normalisation over height and width, per sample and channel. Used
 * instead of batch normalisation: no running statistics to keep or save, and the
 * same result in training and inference (nnU-Net uses it for the same reasons).
 */
export function instanceNorm(x: tf.Tensor4D, gamma?: tf.Tensor, beta?: tf.Tensor): tf.Tensor4D {
  const mean = tf.mean(x, [1, 2], true);
  const centered = tf.sub(x, mean);
  const variance = tf.mean(tf.square(centered), [1, 2], true);
  let y = tf.mul(centered, tf.rsqrt(tf.add(variance, NORM_EPS))) as tf.Tensor4D;
  if (gamma) y = tf.mul(y, gamma);
  if (beta) y = tf.add(y, beta);
  return y;
}

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
