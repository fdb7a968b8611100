// The model functions the training loops use, gathered in one interface so the
// loops are tested with the real model and, where a single layer is tested, with a
// small fake. loadModelKit() binds the real implementation (trainer/src/model).
import type { ArchSnapshot, CellSearchSpace, Genotype, Network, NetworkOptions } from '../model/api.ts';
import type { LossFn } from './common.ts';

export interface MemoryRequest {
  options: NetworkOptions;
  batchSize: number;
  sliceSize: number;
  /** The configuration field of the batch size, for the advice ('search.batchSize', 'retrain.batchSize'). */
  batchField: string;
}

export interface ModelKit {
  createNetwork(options: NetworkOptions): Network;
  /** Dice + cross-entropy of logits against integer labels. */
  loss: LossFn;
  /** The discrete cells the architecture parameters stand for (only active operations, never `none`). */
  deriveGenotype(arch: ArchSnapshot, space: CellSearchSpace): Genotype;
  /** Saves all weights of a network to a directory (what evaluate and backbone.pretrained read). */
  saveWeights(net: Network, dir: string): Promise<void>;
  /** Loads all weights of a network from a directory written by saveWeights. */
  loadWeights(net: Network, dir: string): Promise<void>;
  /** Loads only the U-Net (backbone) weights, leaving the cells as initialised. */
  loadBackbone(net: Network, dir: string): Promise<void>;
  /** A message (with advice) when a training step of the configuration cannot fit in memory, else null. */
  checkMemory(request: MemoryRequest): Promise<string | null>;
}

let bound: Promise<ModelKit> | undefined;

/** The real model (trainer/src/model), imported on first use. */
export function loadModelKit(): Promise<ModelKit> {
  bound ??= import('./model-binding.ts').then((m) => m.modelKit);
  return bound;
}
