// The real model behind ModelKit: trainer/src/model's network, loss, genotype rule
// and weight files.
import { deriveGenotype } from '../model/genotype.ts';
import { diceCrossEntropyLoss } from '../model/loss.ts';
import { assertFitsInMemory } from '../model/memory.ts';
import { createNetwork } from '../model/network.ts';
import { loadWeights, saveWeights } from '../model/serialize.ts';
import type { ModelKit } from './model-kit.ts';

export const modelKit: ModelKit = {
  createNetwork,
  loss: (logits, labels) => diceCrossEntropyLoss(logits, labels),
  deriveGenotype,
  saveWeights: async (net, dir) => saveWeights(net, dir),
  loadWeights: async (net, dir) => {
    loadWeights(net, dir);
  },
  loadBackbone: async (net, dir) => {
    // Non-strict: the cells are not in a backbone's files; every U-Net weight must be.
    const report = loadWeights(net, dir, { strict: false });
    const backbone = new Set(net.backboneVariables);
    const missing = [...net.namedWeights()].filter(([name, v]) => backbone.has(v) && report.missing.includes(name)).map(([name]) => name);
    if (missing.length > 0) {
      throw new Error(
        `${dir} lacks U-Net weights ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}; was it saved from a U-Net with the same backbone.depth and backbone.baseFilters?`,
      );
    }
  },
  checkMemory: async ({ options, batchSize, sliceSize, batchField }) => {
    try {
      await assertFitsInMemory(options, batchSize, sliceSize, { batchField });
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  },
};
