import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import type { NetworkOptions } from './api.ts';
import { diceCrossEntropyLoss } from './loss.ts';
import { assertFitsInMemory, estimateTrainingMemory, memoryBudget } from './memory.ts';
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

describe('training memory estimate (wasm)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
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
    const budget = (e.bytes + e4.bytes) / 2;
    const fitting = Math.floor((budget - e.fixedBytes) / e.perImageBytes);
    const err = await assertFitsInMemory(options, 8, 32, { budgetBytes: budget }).catch((x: Error) => x);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain(`search.batchSize to ${fitting} or less`);
    expect(msg).toMatch(/dataset\.sliceSize to \d+ or less/);
    expect(msg).toMatch(/search\.partialChannels from 2 to 4/);
    const ok = await assertFitsInMemory(options, fitting, 32, { budgetBytes: budget });
    expect(ok.bytes).toBeLessThanOrEqual(budget);
  });

  it('uses the 4 GiB wasm heap (with headroom) unless IACNAS_MEMORY_LIMIT_MB says otherwise', () => {
    const wasm = memoryBudget('wasm')!;
    expect(wasm).toBeLessThan(4 * 2 ** 30);
    expect(wasm).toBeGreaterThan(2 * 2 ** 30);
    process.env.IACNAS_MEMORY_LIMIT_MB = '512';
    try {
      expect(memoryBudget('wasm')).toBe(512 * 2 ** 20);
      process.env.IACNAS_MEMORY_LIMIT_MB = 'lots';
      expect(() => memoryBudget('wasm')).toThrow(/IACNAS_MEMORY_LIMIT_MB/);
    } finally {
      delete process.env.IACNAS_MEMORY_LIMIT_MB;
    }
  });
});
