// The candidate operations of a cell edge (stride 1, 'same' padding, ReLU-conv-norm
// ordering as in DARTS, instance norm without affine parameters).
//
// A cell applies an operation to the same partial input on every outgoing edge of
// an input node, so the edges that share an input are computed together:
// parameter-free operations once for all of them, convolutions as one convolution
// whose output channels are the edges' blocks side by side.
import * as tf from '@tensorflow/tfjs-core';
import { depthwiseSameDilated } from '../backend/gradients.ts';
import type { Operation } from '../config/index.ts';
import type { WeightStore } from './init.ts';
import { instanceNorm, pointwise } from './layers.ts';

export type OpSpec =
  | { kind: 'none' }
  | { kind: 'identity' }
  | { kind: 'pool'; pool: 'avg' | 'max'; k: number }
  | { kind: 'conv'; k: number }
  | { kind: 'dil'; k: number; dilation: number }
  | { kind: 'sep'; k: number };

export const OP_SPECS: Record<Operation, OpSpec> = {
  none: { kind: 'none' },
  skip_connect: { kind: 'identity' },
  conv_3x3: { kind: 'conv', k: 3 },
  conv_5x5: { kind: 'conv', k: 5 },
  dil_conv_3x3: { kind: 'dil', k: 3, dilation: 2 },
  dil_conv_5x5: { kind: 'dil', k: 5, dilation: 2 },
  sep_conv_3x3: { kind: 'sep', k: 3 },
  sep_conv_5x5: { kind: 'sep', k: 5 },
  avg_pool_3x3: { kind: 'pool', pool: 'avg', k: 3 },
  max_pool_3x3: { kind: 'pool', pool: 'max', k: 3 },
};

/** Whether an operation's output is the same on every edge that reads the same input. */
export function isShared(op: Operation): boolean {
  const kind = OP_SPECS[op].kind;
  return kind === 'identity' || kind === 'pool';
}

export function hasWeights(op: Operation): boolean {
  const kind = OP_SPECS[op].kind;
  return kind === 'conv' || kind === 'dil' || kind === 'sep';
}

/** The weights of one operation on one edge. */
export type EdgeOpWeights = Record<string, tf.Variable>;

/** Creates the weights of `op` on one edge with `c` channels; names are `${prefix}/<part>`. */
export function createOpWeights(store: WeightStore, prefix: string, op: Operation, c: number): EdgeOpWeights {
  const spec = OP_SPECS[op];
  const w: EdgeOpWeights = {};
  switch (spec.kind) {
    case 'conv':
      w.kernel = store.add(`${prefix}/kernel`, [spec.k, spec.k, c, c], { kind: 'he', fanIn: spec.k * spec.k * c });
      break;
    case 'dil':
      w.dw = store.add(`${prefix}/dw`, [spec.k, spec.k, c, 1], { kind: 'he', fanIn: spec.k * spec.k });
      w.pw = store.add(`${prefix}/pw`, [c, c], { kind: 'he', fanIn: c });
      break;
    case 'sep':
      w.dw1 = store.add(`${prefix}/dw1`, [spec.k, spec.k, c, 1], { kind: 'he', fanIn: spec.k * spec.k });
      w.pw1 = store.add(`${prefix}/pw1`, [c, c], { kind: 'he', fanIn: c });
      w.dw2 = store.add(`${prefix}/dw2`, [spec.k, spec.k, c, 1], { kind: 'he', fanIn: spec.k * spec.k });
      w.pw2 = store.add(`${prefix}/pw2`, [c, c], { kind: 'he', fanIn: c });
      break;
    default:
      break;
  }
  return w;
}

/**
 * An operation's output before its final normalisation (x itself for the identity).
 * The cell normalises the outputs of all operations on one input at once.
 * `weights` are the edges' weights (fused operations, edge t's output in channels
 * t*c .. t*c + c - 1); `relu`, when given, is relu(x) shared by several operations.
 */
export function rawOutput(op: Operation, x: tf.Tensor4D, weights: readonly EdgeOpWeights[] = [], relu?: tf.Tensor4D): tf.Tensor4D {
  const spec = OP_SPECS[op];
  const m = weights.length;
  const cat = (key: string, axis: number) =>
    (m === 1
      ? weights[0][key]
      : tf.concat(
          weights.map((w) => w[key]),
          axis,
        )) as tf.Tensor4D;
  switch (spec.kind) {
    case 'identity':
      return x;
    case 'pool':
      return spec.pool === 'avg' ? tf.avgPool(x, spec.k, 1, 'same') : tf.maxPool(x, spec.k, 1, 'same');
    case 'conv':
      return tf.conv2d(relu ?? tf.relu(x), cat('kernel', 3), 1, 'same');
    case 'dil': {
      const dw = depthwiseSameDilated(relu ?? tf.relu(x), cat('dw', 3), spec.dilation);
      return pointwise(
        dw,
        blockDiagonal(
          weights.map((w) => w.pw),
          true,
        ),
      );
    }
    case 'sep': {
      const dw1 = tf.depthwiseConv2d(relu ?? tf.relu(x), cat('dw1', 3), 1, 'same');
      const h = instanceNorm(
        pointwise(
          dw1,
          blockDiagonal(
            weights.map((w) => w.pw1),
            true,
          ),
        ),
      );
      const dw2 = tf.depthwiseConv2d(tf.relu(h), cat('dw2', 2), 1, 'same');
      return pointwise(
        dw2,
        blockDiagonal(
          weights.map((w) => w.pw2),
          false,
        ),
      );
    }
    case 'none':
      throw new Error("operation 'none' has no output");
  }
}

/** Parameter-free operations: the same output for every edge reading x. */
export function applyShared(op: Operation, x: tf.Tensor4D): tf.Tensor4D {
  if (hasWeights(op)) throw new Error(`operation ${op} has weights; use applyFused`);
  return OP_SPECS[op].kind === 'identity' ? x : instanceNorm(rawOutput(op, x));
}

const eyes = new Map<number, tf.Tensor2D>();

/** Cached identity matrices (constants shared by every cell). */
function eye(m: number): tf.Tensor2D {
  let e = eyes.get(m);
  if (!e || e.isDisposed) {
    e = tf.keep(tf.eye(m)) as tf.Tensor2D;
    eyes.set(m, e);
  }
  return e;
}

/**
 * Block-diagonal 1x1 weights for m edges. `interleaved` inputs come from a
 * depthwise convolution with channel multiplier m (channel c*m + t belongs to edge
 * t); otherwise edge t's inputs are the block t*c .. t*c + c - 1. Outputs are always
 * blocks, edge by edge.
 */
function blockDiagonal(pws: tf.Variable[], interleaved: boolean): tf.Tensor2D {
  const m = pws.length;
  if (m === 1) return pws[0] as unknown as tf.Tensor2D;
  const [c, d] = pws[0].shape;
  const stacked = tf.stack(pws); // [m, c, d]
  if (interleaved) {
    // W[c*m + t, t'*d + j] = P[t, c, j] * [t == t']
    const a = tf.reshape(tf.transpose(stacked, [1, 0, 2]), [c, m, 1, d]);
    return tf.reshape(tf.mul(a, tf.reshape(eye(m), [1, m, m, 1])), [c * m, m * d]);
  }
  // W[t*c + i, t'*d + j] = P[t, i, j] * [t == t']
  const a = tf.reshape(stacked, [m, c, 1, d]);
  return tf.reshape(tf.mul(a, tf.reshape(eye(m), [m, 1, m, 1])), [m * c, m * d]);
}

/**
 * Operations with weights on m edges at once: x is the shared input
 * [B, H, W, c]; the result is [B, H, W, m*c], edge t's output in channels t*c ..
 * t*c + c - 1 (edges in the order of `weights`). `relu`, when given, is relu(x).
 */
export function applyFused(op: Operation, x: tf.Tensor4D, weights: readonly EdgeOpWeights[], relu?: tf.Tensor4D): tf.Tensor4D {
  if (!hasWeights(op)) throw new Error(`operation ${op} has no weights; use applyShared`);
  return instanceNorm(rawOutput(op, x, weights, relu));
}
