// Retrain and evaluate sections of the trainer configuration (and of
// IACSearch.spec.retrain / spec.evaluate). Owned by trainer/src/train and trainer/src/eval.
import { z } from 'zod';
import { RAW_FORMATS } from './dataset.ts';

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

export const ExternalDatasetConfig = z
  .object({
    name: z
      .string()
      .min(1)
      .max(63)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS label: lower-case letters, digits and hyphens, starting and ending with a letter or digit')
      .describe('Name of the dataset in results.json; its results go to <workdir>/external/<name>/. A DNS label, unique among the external datasets.'),
    format: z
      .enum(RAW_FORMATS)
      .describe("Raw layout of the dataset: 'msd' (dataset.json with training: [{image, label}]) or 'nnunet' (nnU-Net v2: imagesTr, labelsTr, dataset.json)."),
    path: z.string().min(1).describe('Directory that holds dataset.json. In a cluster this is the path inside the dataset volume.'),
    cases: z.int().min(1).max(100000).optional().describe('Evaluate only the first N cases (sorted by case id); all when unset.'),
    modality: z
      .enum(['auto', 'MRI', 'CT'])
      .optional()
      .describe(
        "Intensity normalisation of its images: 'MRI' or 'CT' as in dataset.modality, 'auto' from its dataset.json; unset: the normalisation the run was trained with.",
      ),
    axis: z.enum(['auto', 'i', 'j', 'k']).optional().describe("Voxel axis the slices are taken across, as in dataset.axis; unset: the run's dataset.axis."),
  })
  .describe('A labelled dataset the run is also evaluated on, every case (no split); slice size and classes are those of the run.');

export const EvaluateConfig = z
  .object({
    metrics: z
      .array(z.enum(['dice', 'hd95']))
      .min(1)
      .default(['dice', 'hd95'])
      .describe('Patient-level metrics on the test split, computed on volumes rebuilt from the slices.'),
    baseline: z
      .boolean()
      .default(false)
      .describe(
        'Also train and evaluate the plain U-Net (no cells) as a fair baseline: the retrain phase trains it after the cell model from the same start (the backbone weights, or from scratch with retrain.fromScratch) with the same epochs, steps, batch size, learning rate, early stopping, seed and batch order, into baseline/model/; evaluate reports the gain of the cells over it.',
      ),
    external: z
      .array(ExternalDatasetConfig)
      .max(32)
      .superRefine((items, ctx) => {
        const seen = new Set<string>();
        items.forEach((item, i) => {
          if (seen.has(item.name))
            ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `'${item.name}' is used twice; every external dataset needs its own name` });
          seen.add(item.name);
        });
      })
      .default([])
      .describe('Other labelled datasets to evaluate the run on (all of their cases), each into <workdir>/external/<name>/ and results.json.'),
  })
  .describe('Evaluation on the test split.');

export type RetrainConfig = z.infer<typeof RetrainConfig>;
export type EvaluateConfig = z.infer<typeof EvaluateConfig>;
export type ExternalDatasetConfig = z.infer<typeof ExternalDatasetConfig>;
