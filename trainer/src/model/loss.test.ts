import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { accumulateDiceCounts, diceCrossEntropyLoss, diceFromCounts, emptyCounts, hardDice } from './loss.ts';

describeEachBackend('loss and Dice', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('matches a hand computation of cross-entropy + soft Dice', () => {
    // One image, 1x2 pixels, 2 classes. Pixel 0 logits [0, 0] label 0; pixel 1 logits [0, ln 3] label 1.
    const logits = tf.tensor4d([0, 0, 0, Math.log(3)], [1, 1, 2, 2]);
    const labels = tf.tensor3d([0, 1], [1, 1, 2], 'int32');
    // p = [[.5,.5],[.25,.75]]; CE = (ln 2 + ln(4/3)) / 2
    const ce = (Math.log(2) + Math.log(4 / 3)) / 2;
    // class 0: inter .5, sum p .75, sum y 1 -> 1/1.75; class 1: inter .75, sum p 1.25, sum y 1 -> 1.5/2.25
    const dice = (1 / 1.75 + 1.5 / 2.25) / 2;
    const got = diceCrossEntropyLoss(logits, labels).dataSync()[0];
    expect(got).toBeCloseTo(ce + 1 - dice, 4);
    // The same with one-hot labels.
    const oneHot = tf.tensor4d([1, 0, 0, 1], [1, 1, 2, 2]);
    expect(diceCrossEntropyLoss(logits, oneHot).dataSync()[0]).toBeCloseTo(ce + 1 - dice, 4);
  });

  it('is differentiable on wasm and decreases along its negative gradient', () => {
    const logits = tf.variable(tf.randomNormal([2, 4, 4, 3], 0, 1, 'float32', 1));
    const labels = tf.randomUniform([2, 4, 4], 0, 3, 'int32', 2);
    const before = diceCrossEntropyLoss(logits as unknown as tf.Tensor4D, labels).dataSync()[0];
    const opt = tf.train.sgd(0.5);
    for (let i = 0; i < 5; i++) opt.minimize(() => diceCrossEntropyLoss(logits as unknown as tf.Tensor4D, labels));
    const after = diceCrossEntropyLoss(logits as unknown as tf.Tensor4D, labels).dataSync()[0];
    expect(after).toBeLessThan(before);
  });

  it('computes hard Dice per class and the foreground mean, NaN for absent classes', () => {
    // Predictions (argmax): [0, 1, 1, 2]; truth: [0, 1, 2, 2]; class 3 absent everywhere.
    const logits = tf.tensor4d([5, 0, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 0, 5, 0], [1, 2, 2, 4]);
    const truth = new Int32Array([0, 1, 2, 2]);
    const d = hardDice(logits, truth);
    expect(d.perClass[0]).toBeCloseTo(1);
    expect(d.perClass[1]).toBeCloseTo(2 / 3); // tp 1, fp 1
    expect(d.perClass[2]).toBeCloseTo(2 / 3); // tp 1, fn 1
    expect(Number.isNaN(d.perClass[3])).toBe(true);
    expect(d.meanForeground).toBeCloseTo(2 / 3);
    const acc = emptyCounts(4);
    accumulateDiceCounts(logits, truth, acc);
    accumulateDiceCounts(logits, truth, acc);
    expect(diceFromCounts(acc).perClass[1]).toBeCloseTo(2 / 3);
    expect(() => hardDice(logits, new Int32Array([0, 1, 7, 2]))).toThrow(/label 7/);
  });
});
