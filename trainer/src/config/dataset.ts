// Dataset section of the trainer configuration (and of IACSearch.spec.dataset).
// Owned by the data layer (trainer/src/data). Every field has a description and a
// default: the CRD schema is generated from these schemas.
import { z } from 'zod';

/** The raw layouts of a dataset on disk (dataset.json and NIfTI files): data/layout.ts reads each. */
export const RAW_FORMATS = ['msd', 'nnunet'] as const;
export type RawFormat = (typeof RAW_FORMATS)[number];
export const isRawFormat = (s: string): s is RawFormat => (RAW_FORMATS as readonly string[]).includes(s);

export const DatasetFormat = z
  .enum(['phantom', ...RAW_FORMATS])
  .describe(
    "Dataset layout: 'phantom' is the built-in synthetic cardiac-MRI dataset; 'msd' is the Medical Segmentation Decathlon raw layout (dataset.json with training: [{image, label}]); 'nnunet' is the nnU-Net v2 raw layout (dataset.json with channel_names, labels, file_ending).",
  );

export const SplitConfig = z
  .object({
    train: z.number().gt(0).lt(1).default(0.6).describe('Fraction of patients in the training split.'),
    val: z.number().gt(0).lt(1).default(0.2).describe('Fraction of patients in the validation split.'),
    test: z.number().gt(0).lt(1).default(0.2).describe('Fraction of patients in the test split.'),
  })
  .describe('Patient-level split: all slices of a patient land on the same side. The three fractions must sum to 1.');

export const AugmentConfig = z
  .object({
    flip: z.boolean().default(true).describe('Random horizontal and vertical flips of training slices.'),
    rotate90: z.boolean().default(true).describe('Random 90-degree rotations of training slices.'),
    intensityScale: z.number().min(0).max(1).default(0.1).describe('Random intensity scaling of training slices by a factor in [1-s, 1+s]; 0 turns it off.'),
  })
  .describe('Augmentation of training slices (never of validation or test slices).');

export const DatasetConfig = z
  .object({
    format: DatasetFormat.default('phantom'),
    path: z
      .string()
      .min(1)
      .optional()
      .describe("Directory that holds dataset.json (formats 'msd' and 'nnunet'). In a cluster this is the path inside the dataset volume."),
    cases: z
      .int()
      .min(3)
      .max(100000)
      .optional()
      .describe(
        "'phantom': number of synthetic patients to generate (default 24). 'msd'/'nnunet': use only the first N cases (sorted by case id); all when unset.",
      ),
    sliceSize: z
      .int()
      .min(16)
      .max(512)
      .default(32)
      .describe('Edge length in pixels that every 2-D slice is resized to (linear for images, nearest for labels).'),
    axis: z
      .enum(['auto', 'i', 'j', 'k'])
      .default('auto')
      .describe(
        "Voxel axis that slices are taken across. 'auto' takes the through-plane axis from the NIfTI header (the axis with the largest voxel spacing).",
      ),
    modality: z
      .enum(['auto', 'MRI', 'CT'])
      .default('auto')
      .describe(
        "Intensity normalisation: 'MRI' z-scores each volume; 'CT' clips to the 0.5-99.5 percentiles and then z-scores (as nnU-Net does); 'auto' reads the modality from dataset.json.",
      ),
    split: SplitConfig.prefault({}),
    seed: z.int().min(0).default(0).describe('Seed of the patient-level split and of the phantom generator.'),
    augment: AugmentConfig.prefault({}),
    cacheMB: z
      .int()
      .min(16)
      .max(65536)
      .default(512)
      .describe('Upper bound in MiB of decoded slices kept in memory; slices beyond it are read again on demand.'),
  })
  .describe('Where the images and labels come from and how they are turned into 2-D training slices.');

export type DatasetConfig = z.infer<typeof DatasetConfig>;
