// Retrain and evaluate sections of the trainer configuration (and of
// IACSearch.spec.retrain / spec.evaluate). Owned by trainer/src/train and trainer/src/eval.
import { z } from 'zod';

export const RetrainConfig = z
  .object({
    epochs: z.int().min(1).max(10000).default(50).describe('Maximum epochs of training the U-Net with the discrete cells.'),
    batchSize: z.int().min(1).max(1024).default(8).describe('Slices per step.'),
    stepsPerEpoch: z.int().min(1).optional().describe('Cap on steps per epoch; all training slices once when unset.'),
    learningRate: z.number().gt(0).max(1).default(1e-3).describe('Adam learning rate.'),
    fromScratch: z
      .boolean()
      .default(false)
      .describe('Train the whole network from random weights instead of from the backbone weights with freshly initialised discrete cells.'),
    earlyStoppingPatience: z.int().min(1).max(10000).default(10).describe('Stop when validation Dice has not improved for this many epochs.'),
  })
  .describe('Training of the U-Net with the found discrete cells.');

export const EvaluateConfig = z
  .object({
    metrics: z
      .array(z.enum(['dice', 'hd95']))
      .min(1)
      .default(['dice', 'hd95'])
      .describe('Patient-level metrics on the test split, computed on volumes rebuilt from the slices.'),
    baseline: z.boolean().default(false).describe('Also evaluate the U-Net without cells, so the gain of the cells is visible.'),
  })
  .describe('Evaluation on the test split.');

export type RetrainConfig = z.infer<typeof RetrainConfig>;
export type EvaluateConfig = z.infer<typeof EvaluateConfig>;
