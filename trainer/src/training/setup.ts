// What every training phase does first: start the tfjs backend, load the model
// and the dataset, and refuse a configuration that cannot fit in memory.
import { ENV } from '../../../contract/src/index.ts';
import type { TrainerConfig } from '../config/index.ts';
import type { SliceDataset } from '../data/types.ts';
import type { NetworkOptions } from '../model/api.ts';
import { type ModelKit, loadModelKit } from './model-kit.ts';
import { badInput } from '../util/bad-input.ts';

export async function prepare(
  config: TrainerConfig,
  cells: NetworkOptions['cells'],
  batchSize = config.search.batchSize,
  batchField = 'search.batchSize',
): Promise<{ kit: ModelKit; data: SliceDataset }> {
  await startBackend();
  const kit = await loadModelKit();
  const { loadDataset } = await import('../data/index.ts');
  const data = await loadDataset(config.dataset);
  await checkFits(kit, config, data, cells, batchSize, batchField);
  return { kit, data };
}

/** Starts the tfjs backend; a bad IACNAS_BACKEND is bad input (exit status 2), not a failure. */
export async function startBackend(): Promise<void> {
  const { initBackend, parseBackendOverride } = await import('../backend/index.ts');
  try {
    parseBackendOverride(process.env[ENV.backend]);
  } catch (e) {
    throw badInput('usage', (e as Error).message);
  }
  await initBackend();
}

/** Refuses, with the model's own message, a configuration that cannot fit in memory. */
export async function checkFits(
  kit: ModelKit,
  c: TrainerConfig,
  data: SliceDataset,
  cells: NetworkOptions['cells'],
  batchSize: number,
  batchField: string,
): Promise<void> {
  const message = await kit.checkMemory({
    options: {
      backbone: c.backbone,
      inChannels: data.channels,
      numClasses: data.numClasses,
      cells,
      space: { operations: c.search.operations, nodes: c.search.nodes, partialChannels: c.search.partialChannels },
      seed: c.seed,
    },
    batchSize,
    sliceSize: data.sliceSize,
    batchField,
  });
  if (message) throw badInput('config', message, { path: batchField });
}
