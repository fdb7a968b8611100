// Backbone and search sections of the trainer configuration (and of
// IACSearch.spec.backbone / spec.search). Owned by trainer/src/model and trainer/src/search.
import { z } from 'zod';

/** The candidate operations of an IAC cell edge, all stride 1 and 'same' padding. */
export const OPERATIONS = [
  'none',
  'skip_connect',
  'conv_3x3',
  'conv_5x5',
  'dil_conv_3x3',
  'dil_conv_5x5',
  'sep_conv_3x3',
  'sep_conv_5x5',
  'avg_pool_3x3',
  'max_pool_3x3',
] as const;
export const Operation = z.enum(OPERATIONS).describe('A candidate operation of a cell edge.');
export type Operation = z.infer<typeof Operation>;

export const BackboneConfig = z
  .object({
    depth: z.int().min(1).max(5).default(3).describe('Number of down-sampling levels of the 2-D U-Net; one IAC cell is implanted per skip connection.'),
    baseFilters: z.int().min(4).max(128).default(16).describe('Filters of the first U-Net level; doubled at every level down.'),
    pretrained: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Directory with trained U-Net weights. When unset, the search first trains the plain U-Net for pretrainEpochs (timed apart from the cell search).',
      ),
    pretrainEpochs: z.int().min(1).max(10000).default(20).describe('Epochs of plain U-Net training when no pretrained weights are given.'),
    learningRate: z.number().gt(0).max(1).default(1e-3).describe('Adam learning rate of the plain U-Net training.'),
  })
  .describe('The U-Net that the cells are implanted into.');

export const WeightOptimizerConfig = z
  .object({
    learningRate: z.number().gt(0).max(10).default(0.025).describe('SGD learning rate of the cell weights at the start (cosine schedule).'),
    learningRateMin: z.number().min(0).max(10).default(0.001).describe('SGD learning rate at the end of the cosine schedule.'),
    momentum: z.number().min(0).lt(1).default(0.9).describe('SGD momentum.'),
    weightDecay: z.number().min(0).max(1).default(3e-4).describe('L2 weight decay of the cell weights.'),
    gradClip: z.number().gt(0).default(5).describe('Global gradient-norm clip of the weight step.'),
  })
  .describe('Optimizer of the operation weights (DARTS defaults).');

export const ArchOptimizerConfig = z
  .object({
    learningRate: z.number().gt(0).max(1).default(6e-4).describe('Adam learning rate of the architecture parameters (alphas and betas).'),
    beta1: z.number().min(0).lt(1).default(0.5).describe('Adam beta1.'),
    beta2: z.number().min(0).lt(1).default(0.999).describe('Adam beta2.'),
    weightDecay: z.number().min(0).max(1).default(1e-3).describe('L2 weight decay of the architecture parameters.'),
  })
  .describe('Optimizer of the architecture parameters (DARTS defaults).');

export const StabilityConfig = z
  .object({
    enabled: z.boolean().default(true).describe('IAC-LTH stability pruning. false runs the original full-length IAC search for maxEpochs.'),
    criterion: z
      .enum(['jsd'])
      .default('jsd')
      .describe("Stability criterion: Jensen-Shannon divergence (base 2) of an edge's operation distribution between consecutive epochs."),
    threshold: z
      .number()
      .gt(0)
      .max(1)
      .optional()
      .describe(
        "The paper's absolute test (it used 1e-3): an edge is stable when every divergence of its window is below this value. Unset (the default): the automatic test, which needs no tuning (docs/search.md).",
      ),
    autoScale: z
      .number()
      .gt(0)
      .max(100)
      .default(1)
      .describe(
        'Automatic test: an edge is stable when the net divergence of its window is at most autoScale times the sum of its per-epoch divergences (1: no more movement than steps without a common direction). Lower is stricter.',
      ),
    window: z.int().min(1).max(100).default(5).describe('Number of recent epochs the divergence is tracked over.'),
    pruneTo: z
      .array(z.int().min(1))
      .min(1)
      .default([3, 1])
      .describe('Operations kept on a stable edge at each pruning step: first the top 3, after it is stable again the top 1.'),
    patience: z.int().min(1).max(1000).default(10).describe('The search also ends when the derived genotype has not changed for this many epochs.'),
  })
  .describe('When edges count as stable, how far they are pruned and when the search ends early.');

export const SearchConfig = z
  .object({
    maxEpochs: z.int().min(1).max(10000).default(200).describe('Epoch budget of the cell search (the full-length search runs all of it).'),
    operations: z
      .array(Operation)
      .min(2)
      .default([...OPERATIONS])
      .describe('Candidate operations on every cell edge.'),
    nodes: z.int().min(1).max(8).default(4).describe('Intermediate nodes per cell (4 nodes give 14 edges).'),
    partialChannels: z.int().min(1).max(16).default(4).describe("PC-DARTS K: each edge's mixed operation sees 1/K of the channels."),
    batchSize: z.int().min(1).max(1024).default(8).describe('Slices per step.'),
    stepsPerEpoch: z.int().min(1).optional().describe('Cap on steps per epoch; all training slices once when unset.'),
    warmupEpochs: z
      .int()
      .min(0)
      .max(10000)
      .default(15)
      .describe('Epochs of weight training before architecture updates start; stability is checked from warmupEpochs + window on.'),
    freezeBackbone: z.boolean().default(true).describe('Keep the trained U-Net frozen while cells are searched (the IAC setting).'),
    weights: WeightOptimizerConfig.prefault({}),
    architecture: ArchOptimizerConfig.prefault({}),
    stability: StabilityConfig.prefault({}),
  })
  .describe('The differentiable cell search.');

export type BackboneConfig = z.infer<typeof BackboneConfig>;
export type SearchConfig = z.infer<typeof SearchConfig>;
export type StabilityConfig = z.infer<typeof StabilityConfig>;
