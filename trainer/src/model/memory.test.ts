import os from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import type { NetworkOptions } from './api.ts';
import { diceCrossEntropyLoss } from './loss.ts';
import {
  assertFitsInMemory,
  estimateTrainingMemory,
  memoryBudget,
  memoryLimit,
  processMemory,
  runningBackend,
  tensorShare,
  WASM_HEAP_BYTES,
} from './memory.ts';
import { createNetwork } from './network.ts';

const options: NetworkOptions = {
  backbone: { depth: 2, baseFilters: 8, pretrainEpochs: 1, learningRate: 1e-3 },
  inChannels: 1,
  numClasses: 3,
  cells: 'supernet',
  space: { operations: ['none', 'skip_connect', 'conv_3x3', 'sep_conv_3x3', 'max_pool_3x3'], nodes: 2, partialChannels: 2 },
  seed: 0,
};

async function measuredPeak(batch: number, size: number): Promise<number> {
  const net = createNetwork(options);
  const x = tf.zeros([batch, size, size, 1]) as tf.Tensor4D;
  const y = tf.zeros([batch, size, size], 'int32');
  let peak = 0;
  for (const vars of [net.cellVariables as tf.Variable[], [...net.arch!.alphas, ...net.arch!.betas]]) {
    const start = tf.memory().numBytes;
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => diceCrossEntropyLoss(net.apply(x), y), vars);
      tf.dispose([value, ...Object.values(grads)]);
    });
    peak = Math.max(peak, info.peakBytes - start);
  }
  const weights = [...net.namedWeights().values()].reduce((a, v) => a + v.size * 4, 0);
  tf.dispose([x, y]);
  net.dispose();
  return peak + 3 * weights;
}

const GiB = 2 ** 30;

function withLimitMb<T>(value: string, f: () => T): T {
  process.env.IACNAS_MEMORY_LIMIT_MB = value;
  try {
    return f();
  } finally {
    delete process.env.IACNAS_MEMORY_LIMIT_MB;
  }
}

describeEachBackend('training memory estimate', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });
  it('predicts the measured peak of a larger batch and slice size from a small probe', async () => {
    const estimate = await estimateTrainingMemory(options, 6, 32);
    const measured = await measuredPeak(6, 32);
    expect(Math.abs(estimate.bytes - measured) / measured).toBeLessThan(0.05);
    expect(estimate.perImageBytes).toBeGreaterThan(0);
    expect(estimate.bytes).toBeCloseTo(estimate.fixedBytes + 6 * estimate.perImageBytes, 0);
    // Pixels grow 4x from 32x32 to 64x64, and so does the per-image part.
    const bigger = await estimateTrainingMemory(options, 6, 64);
    expect(bigger.perImageBytes / estimate.perImageBytes).toBeCloseTo(4, 2);
  });

  it('refuses a configuration that cannot fit, naming what to lower and by how much', async () => {
    const e = await estimateTrainingMemory(options, 8, 32);
    const e4 = await estimateTrainingMemory({ ...options, space: { ...options.space!, partialChannels: 4 } }, 8, 32);
    expect(e4.bytes).toBeLessThan(e.bytes);
    // The budget is memory the backend holds; native TensorFlow holds a share of what tfjs counts.
    const share = tensorShare(backend);
    const budget = (share * (e.bytes + e4.bytes)) / 2;
    const fitting = Math.floor((budget / share - e.fixedBytes) / e.perImageBytes);
    const err = await assertFitsInMemory(options, 8, 32, { budgetBytes: budget }).catch((x: Error) => x);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain(`search.batchSize to ${fitting} or less`);
    expect(msg).toMatch(/dataset\.sliceSize to \d+ or less/);
    expect(msg).toMatch(/search\.partialChannels from 2 to 4/);
    const ok = await assertFitsInMemory(options, fitting, 32, { budgetBytes: budget });
    expect(ok.bytes * share).toBeLessThanOrEqual(budget);
  });

  it('names the backend that runs and the limit it used when it refuses', async () => {
    expect(runningBackend()).toBe(backend);
    process.env.IACNAS_MEMORY_LIMIT_MB = '1';
    try {
      const err = await assertFitsInMemory(options, 8, 32).catch((x: Error) => x);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(`but the ${backend} backend can give it 1 MiB (IACNAS_MEMORY_LIMIT_MB=1)`);
      // On native TensorFlow the need is the share of the counted bytes that TensorFlow holds.
      if (backend === 'tensorflow') expect((err as Error).message).toMatch(/slices; 80% of the .* of tensors tfjs counts/);
    } finally {
      delete process.env.IACNAS_MEMORY_LIMIT_MB;
    }
    // With the backend's own limit, this small configuration fits.
    const ok = await assertFitsInMemory(options, 8, 32);
    expect(ok.bytes).toBeLessThan(memoryBudget()!);
    // 90% of the counted bytes: too little for wasm, enough for TensorFlow, which
    // shares reshaped buffers and reuses inputs' buffers (tensorShare).
    const verdict = await assertFitsInMemory(options, 8, 32, { budgetBytes: 0.9 * ok.bytes }).then(
      () => 'fits',
      (x: Error) => x.message,
    );
    if (backend === 'tensorflow') expect(verdict).toBe('fits');
    else expect(verdict).toMatch(new RegExp(`^a training step needs about .* but the ${backend} backend can give it .*\\(the given budget\\)`));
  });
});

describe('memory limits by backend', () => {
  it('wasm: the 4 GiB heap with headroom, or the process memory when less', () => {
    const wasm = memoryLimit('wasm');
    expect(wasm.bytes!).toBeLessThan(WASM_HEAP_BYTES);
    expect(wasm.bytes!).toBeGreaterThan(Math.min(2 * GiB, 0.5 * processMemory().bytes));
    expect(wasm.description).toMatch(/wasm heap|cgroup|machine/);
  });

  it('tensorflow and cpu: the process memory with headroom, less what is held outside tensors', () => {
    for (const b of ['tensorflow', 'cpu']) {
      const limit = memoryLimit(b);
      expect(limit.bytes!).toBeGreaterThan(0);
      expect(limit.bytes!).toBeLessThan(processMemory().bytes);
      expect(limit.description).toContain(processMemory().source);
      expect(limit.description).toMatch(/outside tensors/);
    }
  });

  it('tensorflow-gpu: not checked (GPU memory is not visible to tfjs) unless IACNAS_MEMORY_LIMIT_MB is set', () => {
    const gpu = memoryLimit('tensorflow-gpu');
    expect(gpu.bytes).toBeUndefined();
    expect(gpu.description).toMatch(/GPU memory.*IACNAS_MEMORY_LIMIT_MB/);
    expect(withLimitMb('16000', () => memoryBudget('tensorflow-gpu'))).toBe(16000 * 2 ** 20);
  });

  it('IACNAS_MEMORY_LIMIT_MB overrides every backend and must be a positive number', () => {
    for (const b of ['wasm', 'tensorflow', 'cpu']) expect(withLimitMb('512', () => memoryBudget(b))).toBe(512 * 2 ** 20);
    expect(() => withLimitMb('lots', () => memoryBudget('wasm'))).toThrow(/IACNAS_MEMORY_LIMIT_MB=lots/);
    expect(() => withLimitMb('-1', () => memoryBudget('tensorflow'))).toThrow(/IACNAS_MEMORY_LIMIT_MB/);
  });

  it('reads the cgroup limit (v2, then v1), ignoring "max" and values at or above the machine memory', () => {
    const total = 32 * GiB;
    const files = (m: Record<string, string>) => (f: string) => m[f];
    const v2 = '/sys/fs/cgroup/memory.max';
    const v1 = '/sys/fs/cgroup/memory/memory.limit_in_bytes';
    expect(processMemory(files({ [v2]: `${8 * GiB}\n` }), total)).toMatchObject({ bytes: 8 * GiB, source: expect.stringContaining(v2) });
    expect(processMemory(files({ [v2]: 'max\n' }), total)).toMatchObject({ bytes: total, source: expect.stringContaining('no cgroup') });
    expect(processMemory(files({ [v1]: '4294967296\n' }), total)).toMatchObject({ bytes: 4 * GiB, source: expect.stringContaining(v1) });
    expect(processMemory(files({ [v1]: '9223372036854771712\n' }), total).bytes).toBe(total);
    expect(processMemory(files({ [v2]: `${64 * GiB}` }), total).bytes).toBe(total);
    expect(processMemory(files({}), total).bytes).toBe(total);
    // A cgroup below 4 GiB binds wasm too.
    expect(processMemory().bytes).toBeLessThanOrEqual(os.totalmem());
  });
});
