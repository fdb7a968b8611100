// What the step benchmarks share (trainer-throughput, gpu-step, big-step, the PyTorch
// twin's test): the search supernet of the benchmarks, random batches, the trainer's
// search step (its own optimizers, architecture step first), the pruned supernet and the
// process's peak memory.
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS, SearchConfig } from '../../trainer/src/config/index.ts';
import type { NetworkOptions } from '../../trainer/src/model/api.ts';
import { diceCrossEntropyLoss } from '../../trainer/src/model/loss.ts';
import type { UNet } from '../../trainer/src/model/network.ts';
import { gradients, namedVariables, type LossFn } from '../../trainer/src/training/common.ts';
import { Adam, SgdMomentum, type NamedVariable } from '../../trainer/src/training/optimizers.ts';

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

/**
 * The optimizers of the trainer's search (trainer/src/search/search.ts), with the
 * search defaults of trainer/src/config/search.ts: momentum SGD with weight decay and
 * global-norm gradient clipping on the cell weights (the backbone is frozen), Adam with
 * L2 weight decay on alphas and betas.
 */
export interface SearchOptimizers {
  w: SgdMomentum;
  a: Adam;
  weightVars: NamedVariable[];
  archVars: NamedVariable[];
  /** Learning rates of the first epoch (the weights' cosine schedule starts at its maximum). */
  lr: { w: number; a: number };
}

const SEARCH_DEFAULTS = SearchConfig.parse({});

/** `gradClip` replaces the default clip (the twin's test sets one that the gradients exceed). */
export function searchOptimizers(net: UNet, o: { gradClip?: number } = {}): SearchOptimizers {
  const sc = SEARCH_DEFAULTS;
  const weightVars = namedVariables(net, 'cells');
  const archVars: NamedVariable[] = [
    ...net.arch!.alphas.map((variable, c) => ({ name: `arch/alphas/${c}`, variable })),
    ...net.arch!.betas.map((variable, c) => ({ name: `arch/betas/${c}`, variable })),
  ];
  return {
    w: new SgdMomentum(weightVars, { momentum: sc.weights.momentum, weightDecay: sc.weights.weightDecay, gradClip: o.gradClip ?? sc.weights.gradClip }),
    a: new Adam(archVars, { beta1: sc.architecture.beta1, beta2: sc.architecture.beta2, weightDecay: sc.architecture.weightDecay }),
    weightVars,
    archVars,
    lr: { w: sc.weights.learningRate, a: sc.architecture.learningRate },
  };
}

/**
 * One search step as the trainer's inner loop runs it: the first-order architecture
 * step (Adam on alphas and betas) on batches[1], then the weights step (momentum SGD on
 * the cell weights, backbone frozen) on batches[0]. Returns the two losses in that
 * order: [architecture batch, weights batch].
 */
export function searchStep(net: UNet, opt: SearchOptimizers, batches: { x: tf.Tensor4D; y: tf.Tensor3D }[]): [number, number] {
  const loss: LossFn = (logits, labels) => diceCrossEntropyLoss(logits, labels);
  const [la, lw] = tf.tidy(() => {
    const arch = gradients(net, loss, batches[1].x, batches[1].y, CLASSES, opt.archVars);
    opt.a.apply(arch.grads, opt.lr.a);
    const weights = gradients(net, loss, batches[0].x, batches[0].y, CLASSES, opt.weightVars);
    opt.w.apply(weights.grads, opt.lr.w);
    return [arch.value, weights.value];
  });
  const losses: [number, number] = [la.dataSync()[0], lw.dataSync()[0]];
  tf.dispose([la, lw]);
  return losses;
}

/**
 * The pruned supernet of the benchmarks: every edge keeps one operation, cycling
 * through the operations other than 'none' (test/bench/torch/twin.py prune_to_one
 * builds the same).
 */
export function pruneToOne(net: UNet): void {
  const arch = net.arch!;
  const ops = arch.space.operations;
  const real = ops.map((_, i) => i).filter((i) => ops[i] !== 'none');
  for (let c = 0; c < arch.cells; c++) for (let e = 0; e < arch.edges; e++) arch.prune(c, e, [real[(c * arch.edges + e) % real.length]]);
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
