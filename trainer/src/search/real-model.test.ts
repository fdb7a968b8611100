// The search loop with the real model and the built-in phantom: same seed, same
// genotype; tensor count flat from epoch to epoch.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { parseTrainerConfig } from '../config/index.ts';
import { loadDataset } from '../data/index.ts';
import { ProgressReporter } from '../report/progress.ts';
import { ensureBackbone } from '../training/backbone.ts';
import { loadModelKit } from '../training/model-kit.ts';
import { runSearch } from './search.ts';

const quiet = { write: () => true };

async function search(opts: { seed: number; maxEpochs: number; onEpoch?: (e: number) => void }) {
  const config = parseTrainerConfig({
    seed: opts.seed,
    dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
    backbone: { depth: 2, baseFilters: 4, pretrainEpochs: 1 },
    search: {
      maxEpochs: opts.maxEpochs,
      warmupEpochs: 1,
      batchSize: 4,
      stepsPerEpoch: 2,
      nodes: 2,
      operations: ['none', 'skip_connect', 'conv_3x3', 'sep_conv_3x3', 'dil_conv_3x3', 'avg_pool_3x3', 'max_pool_3x3'],
      architecture: { learningRate: 0.05 },
      stability: { enabled: false },
    },
  });
  const workdir = mkdtempSync(join(tmpdir(), 'real-search-'));
  const data = await loadDataset(config.dataset);
  const kit = await loadModelKit();
  const reporter = new ProgressReporter({ phase: 'search', stdout: quiet, stderr: quiet, env: {} });
  const backbone = await ensureBackbone({ config, workdir, data, kit, reporter });
  return runSearch({
    config,
    data,
    kit,
    reporter,
    backboneDir: backbone.dir,
    dir: join(workdir, 'search', 'checkpoint'),
    historyFile: join(workdir, 'search', 'history.jsonl'),
    fingerprint: 'test',
    onEpoch: opts.onEpoch,
  });
}

describeEachBackend('search with the real model', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('gives the same genotype for the same seed on the same backend', async () => {
    const a = await search({ seed: 7, maxEpochs: 3 });
    const b = await search({ seed: 7, maxEpochs: 3 });
    expect(b.genotype).toEqual(a.genotype);
    expect(b.arch.alphas).toEqual(a.arch.alphas);
  });

  it('holds the same number of tensors after epoch 2 and after epoch 5', async () => {
    const counts = new Map<number, number>();
    await search({ seed: 1, maxEpochs: 5, onEpoch: (e) => counts.set(e, tf.memory().numTensors) });
    expect(counts.get(5)).toBe(counts.get(2));
  });
});
