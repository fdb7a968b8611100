// Segmentation loss (cross-entropy + soft Dice) and the hard Dice metric used for
// validation.
import * as tf from '@tensorflow/tfjs-core';

const SMOOTH = 1e-5;

function oneHotLabels(labels: tf.Tensor, numClasses: number): tf.Tensor4D {
  if (labels.rank === 4) {
    if (labels.shape[3] !== numClasses) throw new Error(`one-hot labels have ${labels.shape[3]} classes, logits ${numClasses}`);
    return tf.cast(labels, 'float32') as tf.Tensor4D;
  }
  if (labels.rank !== 3) throw new Error(`labels must be [batch, height, width] class indices or one-hot [.., classes], got shape [${labels.shape}]`);
  return tf.oneHot(tf.cast(labels, 'int32') as tf.Tensor3D, numClasses) as tf.Tensor4D;
}

/**
 * Cross-entropy (softmax over classes, mean over pixels) plus 1 - mean soft Dice
 * over all classes (Dice computed over the whole batch). logits [B, H, W, K];
 * labels [B, H, W] class indices or [B, H, W, K] one-hot. Returns a scalar.
 */
export function diceCrossEntropyLoss(logits: tf.Tensor4D, labels: tf.Tensor): tf.Scalar {
  return tf.tidy(() => {
    const k = logits.shape[3];
    const y = oneHotLabels(labels, k);
    const logp = tf.logSoftmax(logits);
    const ce = tf.neg(tf.mean(tf.sum(tf.mul(y, logp), 3)));
    const p = tf.exp(logp);
    const inter = tf.sum(tf.mul(p, y), [0, 1, 2]);
    const denom = tf.add(tf.sum(p, [0, 1, 2]), tf.sum(y, [0, 1, 2]));
    const dice = tf.div(tf.add(tf.mul(inter, 2), SMOOTH), tf.add(denom, SMOOTH));
    return tf.add(ce, tf.sub(1, tf.mean(dice))) as tf.Scalar;
  });
}

/** Per-class true positives, false positives and false negatives of argmax predictions. */
export interface DiceCounts {
  tp: number[];
  fp: number[];
  fn: number[];
}

export function emptyCounts(numClasses: number): DiceCounts {
  return { tp: new Array(numClasses).fill(0), fp: new Array(numClasses).fill(0), fn: new Array(numClasses).fill(0) };
}

/** Adds the counts of one batch (logits [B, H, W, K], labels [B, H, W] indices) to `into`. */
export function accumulateDiceCounts(logits: tf.Tensor4D, labels: Int32Array | tf.Tensor, into: DiceCounts): DiceCounts {
  const k = logits.shape[3];
  const pred = tf.tidy(() => tf.argMax(logits, 3)).dataSync();
  const truth = labels instanceof Int32Array ? labels : (labels.dataSync() as Int32Array);
  if (truth.length !== pred.length) throw new Error(`labels have ${truth.length} pixels, predictions ${pred.length}`);
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i];
    const t = truth[i];
    if (t < 0 || t >= k) throw new Error(`label ${t} at pixel ${i} is outside 0..${k - 1}`);
    if (p === t) into.tp[p]++;
    else {
      into.fp[p]++;
      into.fn[t]++;
    }
  }
  return into;
}

/**
 * Hard Dice per class from counts; NaN for a class absent from both prediction and
 * ground truth. `meanForeground` averages the defined foreground (label > 0) classes.
 */
export function diceFromCounts(c: DiceCounts): { perClass: number[]; meanForeground: number } {
  const perClass = c.tp.map((tp, i) => {
    const denom = 2 * tp + c.fp[i] + c.fn[i];
    return denom === 0 ? Number.NaN : (2 * tp) / denom;
  });
  const fg = perClass.slice(1).filter((d) => !Number.isNaN(d));
  const meanForeground = fg.length === 0 ? Number.NaN : fg.reduce((a, b) => a + b, 0) / fg.length;
  return { perClass, meanForeground };
}

/** Hard Dice of one batch. */
export function hardDice(logits: tf.Tensor4D, labels: Int32Array | tf.Tensor): { perClass: number[]; meanForeground: number } {
  return diceFromCounts(accumulateDiceCounts(logits, labels, emptyCounts(logits.shape[3])));
}
