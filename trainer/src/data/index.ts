// loadDataset: the data layer's entry point for the training loops. It finds the
// cases (phantom generator, or an MSD / nnU-Net raw directory), checks every case's
// header before returning, splits patients, and hands out SliceSources that decode
// and slice volumes on demand through one bounded cache.
import type { DatasetConfig } from '../config/index.ts';
import type { SliceDataset } from './types.ts';
import { DataError, dataLimits, readNifti, readNiftiLabels } from './nifti.ts';
import { checkHeaders, checkIntensities, checkLabelRange, checkLabelValues, readLayout } from './layout.ts';
import { PHANTOM_CLASSES, PHANTOM_DEFAULT_CASES, phantomCase, phantomVolume } from './phantom.ts';
import { type Axis, type Modality, chooseAxis, slicedSpacing } from './slicing.ts';
import { type PatientSplit, splitPatients } from './split.ts';
import { type CaseInfo, type CaseReader, type CaseVolume, PatientSliceSource, type SourcePatient, SliceStackCache, stackLoader } from './source.ts';

export type { SliceDataset, SliceSource, SliceBatch, SliceRef, PatientInfo } from './types.ts';
export { DataError } from './nifti.ts';

class PhantomReader implements CaseReader {
  readonly cases: CaseInfo[];
  readonly modality: Modality = 'MRI';
  #seed: number;
  #index = new Map<string, number>();
  constructor(seed: number, count: number) {
    this.#seed = seed;
    this.cases = [];
    for (let i = 0; i < count; i++) {
      const c = phantomCase(seed, i);
      this.cases.push(c);
      this.#index.set(c.id, i);
    }
  }
  async read(id: string): Promise<CaseVolume> {
    const v = phantomVolume(this.#seed, this.#index.get(id)!);
    return { image: v.image, labels: v.labels };
  }
}

/**
 * Reads cases from NIfTI files with the checks of `iacnas dataset check`: header
 * consistency and limits (in nifti.ts), NaN/Inf intensities, label values, and the
 * shape the case had when loadDataset checked it. Any failure is a DataError naming
 * the file, which makes the trainer phase exit with status 2.
 */
class FileReader implements CaseReader {
  readonly cases: CaseInfo[];
  readonly modality: Modality;
  #files: Map<string, { image: string; label: string }>;
  #shapes: Map<string, [number, number, number]>;
  #numClasses: number;
  constructor(cases: CaseInfo[], files: Map<string, { image: string; label: string }>, modality: Modality, numClasses: number) {
    this.cases = cases;
    this.#files = files;
    this.#shapes = new Map(cases.map((c) => [c.id, c.shape]));
    this.modality = modality;
    this.#numClasses = numClasses;
  }
  async read(id: string): Promise<CaseVolume> {
    const f = this.#files.get(id)!;
    const shape = this.#shapes.get(id)!;
    const changed = (file: string, now: readonly number[]) =>
      new DataError(`${file}: shape ${now.join('x')} differs from ${shape.join('x')} when the dataset was loaded; the file changed during the run`, file);
    const img = readNifti(f.image);
    if (img.header.shape.some((s, d) => s !== shape[d])) throw changed(f.image, img.header.shape);
    checkIntensities(f.image, img.data, shape);
    const { header, labels } = readNiftiLabels(f.label);
    if (header.shape.some((s, d) => s !== shape[d])) throw changed(f.label, header.shape);
    checkLabelRange(f.label, labels, shape, this.#numClasses);
    return { image: img.data, labels };
  }
}

/**
 * Case reader and class names for a dataset configuration. Checks every case's
 * headers and label values first and throws one DataError naming every bad file.
 */
export function openCases(config: DatasetConfig): { name: string; classNames: string[]; reader: CaseReader } {
  if (config.format === 'phantom') {
    const count = config.cases ?? PHANTOM_DEFAULT_CASES;
    return { name: 'phantom', classNames: [...PHANTOM_CLASSES], reader: new PhantomReader(config.seed, count) };
  }
  if (!config.path) throw new DataError(`dataset.path: required for format '${config.format}' (the directory holding dataset.json)`);
  dataLimits(); // a bad IACNAS_MAX_* is reported once, not for every file
  const layout = readLayout(config.path, config.format);
  const chosen = config.cases !== undefined ? layout.cases.slice(0, config.cases) : layout.cases;
  const { ok, problems } = checkHeaders(chosen, layout.root);
  problems.push(...checkLabelValues(ok, layout.classNames.length));
  if (problems.length > 0) {
    throw new DataError(
      `dataset ${layout.root}: ${problems.length} problem(s) found before loading; fix or remove these cases (run 'iacnas dataset check ${layout.root}' for a full report):\n  ${problems.join('\n  ')}`,
    );
  }
  const modality: Modality = config.modality === 'auto' ? layout.modality : config.modality;
  const cases = ok.map((h) => ({ id: h.files.id, shape: h.image.shape, spacing: h.image.spacing }));
  const files = new Map(ok.map((h) => [h.files.id, { image: h.files.image, label: h.files.label }]));
  return { name: layout.name, classNames: layout.classNames, reader: new FileReader(cases, files, modality, layout.classNames.length) };
}

/**
 * Loads a dataset as 2-D slices split at patient level. Only headers and label maps
 * are read here (to refuse bad cases up front): images are decoded when their slices
 * are first asked for, and at most dataset.cacheMB of decoded slices are kept.
 */
export async function loadDataset(config: DatasetConfig): Promise<SliceDataset> {
  const { name, classNames, reader } = openCases(config);
  const split = splitCases(name, reader, config);
  const size = config.sliceSize;
  const axes = new Map<string, Axis>();
  const patients = new Map<string, SourcePatient>();
  for (const c of reader.cases) {
    const axis = chooseAxis(config.axis, c.spacing);
    axes.set(c.id, axis);
    patients.set(c.id, { id: c.id, shape: c.shape, spacing: slicedSpacing(c.shape, c.spacing, axis, size), count: c.shape[axis] });
  }
  const cache = new SliceStackCache(config.cacheMB * 1024 * 1024, stackLoader(reader, axes, size));
  const source = (ids: string[], seed: number) =>
    new PatientSliceSource({ patients: ids.map((id) => patients.get(id)!), cache, sliceSize: size, augment: config.augment, seed });
  return {
    name,
    numClasses: classNames.length,
    classNames,
    sliceSize: size,
    channels: 1,
    train: source(split.train, config.seed),
    val: source(split.val, config.seed + 1),
    test: source(split.test, config.seed + 2),
  };
}

/**
 * The patient-level split of a dataset's cases (by id), exactly as loadDataset makes
 * it; evaluation uses it to read the test cases' own volumes.
 */
export function splitCases(name: string, reader: CaseReader, config: DatasetConfig): PatientSplit {
  if (reader.cases.length < 3) {
    throw new DataError(`dataset ${name}: ${reader.cases.length} case(s); a train/val/test split needs at least 3 patients`);
  }
  return splitPatients(
    reader.cases.map((c) => c.id),
    config.split,
    config.seed,
  );
}
