// Patient-level evaluation on each scan's own voxel grid. Every case is read from its
// files, prepared as training prepared it (normalised, sliced, resized), segmented
// slice by slice, and the class probabilities are resampled back to the scan's grid
// (trainer/src/predict/segment.ts). Dice and HD95 (trainer/src/eval/metrics.ts) are
// computed there against the label file as stored, HD95 in millimetres from the
// scan's spacing; the Dice on the resized slices is kept as a secondary figure. Then
// the mean over patients per class and overall; per patient in patients.csv;
// everything in results.json.
//
// The evaluate phase does this for the run's test split, for the U-Net trained with
// the same budget (evaluate.baseline), and for every dataset of evaluate.external (all
// of its cases); `iacnas evaluate` does it for any labelled dataset (eval/cli.ts).
import { PATIENTS_FILE, RESULTS_FILE, workdirLayout } from '../../../contract/src/index.ts';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RawFormat } from '../config/dataset.ts';
import type { DatasetConfig, ExternalDatasetConfig, TrainerConfig } from '../config/index.ts';
import { DataError } from '../data/nifti.ts';
import { type Axis, type Modality, chooseAxis, normalizeVolume, sliceVolume } from '../data/slicing.ts';
import type { CaseReader } from '../data/source.ts';
import type { Genotype, Network } from '../model/api.ts';
import { genotypeFromJson } from '../model/genotype.ts';
import { segmentSlices } from '../predict/segment.ts';
import type { ModelKit } from '../training/model-kit.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { type Shape3, dice, hd95 } from './metrics.ts';
import { badInput } from '../util/bad-input.ts';

export interface PatientMetrics {
  id: string;
  /** Dice per foreground class (classes 1..numClasses-1) on the scan's own grid. */
  dice: number[];
  /** HD95 in mm per foreground class on the scan's own grid; null when the class is absent from both volumes. */
  hd95: (number | null)[];
  /** Dice per foreground class on the resized slices (dataset.sliceSize), labels resampled by nearest neighbour. */
  sliceDice: number[];
  /** The scan's voxel grid: voxels along i, j, k and their spacing in mm. */
  shape: [number, number, number];
  spacing: [number, number, number];
  /** The axis the slices were taken across. */
  axis: 'i' | 'j' | 'k';
}

export interface ModelResults {
  /** Mean Dice over patients, by class name (foreground classes). */
  dicePerClass: Record<string, number>;
  /** Mean over patients and foreground classes. */
  meanDice: number;
  /** Mean HD95 in mm over the patients where it is defined, by class name (null: never defined). */
  hd95PerClass: Record<string, number | null>;
  /** Mean over the defined per-class means. */
  meanHd95: number | null;
  /** meanDice computed on the resized slices instead of the scans' grids. */
  sliceMeanDice: number;
  patients: PatientMetrics[];
}

/** <workdir>/baseline/training.json: how the baseline was trained (the evaluate phase copies it into results.json). */
export interface BaselineTraining {
  cells: 'none';
  startedFrom: 'backbone' | 'scratch';
  /** Epochs it ran (early stopping may end it before maxEpochs). */
  epochs: number;
  maxEpochs: number;
  /** Optimizer steps per epoch (all training slices once, capped by retrain.stepsPerEpoch). */
  stepsPerEpoch: number;
  batchSize: number;
  learningRate: number;
  seed: number;
  bestValDice: number;
}

export interface ExternalResults {
  name: string;
  /** The dataset directory. */
  path: string;
  /** Number of cases evaluated. */
  cases: number;
  model: ModelResults;
  baseline?: ModelResults;
}

export interface EvaluationResults {
  dataset: string;
  /** 'test': the run's test split; 'all': every case of a dataset (external evaluation). */
  split: 'test' | 'all';
  /** Where Dice and HD95 are computed: each scan's own voxel grid. */
  grid: 'native';
  classNames: string[];
  sliceSize: number;
  /** The intensity normalisation the cases were prepared with. */
  modality: Modality;
  /** The dataset.axis setting the slicing axis was chosen by. */
  axis: 'auto' | 'i' | 'j' | 'k';
  conventions: string[];
  model: ModelResults;
  /** The U-Net trained with the same budget (evaluate.baseline). */
  baseline?: ModelResults;
  /** <workdir>/baseline/training.json, when there is a baseline. */
  baselineTraining?: BaselineTraining;
  /** model.meanDice - baseline.meanDice, when there is a baseline. */
  diceGain?: number;
  /** evaluate.external: the run's models on each other dataset (details in external/<name>/). */
  external?: ExternalResults[];
  /** External evaluation: the dataset directory and the run's work directory. */
  path?: string;
  run?: string;
  seconds: number;
  time: string;
}

export const CONVENTIONS = [
  "Dice and HD95 are computed per patient on the scan's own voxel grid: the network segments the resized 2-D slices, its class probabilities are resampled bilinearly back to each slice's original size, the class of highest probability is taken per voxel, and the result is compared with the label file as stored. Then they are averaged over patients.",
  "HD95 is in millimetres from the scan's voxel spacing (NIfTI pixdim).",
  'sliceDice / sliceMeanDice: the same Dice on the resized slices (dataset.sliceSize), labels resampled by nearest neighbour; a secondary figure.',
  'Dice of a class absent from both prediction and ground truth is 1; absent from exactly one of them it is 0.',
  'HD95 is the 95th percentile of the symmetric surface distances (MedPy hd95 definition, 6-connected surfaces).',
  'HD95 of a class absent from both is undefined and left out of the means; absent from exactly one side it is the volume diagonal in millimetres (the largest possible distance).',
];

const AXIS_NAMES = ['i', 'j', 'k'] as const;

/** Cases to evaluate: a reader of their files and which of them. */
export interface EvalCases {
  /** Dataset name (results.json `dataset`). */
  name: string;
  classNames: readonly string[];
  reader: CaseReader;
  /** Case ids to evaluate, in order. */
  ids: readonly string[];
  /** The axis setting (dataset.axis) each case's slicing axis is chosen by. */
  axis: 'auto' | 'i' | 'j' | 'k';
}

/** A network to evaluate and its name in progress lines. */
export interface EvalModel {
  label: string;
  net: Network;
}

export interface EvaluateCasesOptions {
  sliceSize: number;
  numClasses: number;
  metrics?: readonly ('dice' | 'hd95')[];
  batchSize?: number;
  /** A progress line per case. */
  log?: (line: string) => void;
  /** Prefix of the progress lines. */
  what?: string;
}

const f4 = (v: number) => v.toFixed(4);

/**
 * Dice and HD95 of every case for each model: one list of PatientMetrics per model,
 * in the order of `models`. Each case is read and prepared once for all models.
 */
export async function evaluateCases(models: readonly EvalModel[], cases: EvalCases, o: EvaluateCasesOptions): Promise<PatientMetrics[][]> {
  const metrics = o.metrics ?? ['dice', 'hd95'];
  const log = o.log ?? (() => {});
  const what = o.what ?? 'evaluate';
  const infos = new Map(cases.reader.cases.map((c) => [c.id, c]));
  const out: PatientMetrics[][] = models.map(() => []);
  for (let n = 0; n < cases.ids.length; n++) {
    const id = cases.ids[n];
    const info = infos.get(id);
    if (!info) throw new Error(`evaluateCases: unknown case ${id}`);
    const started = performance.now();
    const vol = await cases.reader.read(id);
    const shape = info.shape;
    const axis: Axis = chooseAxis(cases.axis, info.spacing);
    normalizeVolume(vol.image, cases.reader.modality);
    const stack = sliceVolume(vol.image, vol.labels, shape, axis, o.sliceSize);
    // The volumes are i fastest: as [k][j][i] for the metrics, with the spacing in that order.
    const grid: Shape3 = [shape[2], shape[1], shape[0]];
    const spacing = [info.spacing[2], info.spacing[1], info.spacing[0]];
    const parts: string[] = [];
    for (let m = 0; m < models.length; m++) {
      const seg = await segmentSlices(models[m].net, stack.images, shape, axis, { sliceSize: o.sliceSize, numClasses: o.numClasses, batchSize: o.batchSize });
      const d: number[] = [];
      const h: (number | null)[] = [];
      const sd: number[] = [];
      for (let c = 1; c < o.numClasses; c++) {
        d.push(dice(seg.labels, vol.labels, c));
        h.push(metrics.includes('hd95') ? hd95(seg.labels, vol.labels, c, grid, spacing) : null);
        sd.push(dice(seg.sliceLabels, stack.labels, c));
      }
      out[m].push({ id, dice: d, hd95: h, sliceDice: sd, shape: [...shape], spacing: [...info.spacing], axis: AXIS_NAMES[axis] });
      const hd = h.filter((v): v is number => v !== null);
      parts.push(`${models[m].label} Dice ${d.map(f4).join(' ')}${hd.length ? `, HD95 ${h.map((v) => (v === null ? '-' : v.toFixed(2))).join(' ')} mm` : ''}`);
    }
    const seconds = (performance.now() - started) / 1000;
    log(`${what} [${n + 1}/${cases.ids.length}] ${id} (${shape.join('x')}, slices across ${AXIS_NAMES[axis]}): ${parts.join('; ')} (${seconds.toFixed(1)} s)`);
  }
  return out;
}

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

/** Means over patients, per class and overall. */
export function summarise(patients: PatientMetrics[], classNames: readonly string[]): ModelResults {
  const dicePerClass: Record<string, number> = {};
  const hd95PerClass: Record<string, number | null> = {};
  const classMeans: number[] = [];
  const sliceMeans: number[] = [];
  const hdMeans: number[] = [];
  for (let c = 1; c < classNames.length; c++) {
    const d = mean(patients.map((p) => p.dice[c - 1])) ?? 0;
    dicePerClass[classNames[c]] = d;
    classMeans.push(d);
    sliceMeans.push(mean(patients.map((p) => p.sliceDice[c - 1])) ?? 0);
    const h = mean(patients.map((p) => p.hd95[c - 1]).filter((v): v is number => v !== null));
    hd95PerClass[classNames[c]] = h;
    if (h !== null) hdMeans.push(h);
  }
  return {
    dicePerClass,
    meanDice: mean(classMeans) ?? 0,
    hd95PerClass,
    meanHd95: mean(hdMeans),
    sliceMeanDice: mean(sliceMeans) ?? 0,
    patients,
  };
}

/** patients.csv: one row per patient and model. */
export function patientsCsv(results: EvaluationResults): string {
  const fg = results.classNames.slice(1);
  const header = ['patient', 'model', ...fg.map((c) => `dice_${c}`), 'dice_mean', ...fg.map((c) => `hd95_${c}_mm`), 'slice_dice_mean'];
  const rows = [header.join(',')];
  const fmt = (v: number | null) => (v === null ? '' : v.toFixed(4));
  const add = (model: string, r: ModelResults) => {
    for (const p of r.patients) {
      rows.push([p.id, model, ...p.dice.map(fmt), fmt(mean(p.dice)), ...p.hd95.map(fmt), fmt(mean(p.sliceDice))].join(','));
    }
  };
  add('iac', results.model);
  if (results.baseline) add('baseline', results.baseline);
  return `${rows.join('\n')}\n`;
}

/** Writes results.json and patients.csv into `dir`. */
export function writeResults(dir: string, results: EvaluationResults): void {
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(join(dir, RESULTS_FILE), `${JSON.stringify(results, null, 2)}\n`);
  writeFileAtomic(join(dir, PATIENTS_FILE), patientsCsv(results));
}

/**
 * Reads <workdir>/genotype.json. Accepts the Genotype itself ({cells: [{nodes}]}),
 * an object holding it under `genotype`, or the compact PhaseResult form
 * ({cells: [[[input, op], ...], ...]}).
 */
export function readGenotype(file: string): Genotype {
  if (!existsSync(file)) throw badInput('file', `${file} not found: run the prune phase first (it writes the discrete cells)`, { file });
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw badInput('file', `${file} is not valid JSON (${(e as Error).message})`, { file });
  }
  const genotype = genotypeFromJson(json);
  if ('error' in genotype) throw badInput('file', `${file}: ${genotype.error}`, { file });
  return genotype;
}

/** A labelled dataset to evaluate on, every case: where it is and how to prepare it. */
export interface LabelledDataset {
  format: RawFormat;
  path: string;
  cases?: number;
  /** Unset: `modality` of the run. */
  modality?: 'auto' | 'MRI' | 'CT';
  /** Unset: the run's dataset.axis. */
  axis?: 'auto' | 'i' | 'j' | 'k';
}

/**
 * Opens another labelled dataset for evaluation with the run's slice size: all of its
 * cases (no split), the headers and label values checked first. Refuses, naming both
 * sides, a dataset whose number of classes differs from the model's. `where` names the
 * setting in messages (e.g. "evaluate.external[0] (name)" or "--data").
 */
export async function openLabelledDataset(
  d: LabelledDataset,
  run: { dataset: DatasetConfig; modality: Modality; numClasses: number; classNames?: readonly string[] },
  where: string,
  log: (line: string) => void = () => {},
): Promise<EvalCases> {
  const { openCases } = await import('../data/index.ts');
  const config: DatasetConfig = {
    ...run.dataset,
    format: d.format,
    path: d.path,
    cases: d.cases,
    modality: d.modality ?? run.modality,
    axis: d.axis ?? run.dataset.axis,
  };
  let opened: ReturnType<typeof openCases>;
  try {
    opened = openCases(config);
  } catch (e) {
    if (e instanceof DataError) throw new DataError(`${where}: ${e.message}`, e.file);
    throw e;
  }
  const { name, classNames, reader } = opened;
  if (classNames.length !== run.numClasses) {
    throw badInput(
      'data',
      `${where}: ${d.path} labels ${classNames.length} classes (${classNames.join(', ')}) but the model predicts ${run.numClasses}` +
        `${run.classNames ? ` (${run.classNames.join(', ')})` : ''}; a dataset can only be evaluated with the same label values as the run's`,
      { file: d.path },
    );
  }
  if (run.classNames && classNames.some((c, v) => c !== run.classNames![v])) {
    log(`${where}: class names differ from the run's (${classNames.join(', ')} vs ${run.classNames.join(', ')}); label values are compared as they are`);
  }
  return { name, classNames, reader, ids: reader.cases.map((c) => c.id), axis: config.axis };
}

export interface RunEvaluateOptions {
  config: TrainerConfig;
  workdir: string;
  /** The model functions; the real model when omitted. */
  kit?: ModelKit;
  /** The cases of the test split; the run's dataset (config.dataset) and its split when omitted. */
  cases?: EvalCases;
  /** A human-readable progress line (the reporter's stderr log). */
  log?: (line: string) => void;
  /** Write report.html at the end (default true); a failing report never fails the evaluation. */
  report?: boolean;
}

/** One external dataset in the PhaseResult. */
export interface ExternalOutcome {
  name: string;
  cases: number;
  meanDice: number;
  dicePerClass: Record<string, number>;
  hd95?: number;
}

/** What `iacnas trainer evaluate` reports in its PhaseResult (spread it into the result fields; the full results are in results.json). */
export interface EvaluateOutcome {
  ok: true;
  meanDice: number;
  dicePerClass: Record<string, number>;
  /** Mean HD95 in mm (omitted when never defined). */
  hd95?: number;
  /** With evaluate.baseline: the baseline's mean Dice and the gain of the cells over it. */
  baselineMeanDice?: number;
  diceGain?: number;
  /** evaluate.external, in the order configured. */
  external: ExternalOutcome[];
  seconds: number;
}

/** The test split of the run's own dataset. */
async function openTestCases(config: TrainerConfig): Promise<EvalCases> {
  const { openCases, splitCases } = await import('../data/index.ts');
  const { name, classNames, reader } = openCases(config.dataset);
  const split = splitCases(name, reader, config.dataset);
  return { name, classNames, reader, ids: split.test, axis: config.dataset.axis };
}

function readBaselineTraining(file: string, baselineDir: string): BaselineTraining {
  const missing = () =>
    badInput(
      'file',
      `evaluate.baseline: ${file} not found or unreadable: run the retrain phase again with evaluate.baseline: true (it trains the U-Net baseline with the same budget and writes ${baselineDir})`,
      { file },
    );
  if (!existsSync(file)) throw missing();
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as BaselineTraining;
  } catch {
    throw missing();
  }
}

function outcomeOf(r: ModelResults): { meanDice: number; dicePerClass: Record<string, number>; hd95?: number } {
  return { meanDice: r.meanDice, dicePerClass: r.dicePerClass, ...(r.meanHd95 !== null ? { hd95: r.meanHd95 } : {}) };
}

/**
 * The evaluate phase: rebuilds the network from <workdir>/genotype.json, loads
 * <workdir>/retrain/model/, evaluates the test split on the scans' own grids, with
 * evaluate.baseline also <workdir>/baseline/model/ (the U-Net retrained with the same
 * budget), then every dataset of evaluate.external into <workdir>/external/<name>/;
 * writes results.json, patients.csv and report.html.
 */
export async function runEvaluate(o: RunEvaluateOptions): Promise<EvaluateOutcome> {
  const started = performance.now();
  const { config, workdir } = o;
  const log = o.log ?? (() => {});
  const kit = o.kit ?? (await (await import('../training/model-kit.ts')).loadModelKit());
  const layout = workdirLayout(workdir);
  const genotype = readGenotype(layout.genotype);
  const modelDir = layout.retrainModel;
  if (!existsSync(modelDir))
    throw badInput('file', `${modelDir} not found: run the retrain phase first (it writes the trained model there)`, { file: modelDir });
  const baselineDir = layout.baselineModel;
  let baselineTraining: BaselineTraining | undefined;
  if (config.evaluate.baseline) {
    if (!existsSync(baselineDir)) {
      throw badInput(
        'file',
        `evaluate.baseline: ${baselineDir} not found: run the retrain phase again with evaluate.baseline: true (it trains the U-Net baseline with the same budget as the cell model)`,
        { file: baselineDir },
      );
    }
    baselineTraining = readBaselineTraining(layout.baselineTraining, baselineDir);
  }
  const cases = o.cases ?? (await openTestCases(config));
  const numClasses = cases.classNames.length;
  const modality = cases.reader.modality;
  // Every external dataset is opened (and its headers and labels checked) before
  // anything is evaluated, so a bad one fails the phase at once.
  const externals: { item: ExternalDatasetConfig; cases: EvalCases }[] = [];
  for (const [i, item] of config.evaluate.external.entries()) {
    const where = `evaluate.external[${i}] (${item.name})`;
    externals.push({
      item,
      cases: await openLabelledDataset(item, { dataset: config.dataset, modality, numClasses, classNames: cases.classNames }, where, log),
    });
  }

  const space = { operations: config.search.operations, nodes: config.search.nodes, partialChannels: config.search.partialChannels };
  const nets: EvalModel[] = [];
  const load = async (cells: 'none' | Genotype, dir: string, label: string, what: string) => {
    let net: Network;
    try {
      net = kit.createNetwork({ backbone: config.backbone, inChannels: 1, numClasses, cells, space, seed: config.seed });
    } catch (e) {
      throw badInput('config', `cannot build the ${what}: ${(e as Error).message}`);
    }
    nets.push({ label, net });
    try {
      await kit.loadWeights(net, dir);
    } catch (e) {
      throw badInput('file', `cannot load the ${what} from ${dir}: ${(e as Error).message}`, { file: dir });
    }
  };
  try {
    await load(genotype, modelDir, 'IAC', 'retrained model');
    if (baselineTraining) await load('none', baselineDir, 'U-Net', 'baseline U-Net');
    const opts = { sliceSize: config.dataset.sliceSize, numClasses, metrics: config.evaluate.metrics, log };

    log(`evaluate: ${cases.ids.length} test patients of ${cases.name}, Dice and HD95 on each scan's own grid`);
    const [modelPatients, baselinePatients] = await evaluateCases(nets, cases, { ...opts, what: 'evaluate' });
    const model = summarise(modelPatients, cases.classNames);
    const baseline = baselinePatients ? summarise(baselinePatients, cases.classNames) : undefined;
    log(
      `evaluate: IAC model mean Dice ${f4(model.meanDice)}${model.meanHd95 !== null ? `, HD95 ${model.meanHd95.toFixed(2)} mm` : ''} (on the resized slices ${f4(model.sliceMeanDice)})`,
    );
    if (baseline)
      log(`evaluate: U-Net baseline (same budget) mean Dice ${f4(baseline.meanDice)}; gain of the cells ${(model.meanDice - baseline.meanDice).toFixed(4)}`);

    const external: ExternalResults[] = [];
    for (const { item, cases: ext } of externals) {
      const t0 = performance.now();
      log(`evaluate: external dataset ${item.name} (${ext.name}, ${item.path}): ${ext.ids.length} cases`);
      const [mp, bp] = await evaluateCases(nets, ext, { ...opts, what: `evaluate ${item.name}` });
      const r: ExternalResults = {
        name: item.name,
        path: item.path,
        cases: ext.ids.length,
        model: summarise(mp, ext.classNames),
        ...(bp ? { baseline: summarise(bp, ext.classNames) } : {}),
      };
      external.push(r);
      const seconds = (performance.now() - t0) / 1000;
      writeResults(layout.external(item.name), {
        dataset: ext.name,
        split: 'all',
        grid: 'native',
        classNames: [...ext.classNames],
        sliceSize: config.dataset.sliceSize,
        modality: ext.reader.modality,
        axis: ext.axis,
        conventions: CONVENTIONS,
        model: r.model,
        ...(r.baseline ? { baseline: r.baseline, diceGain: r.model.meanDice - r.baseline.meanDice } : {}),
        path: item.path,
        run: workdir,
        seconds,
        time: new Date().toISOString(),
      });
      log(
        `evaluate: ${item.name}: IAC model mean Dice ${f4(r.model.meanDice)}${r.baseline ? `, U-Net baseline ${f4(r.baseline.meanDice)}` : ''}; results in ${layout.external(item.name)}`,
      );
    }

    const seconds = (performance.now() - started) / 1000;
    const results: EvaluationResults = {
      dataset: cases.name,
      split: 'test',
      grid: 'native',
      classNames: [...cases.classNames],
      sliceSize: config.dataset.sliceSize,
      modality,
      axis: cases.axis,
      conventions: CONVENTIONS,
      model,
      ...(baseline ? { baseline, baselineTraining, diceGain: model.meanDice - baseline.meanDice } : {}),
      ...(external.length > 0 ? { external } : {}),
      seconds,
      time: new Date().toISOString(),
    };
    writeResults(workdir, results);
    if (o.report ?? true) {
      try {
        const { writeReport } = await import('../report/html.ts');
        writeReport(workdir, {
          title: config.name,
          operations: config.search.operations,
          threshold: config.search.stability.threshold,
          autoScale: config.search.stability.autoScale,
        });
      } catch (e) {
        log(`evaluate: could not write report.html: ${(e as Error).message}`);
      }
    }
    return {
      ok: true,
      ...outcomeOf(model),
      ...(baseline ? { baselineMeanDice: baseline.meanDice, diceGain: model.meanDice - baseline.meanDice } : {}),
      external: external.map((r) => ({ name: r.name, cases: r.cases, ...outcomeOf(r.model) })),
      seconds,
    };
  } finally {
    for (const m of nets) m.net.dispose();
  }
}
