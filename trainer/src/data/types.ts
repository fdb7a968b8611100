// The contract between the data layer and the training loops (search, retrain,
// evaluate). Data comes as 2-D slices of patients, split at patient level.

/** Where one slice came from, so evaluation can rebuild patient volumes. */
export interface SliceRef {
  /** Case / patient id, e.g. "hippocampus_003" or "phantom_007". */
  patient: string;
  /** Index of the slice along the slicing axis of the original volume. */
  index: number;
}

/** One patient of a split, as evaluation needs it. */
export interface PatientInfo {
  id: string;
  /** Slice indices (into the SliceSource) of this patient, in slicing-axis order. */
  slices: number[];
  /** Voxel spacing in millimetres of a rebuilt volume: [row, column, slice] of the 2-D slices stacked. */
  spacing: [number, number, number];
  /** Original volume shape before slicing and resizing, [i, j, k]. */
  shape: [number, number, number];
}

/** A batch of slices in NHWC layout with integer labels. */
export interface SliceBatch {
  /** n * size * size * channels floats, normalised. */
  images: Float32Array;
  /** n * size * size class indices in [0, numClasses). */
  labels: Int32Array;
  n: number;
}

/** The slices of one split (train, val or test). */
export interface SliceSource {
  /** Number of slices. */
  readonly length: number;
  readonly patients: readonly PatientInfo[];
  ref(i: number): SliceRef;
  /**
   * Loads the slices at the given indices. `augment` applies the configured
   * augmentation with the given random source (training only).
   */
  batch(indices: readonly number[], opts?: { augment?: boolean; random?: () => number }): Promise<SliceBatch>;
}

export interface SliceDataset {
  readonly name: string;
  /** Number of classes including background (label 0). */
  readonly numClasses: number;
  /** Class names by label value, e.g. ["background", "LV", "MYO", "RV"]. */
  readonly classNames: readonly string[];
  /** Edge length of the square slices. */
  readonly sliceSize: number;
  /** Image channels (1 for the supported single-modality data). */
  readonly channels: number;
  readonly train: SliceSource;
  readonly val: SliceSource;
  readonly test: SliceSource;
}
