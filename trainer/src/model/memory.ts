// How much memory a training step needs, found before training starts, so that a
// configuration that cannot fit is refused with advice instead of crashing mid-epoch.
// The limit depends on the backend that runs (memoryLimit): the 4 GiB heap on wasm,
// the process's memory (cgroup limit or RAM) on native TensorFlow and cpu; GPU
// memory is not checked.
//
// The estimate is measured, not modelled: one training step of the same network at
// the smallest valid slice size with batch 1 and batch 2 gives the fixed part
// (weights, optimizer state) and the part per image; activations grow with the
// number of pixels (every operation is 'same'-padded), so the per-image part scales
// with (sliceSize / probeSize)^2. The probe runs on tiny tensors: about two seconds
// for the full 10-operation supernet on wasm, a fraction of one training epoch.
import { ENV } from '../../../contract/src/index.ts';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { clearFilterCache } from '../backend/gradients.ts';
import type { Network, NetworkOptions } from './api.ts';
import { diceCrossEntropyLoss } from './loss.ts';
import { createNetwork } from './network.ts';

const GiB = 2 ** 30;
/** The wasm backend's heap limit (32-bit addressing). */
export const WASM_HEAP_BYTES = 4 * GiB;
/** Part of a limit that training may use: the allocator fragments, XNNPACK caches packed weights. */
const HEADROOM = 0.85;
/** Part of the process's memory that native tensors may use (see memoryLimit). */
const NATIVE_HEADROOM = 0.85;
/**
 * Part of the tensor bytes tfjs counts that native TensorFlow (CPU) really holds at a
 * step's peak: tfjs counts every tensor handle, while TensorFlow shares one buffer
 * between a tensor and its reshapes and lets kernels reuse their inputs' buffers.
 * Measured (test/bench/big-step.ts, peak RSS of a step less the RSS outside tensors,
 * over the estimate): 0.61-0.71 for the full supernet (32x32 to 128x128, K=1 and 4),
 * 0.76 for a plain U-Net (depth 4, base 32, 128x128, batch 8); rounded up.
 */
const NATIVE_TENSOR_SHARE = 0.8;

/** Part of the tensor bytes tfjs counts (the estimate) that `backend` really holds. */
export function tensorShare(backend: string): number {
  return backend === 'tensorflow' ? NATIVE_TENSOR_SHARE : 1;
}

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
      // Each pass makes its own rearranged filters, as the first pass of a step does.
      clearFilterCache();
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

/** The memory a training step may use on a backend, and where the figure comes from. */
export interface MemoryLimit {
  /** Bytes for the tensors of a training step; undefined: not known, not checked. */
  bytes: number | undefined;
  /** 'wasm', 'tensorflow' (native, CPU), 'tensorflow-gpu' (native, CUDA) or 'cpu'. */
  backend: string;
  /** How the limit was found, for messages ("85% of the 4 GiB wasm heap", ...). */
  description: string;
}

/** The backend that runs, telling tfjs-node on a CUDA device ('tensorflow-gpu') from tfjs-node on the CPU. */
export function runningBackend(): string {
  const name = tf.getBackend();
  if (name !== 'tensorflow') return name;
  return (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice ? 'tensorflow-gpu' : 'tensorflow';
}

function fmt(bytes: number): string {
  return bytes >= GiB ? `${(bytes / GiB).toFixed(2)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The memory this process may use: the cgroup memory limit when one is set (v2
 * memory.max, else v1 memory.limit_in_bytes; "max" and values at or above the
 * machine's memory mean none), else the machine's memory.
 */
export function processMemory(read: (file: string) => string | undefined = readText, total: number = os.totalmem()): { bytes: number; source: string } {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    const text = read(file)?.trim();
    if (!text || text === 'max') continue;
    const bytes = Number(text);
    // v1 without a limit reads 9223372036854771712; a limit above the RAM does not bind.
    if (!Number.isFinite(bytes) || bytes <= 0 || bytes >= total) continue;
    return { bytes, source: `the cgroup memory limit of ${fmt(bytes)} (${file})` };
  }
  return { bytes: total, source: `the machine's ${fmt(total)} (no cgroup memory limit)` };
}

/**
 * The memory a backend can give the tensors of a training step (see MemoryLimit):
 * - wasm: the 4 GiB heap (or the process's memory when less), 85% of it;
 * - tensorflow and cpu: the process's memory (processMemory), NATIVE_HEADROOM of it,
 *   less what the process already holds outside tensors (the runtime, TensorFlow's
 *   library, the dataset); the step's tensors are compared at tensorShare of the
 *   estimate (native TensorFlow holds less than tfjs counts);
 * - tensorflow-gpu: not checked (tensors live in GPU memory, which tfjs cannot query).
 * IACNAS_MEMORY_LIMIT_MB replaces the limit on every backend (on tensorflow-gpu: set
 * it to the GPU's memory to have the check).
 */
export function memoryLimit(backend: string = runningBackend()): MemoryLimit {
  const override = process.env[ENV.memoryLimitMB];
  if (override) {
    const mb = Number(override);
    if (!Number.isFinite(mb) || mb <= 0) throw new Error(`IACNAS_MEMORY_LIMIT_MB=${override} is not a positive number of MiB`);
    return { bytes: mb * 2 ** 20, backend, description: `IACNAS_MEMORY_LIMIT_MB=${override}` };
  }
  if (backend === 'wasm') {
    const proc = processMemory();
    if (proc.bytes < WASM_HEAP_BYTES) return { bytes: proc.bytes * HEADROOM, backend, description: `${HEADROOM * 100}% of ${proc.source}` };
    return { bytes: WASM_HEAP_BYTES * HEADROOM, backend, description: `${HEADROOM * 100}% of the 4 GiB wasm heap` };
  }
  if (backend === 'tensorflow' || backend === 'cpu') {
    const proc = processMemory();
    // The memory the process holds besides tensors stays through training.
    const outside = Math.max(0, process.memoryUsage.rss() - tf.memory().numBytes);
    return {
      bytes: Math.max(0, proc.bytes * NATIVE_HEADROOM - outside),
      backend,
      description: `${NATIVE_HEADROOM * 100}% of ${proc.source}, less ${fmt(outside)} the process holds outside tensors`,
    };
  }
  return {
    bytes: undefined,
    backend,
    description: `not checked: ${backend === 'tensorflow-gpu' ? 'tensors live in GPU memory, which tfjs cannot query' : 'unknown backend'}; set IACNAS_MEMORY_LIMIT_MB to check`,
  };
}

/** memoryLimit(backend).bytes: the bytes a training step may use, undefined when not checked. */
export function memoryBudget(backend: string = runningBackend()): number | undefined {
  return memoryLimit(backend).bytes;
}

/**
 * Throws when a training step of `options` at `batch` x `sliceSize`^2 cannot fit the
 * running backend's memory (memoryLimit), naming the backend, the limit and
 * search.batchSize, dataset.sliceSize and search.partialChannels with values that
 * would fit. Returns the estimate. Where the limit is unknown (tensorflow-gpu without
 * IACNAS_MEMORY_LIMIT_MB) it does not refuse and says so through `log` (stderr).
 */
export async function assertFitsInMemory(
  options: NetworkOptions,
  batch: number,
  sliceSize: number,
  opts: { budgetBytes?: number; batchField?: string; log?: (line: string) => void } = {},
): Promise<MemoryEstimate> {
  // Before the probe: the native limit subtracts what the process holds outside tensors now.
  const limit: MemoryLimit =
    opts.budgetBytes === undefined ? memoryLimit() : { bytes: opts.budgetBytes, backend: runningBackend(), description: 'the given budget' };
  const estimate = await estimateTrainingMemory(options, batch, sliceSize);
  const budget = limit.bytes;
  if (budget === undefined) {
    (opts.log ?? ((line) => process.stderr.write(`${line}\n`)))(
      `iacnas: memory ${limit.description}; a training step needs about ${fmt(estimate.bytes)} of tensors (batch ${batch}, ${sliceSize}x${sliceSize} slices)`,
    );
    return estimate;
  }
  const share = tensorShare(limit.backend);
  if (estimate.bytes * share <= budget) return estimate;
  // The advice works in the estimate's units: tensor bytes as tfjs counts them.
  const counted = budget / share;
  const batchField = opts.batchField ?? 'search.batchSize';
  const advice: string[] = [];
  const maxBatch = Math.floor((counted - estimate.fixedBytes) / estimate.perImageBytes);
  if (maxBatch >= 1) advice.push(`lower ${batchField} to ${maxBatch} or less`);
  const step = 2 ** options.backbone.depth;
  const perPixel = estimate.perImageBytes / sliceSize ** 2;
  const maxSide = Math.floor(Math.sqrt((counted - estimate.fixedBytes) / (batch * perPixel)) / step) * step;
  if (maxSide >= step) advice.push(`lower dataset.sliceSize to ${maxSide} or less`);
  if (options.cells === 'supernet' && options.space) {
    const k = options.space.partialChannels;
    const base = options.backbone.baseFilters;
    for (const bigger of [2 * k, 4 * k, 8 * k]) {
      if (bigger > 16 || base % bigger !== 0) break;
      const e = await estimateTrainingMemory({ ...options, space: { ...options.space, partialChannels: bigger } }, batch, sliceSize);
      if (e.bytes <= counted) {
        advice.push(`raise search.partialChannels from ${k} to ${bigger} (each edge then computes 1/${bigger} of the channels)`);
        break;
      }
    }
  }
  const counting = share === 1 ? '' : `; ${share * 100}% of the ${fmt(estimate.bytes)} of tensors tfjs counts, as TensorFlow shares and reuses buffers`;
  throw new Error(
    `a training step needs about ${fmt(estimate.bytes * share)} (batch ${batch}, ${sliceSize}x${sliceSize} slices${counting}) ` +
      `but the ${limit.backend} backend can give it ${fmt(budget)} (${limit.description}): ` +
      (advice.length > 0 ? advice.join('; or ') : 'use a smaller network (backbone.baseFilters, backbone.depth, search.nodes)') +
      '. IACNAS_MEMORY_LIMIT_MB overrides the limit.',
  );
}
