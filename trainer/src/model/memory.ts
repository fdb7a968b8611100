// How much memory a training step needs, found before training starts, so that a
// configuration that cannot fit is refused with advice instead of crashing mid-epoch
// (the wasm heap is capped at 4 GiB).
//
// The estimate is measured, not modelled: one training step of the same network at
// the smallest valid slice size with batch 1 and batch 2 gives the fixed part
// (weights, optimizer state) and the part per image; activations grow with the
// number of pixels (every operation is 'same'-padded), so the per-image part scales
// with (sliceSize / probeSize)^2. The probe runs on tiny tensors: about two seconds
// for the full 10-operation supernet on wasm, a fraction of one training epoch.
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import type { Network, NetworkOptions } from './api.ts';
import { diceCrossEntropyLoss } from './loss.ts';
import { createNetwork } from './network.ts';

const GiB = 2 ** 30;
/** The wasm backend's heap limit (32-bit addressing). */
export const WASM_HEAP_BYTES = 4 * GiB;
/** Part of a limit that training may use: the allocator fragments, XNNPACK caches packed weights. */
const HEADROOM = 0.85;

export interface MemoryEstimate {
  /** Peak bytes of one training step at the given batch and slice size. */
  bytes: number;
  /** Bytes that do not depend on the batch (weights, gradients of weights, optimizer slots). */
  fixedBytes: number;
  /** Bytes per image at the given slice size. */
  perImageBytes: number;
  batch: number;
  sliceSize: number;
}

async function peakOfStep(net: Network, batch: number, size: number): Promise<number> {
  const options = net.options;
  const x = tf.zeros([batch, size, size, options.inChannels]) as tf.Tensor4D;
  const y = tf.zeros([batch, size, size], 'int32');
  try {
    const loss = () => diceCrossEntropyLoss(net.apply(x, { training: true }), y);
    const groups: tf.Variable[][] =
      options.cells === 'supernet'
        ? [net.cellVariables as tf.Variable[], [...net.arch!.alphas, ...net.arch!.betas]]
        : [[...net.backboneVariables, ...net.cellVariables] as tf.Variable[]];
    let peak = 0;
    for (const vars of groups) {
      const start = tf.memory().numBytes;
      const info = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(loss, vars);
        tf.dispose([value, ...Object.values(grads)]);
      });
      // peakBytes counts every live tensor of the process; keep what the step added.
      peak = Math.max(peak, info.peakBytes - start);
    }
    // Weights and optimizer slots (momentum or Adam's two moments) stay live throughout.
    const weights = [...net.namedWeights().values()].reduce((a, v) => a + v.size * 4, 0);
    return peak + 3 * weights;
  } finally {
    tf.dispose([x, y]);
  }
}

/** Peak memory of one training step of `options` at `batch` x `sliceSize`^2 slices (see the file comment). */
export async function estimateTrainingMemory(options: NetworkOptions, batch: number, sliceSize: number): Promise<MemoryEstimate> {
  const probe = 2 ** options.backbone.depth * 2;
  const net = createNetwork(options);
  let p1: number;
  let p2: number;
  try {
    p1 = await peakOfStep(net, 1, probe);
    p2 = await peakOfStep(net, 2, probe);
  } finally {
    net.dispose();
  }
  const perProbeImage = Math.max(0, p2 - p1);
  const fixedBytes = Math.max(0, p1 - perProbeImage);
  const perImageBytes = perProbeImage * (sliceSize / probe) ** 2;
  return { bytes: fixedBytes + batch * perImageBytes, fixedBytes, perImageBytes, batch, sliceSize };
}

/** The memory a backend can give a training step, in bytes (undefined: unknown, not checked). */
export function memoryBudget(backend: string = tf.getBackend()): number | undefined {
  const override = process.env.IACNAS_MEMORY_LIMIT_MB;
  if (override) {
    const mb = Number(override);
    if (!Number.isFinite(mb) || mb <= 0) throw new Error(`IACNAS_MEMORY_LIMIT_MB=${override} is not a positive number of MiB`);
    return mb * 2 ** 20;
  }
  if (backend === 'wasm') return Math.min(WASM_HEAP_BYTES, os.totalmem()) * HEADROOM;
  if (backend === 'cpu' || backend === 'tensorflow') return os.totalmem() * HEADROOM;
  return undefined; // GPU memory is not known from here
}

function fmt(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(2)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

/**
 * Throws when a training step of `options` at `batch` x `sliceSize`^2 cannot fit the
 * backend's memory, naming search.batchSize, dataset.sliceSize and
 * search.partialChannels with values that would fit. Returns the estimate.
 */
export async function assertFitsInMemory(
  options: NetworkOptions,
  batch: number,
  sliceSize: number,
  opts: { budgetBytes?: number; batchField?: string } = {},
): Promise<MemoryEstimate> {
  const estimate = await estimateTrainingMemory(options, batch, sliceSize);
  const budget = opts.budgetBytes ?? memoryBudget();
  if (budget === undefined || estimate.bytes <= budget) return estimate;
  const batchField = opts.batchField ?? 'search.batchSize';
  const advice: string[] = [];
  const maxBatch = Math.floor((budget - estimate.fixedBytes) / estimate.perImageBytes);
  if (maxBatch >= 1) advice.push(`lower ${batchField} to ${maxBatch} or less`);
  const step = 2 ** options.backbone.depth;
  const perPixel = estimate.perImageBytes / sliceSize ** 2;
  const maxSide = Math.floor(Math.sqrt((budget - estimate.fixedBytes) / (batch * perPixel)) / step) * step;
  if (maxSide >= step) advice.push(`lower dataset.sliceSize to ${maxSide} or less`);
  if (options.cells === 'supernet' && options.space) {
    const k = options.space.partialChannels;
    const base = options.backbone.baseFilters;
    for (const bigger of [2 * k, 4 * k, 8 * k]) {
      if (bigger > 16 || base % bigger !== 0) break;
      const e = await estimateTrainingMemory({ ...options, space: { ...options.space, partialChannels: bigger } }, batch, sliceSize);
      if (e.bytes <= budget) {
        advice.push(`raise search.partialChannels from ${k} to ${bigger} (each edge then computes 1/${bigger} of the channels)`);
        break;
      }
    }
  }
  throw new Error(
    `a training step needs about ${fmt(estimate.bytes)} (batch ${batch}, ${sliceSize}x${sliceSize} slices) but the ${tf.getBackend()} backend has ${fmt(budget)}: ` +
      (advice.length > 0 ? advice.join('; or ') : 'use a smaller network (backbone.baseFilters, backbone.depth, search.nodes)') +
      '. IACNAS_MEMORY_LIMIT_MB overrides the limit.',
  );
}
