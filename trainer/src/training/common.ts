// Pieces shared by the search, plain U-Net training and retraining loops: batch
// order, batch loading one step ahead, tensors from slices, and the validation pass.
import * as tf from '@tensorflow/tfjs-core';
import { shuffled } from '../util/random.ts';
import type { SliceBatch, SliceDataset, SliceSource } from '../data/types.ts';
import type { Network } from '../model/api.ts';
import type { NamedVariable } from './optimizers.ts';

/** Loss of a batch: logits [n, h, w, classes] against integer labels [n, h, w]; a scalar. */
export type LossFn = (logits: tf.Tensor4D, labels: tf.Tensor3D, numClasses: number) => tf.Scalar;

/** The slice indices of one epoch, shuffled and cut into batches (a short last batch is kept). */
export function epochBatches(indices: readonly number[], batchSize: number, random: () => number, maxSteps?: number): number[][] {
  const order = shuffled(indices, random);
  const batches: number[][] = [];
  for (let i = 0; i < order.length; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return maxSteps === undefined ? batches : batches.slice(0, maxSteps);
}

/** Steps an epoch takes over `count` slices. */
export function stepsPerEpoch(count: number, batchSize: number, cap?: number): number {
  const steps = Math.ceil(count / batchSize);
  return cap === undefined ? steps : Math.min(steps, cap);
}

/** Loads batch i + 1 while batch i is trained on. */
export class BatchLoader {
  private readonly source: SliceSource;
  private readonly batches: readonly number[][];
  private readonly opts: { augment?: boolean; random?: () => number };
  private next: Promise<SliceBatch> | undefined;
  private i = 0;

  constructor(source: SliceSource, batches: readonly number[][], opts: { augment?: boolean; random?: () => number } = {}) {
    this.source = source;
    this.batches = batches;
    this.opts = opts;
    this.next = batches.length ? source.batch(batches[0], opts) : undefined;
  }

  get length(): number {
    return this.batches.length;
  }

  async take(): Promise<SliceBatch> {
    if (!this.next) throw new Error('BatchLoader: no batches left');
    const b = await this.next;
    this.i++;
    this.next = this.i < this.batches.length ? this.source.batch(this.batches[this.i], this.opts) : undefined;
    return b;
  }
}

/** Images [n, s, s, c] and labels [n, s, s] (int32) of a batch. */
export function batchTensors(b: SliceBatch, size: number, channels: number): { x: tf.Tensor4D; y: tf.Tensor3D } {
  return {
    x: tf.tensor4d(b.images, [b.n, size, size, channels], 'float32'),
    y: tf.tensor3d(b.labels, [b.n, size, size], 'int32'),
  };
}

/** Per-class [intersection, predicted, actual] pixel counts of a batch, shape [3, classes]. */
export function diceCounts(logits: tf.Tensor4D, labels: tf.Tensor3D, numClasses: number): tf.Tensor2D {
  return tf.tidy(() => {
    const pred = tf.oneHot(tf.reshape(tf.argMax(logits, -1), [-1]) as tf.Tensor1D, numClasses);
    const truth = tf.oneHot(tf.reshape(labels, [-1]) as tf.Tensor1D, numClasses);
    return tf.stack([tf.sum(tf.mul(pred, truth), 0), tf.sum(pred, 0), tf.sum(truth, 0)]) as tf.Tensor2D;
  });
}

/** Mean foreground Dice from summed counts (a class absent from both prediction and truth counts as 1). */
export function meanForegroundDice(counts: ArrayLike<number>, numClasses: number): { mean: number; perClass: number[] } {
  const perClass: number[] = [];
  for (let c = 1; c < numClasses; c++) {
    const inter = counts[c];
    const denom = counts[numClasses + c] + counts[2 * numClasses + c];
    perClass.push(denom === 0 ? 1 : (2 * inter) / denom);
  }
  const mean = perClass.length ? perClass.reduce((a, b) => a + b, 0) / perClass.length : 1;
  return { mean, perClass };
}

/** Validation pass: loss and Dice summed over the whole split, read back once; `foreground` is the labelled foreground's share of its pixels. */
export async function validate(
  net: Network,
  data: SliceDataset,
  source: SliceSource,
  loss: LossFn,
  batchSize: number,
): Promise<{ loss: number; dice: number; perClass: number[]; foreground: number }> {
  const all = Array.from({ length: source.length }, (_, i) => i);
  const batches: number[][] = [];
  for (let i = 0; i < all.length; i += batchSize) batches.push(all.slice(i, i + batchSize));
  if (batches.length === 0) return { loss: 0, dice: 0, perClass: [], foreground: 0 };
  const loader = new BatchLoader(source, batches);
  let counts = tf.zeros([3, data.numClasses]) as tf.Tensor2D;
  let lossSum = tf.scalar(0);
  for (let i = 0; i < batches.length; i++) {
    const b = await loader.take();
    const [c, l] = tf.tidy(() => {
      const { x, y } = batchTensors(b, data.sliceSize, data.channels);
      const logits = net.apply(x, { training: false });
      return [tf.add(counts, diceCounts(logits, y, data.numClasses)), tf.add(lossSum, tf.mul(loss(logits, y, data.numClasses), b.n))];
    });
    counts.dispose();
    lossSum.dispose();
    counts = c as tf.Tensor2D;
    lossSum = l as tf.Scalar;
  }
  const [countValues, lossValue] = await Promise.all([counts.data(), lossSum.data()]);
  counts.dispose();
  lossSum.dispose();
  const { mean, perClass } = meanForegroundDice(countValues, data.numClasses);
  // Row 2 of the counts: labelled pixels per class.
  const truth = Array.from({ length: data.numClasses }, (_, c) => countValues[2 * data.numClasses + c]);
  const pixels = truth.reduce((a, b) => a + b, 0);
  return { loss: lossValue[0] / source.length, dice: mean, perClass, foreground: pixels ? (pixels - truth[0]) / pixels : 0 };
}

/**
 * One optimisation step's gradients: loss of `x, y` with respect to `vars`. Grads of
 * variables the loss does not reach (pruned operations) come back undefined.
 */
export function gradients(
  net: Network,
  loss: LossFn,
  x: tf.Tensor4D,
  y: tf.Tensor3D,
  numClasses: number,
  vars: readonly NamedVariable[],
): { value: tf.Scalar; grads: (tf.Tensor | undefined)[] } {
  const { value, grads } = tf.variableGrads(
    () => loss(net.apply(x, { training: true }), y, numClasses),
    vars.map((v) => v.variable),
  );
  return { value, grads: vars.map((v) => grads[v.variable.name]) };
}

/** Names every weight of a network by its stable name (namedWeights). */
export function namedVariables(net: Network, which: 'all' | 'cells' | 'backbone'): NamedVariable[] {
  const byVar = new Map<tf.Variable, string>();
  for (const [name, v] of net.namedWeights()) byVar.set(v, name);
  const list = which === 'all' ? [...net.namedWeights().values()] : which === 'cells' ? net.cellVariables : net.backboneVariables;
  return list.map((variable) => {
    const name = byVar.get(variable);
    if (!name) throw new Error(`model: variable ${variable.name} is missing from namedWeights()`);
    return { name, variable };
  });
}
