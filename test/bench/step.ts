// What the step benchmarks share (trainer-throughput, gpu-step, big-step): the search
// supernet of the benchmarks, random batches, the tfjs-optimizer search step and the
// process's peak memory.
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import type { NetworkOptions } from '../../trainer/src/model/api.ts';
import { diceCrossEntropyLoss } from '../../trainer/src/model/loss.ts';
import type { UNet } from '../../trainer/src/model/network.ts';

export const CLASSES = 4;

/** The full 10-operation network of the benchmarks: 4 nodes per cell, one input channel. */
export function benchNetworkOptions(o: { depth?: number; base?: number; k?: number; cells?: NetworkOptions['cells'] } = {}): NetworkOptions {
  return {
    backbone: { depth: o.depth ?? 3, baseFilters: o.base ?? 16, pretrainEpochs: 1, learningRate: 1e-3 },
    inChannels: 1,
    numClasses: CLASSES,
    cells: o.cells ?? 'supernet',
    space: { operations: [...OPERATIONS], nodes: 4, partialChannels: o.k ?? 4 },
    seed: 0,
  };
}

/** Two seeded batches: one for the weights step, one for the architecture step. */
export function randomBatches(batch: number, size: number): { x: tf.Tensor4D; y: tf.Tensor3D }[] {
  return [0, 1].map((s) => ({
    x: tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', s + 1) as tf.Tensor4D,
    y: tf.randomUniform([batch, size, size], 0, CLASSES, 'int32', s + 7) as tf.Tensor3D,
  }));
}

/** tfjs optimizers of a search step: momentum SGD for the weights, Adam for alphas and betas. */
export function searchOptimizers(): { w: tf.Optimizer; a: tf.Optimizer } {
  return { w: tf.train.momentum(0.025, 0.9), a: tf.train.adam(6e-4, 0.5, 0.999) };
}

/** One search step: the cell weights (backbone frozen), then alphas and betas; returns the two losses. */
export function searchStep(net: UNet, opt: { w: tf.Optimizer; a: tf.Optimizer }, batches: { x: tf.Tensor4D; y: tf.Tensor3D }[]): [number, number] {
  const loss = (i: number) => () => diceCrossEntropyLoss(net.apply(batches[i].x, { training: true }), batches[i].y);
  const l1 = opt.w.minimize(loss(0), true, net.cellVariables as tf.Variable[]);
  const l2 = opt.a.minimize(loss(1), true, [...net.arch!.alphas, ...net.arch!.betas]);
  const losses: [number, number] = [l1!.dataSync()[0], l2!.dataSync()[0]];
  tf.dispose([l1!, l2!]);
  return losses;
}

/** Peak resident memory of this process in bytes (Linux VmHWM, else maxRSS). */
export function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS * 1024;
}
