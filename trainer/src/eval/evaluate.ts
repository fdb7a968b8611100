// Patient-level evaluation on the test split: every test patient's slices are
// segmented, stacked back into a volume in slicing-axis order, and compared with the
// label volume by 3-D Dice and HD95 (trainer/src/eval/metrics.ts). Then the mean over
// patients per class and overall; per patient in patients.csv; everything in
// results.json. Optionally the same for the U-Net without cells (the backbone).
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainerConfig } from '../config/index.ts';
import type { SliceDataset, SliceSource } from '../data/types.ts';
import type { Genotype, GenotypeCell, Network } from '../model/api.ts';
import type { ModelKit } from '../train/model-kit.ts';
import { type Shape3, dice, hd95 } from './metrics.ts';

export interface PatientMetrics {
  id: string;
  /** Dice per foreground class (classes 1..numClasses-1). */
  dice: number[];
  /** HD95 in mm per foreground class; null when the class is absent from both volumes. */
  hd95: (number | null)[];
  /** Shape [slices, rows, columns] and spacing in mm of the evaluated volume. */
  shape: [number, number, number];
  spacing: [number, number, number];
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
  patients: PatientMetrics[];
}

export interface EvaluationResults {
  dataset: string;
  split: 'test';
  classNames: string[];
  sliceSize: number;
  conventions: string[];
  model: ModelResults;
  baseline?: ModelResults;
  /** model.meanDice - baseline.meanDice, when there is a baseline. */
  diceGain?: number;
  seconds: number;
  time: string;
}

export const CONVENTIONS = [
  'Dice and HD95 are computed per patient on the test split, on the volume rebuilt from its 2-D slices at the slice resolution (labels resampled by nearest neighbour), then averaged over patients.',
  'Dice of a class absent from both prediction and ground truth is 1; absent from exactly one of them it is 0.',
  'HD95 is the 95th percentile of the symmetric surface distances in millimetres (MedPy hd95 definition, 6-connected surfaces).',
  'HD95 of a class absent from both is undefined and left out of the means; absent from exactly one side it is the volume diagonal in millimetres (the largest possible distance).',
];

/** Segments one patient: predicted and true label volumes [slices][rows][columns]. */
export async function segmentPatient(
  net: Network,
  data: SliceDataset,
  source: SliceSource,
  patient: number,
  batchSize = 16,
): Promise<{ pred: Uint8Array; truth: Uint8Array; shape: [number, number, number] }> {
  const p = source.patients[patient];
  const size = data.sliceSize;
  const plane = size * size;
  const count = p.slices.length;
  const pred = new Uint8Array(count * plane);
  const truth = new Uint8Array(count * plane);
  for (let start = 0; start < count; start += batchSize) {
    // patients[].slices is in slicing-axis order, so slice s of the volume is p.slices[s].
    const indices = p.slices.slice(start, start + batchSize);
    const b = await source.batch(indices);
    const classes = tf.tidy(() => {
      const x = tf.tensor4d(b.images, [b.n, size, size, data.channels]);
      return tf.argMax(net.apply(x, { training: false }), -1);
    });
    const values = await classes.data();
    classes.dispose();
    pred.set(values, start * plane);
    truth.set(b.labels, start * plane);
  }
  return { pred, truth, shape: [count, size, size] };
}

/** Dice and HD95 of every patient of `source`. */
export async function evaluatePatients(
  net: Network,
  data: SliceDataset,
  source: SliceSource,
  opts: { metrics?: readonly ('dice' | 'hd95')[]; batchSize?: number } = {},
): Promise<PatientMetrics[]> {
  const metrics = opts.metrics ?? ['dice', 'hd95'];
  const out: PatientMetrics[] = [];
  for (let i = 0; i < source.patients.length; i++) {
    const p = source.patients[i];
    const { pred, truth, shape } = await segmentPatient(net, data, source, i, opts.batchSize);
    // PatientInfo.spacing is [row, column, slice]; the volume is [slice][row][column].
    const spacing: [number, number, number] = [p.spacing[2], p.spacing[0], p.spacing[1]];
    const d: number[] = [];
    const h: (number | null)[] = [];
    for (let c = 1; c < data.numClasses; c++) {
      d.push(dice(pred, truth, c));
      h.push(metrics.includes('hd95') ? hd95(pred, truth, c, shape as Shape3, spacing) : null);
    }
    out.push({ id: p.id, dice: d, hd95: h, shape, spacing });
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
  const hdMeans: number[] = [];
  for (let c = 1; c < classNames.length; c++) {
    const d = mean(patients.map((p) => p.dice[c - 1])) ?? 0;
    dicePerClass[classNames[c]] = d;
    classMeans.push(d);
    const h = mean(patients.map((p) => p.hd95[c - 1]).filter((v): v is number => v !== null));
    hd95PerClass[classNames[c]] = h;
    if (h !== null) hdMeans.push(h);
  }
  return { dicePerClass, meanDice: mean(classMeans) ?? 0, hd95PerClass, meanHd95: mean(hdMeans), patients };
}

/** patients.csv: one row per patient and model. */
export function patientsCsv(results: EvaluationResults): string {
  const fg = results.classNames.slice(1);
  const header = ['patient', 'model', ...fg.map((c) => `dice_${c}`), 'dice_mean', ...fg.map((c) => `hd95_${c}_mm`)];
  const rows = [header.join(',')];
  const fmt = (v: number | null) => (v === null ? '' : v.toFixed(4));
  const add = (model: string, r: ModelResults) => {
    for (const p of r.patients) {
      rows.push([p.id, model, ...p.dice.map(fmt), fmt(mean(p.dice)), ...p.hd95.map(fmt)].join(','));
    }
  };
  add('iac', results.model);
  if (results.baseline) add('baseline', results.baseline);
  return `${rows.join('\n')}\n`;
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Writes results.json and patients.csv into the work directory. */
export function writeResults(workdir: string, results: EvaluationResults): void {
  mkdirSync(workdir, { recursive: true });
  writeAtomic(join(workdir, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeAtomic(join(workdir, 'patients.csv'), patientsCsv(results));
}

function badInput(message: string): Error {
  return Object.assign(new Error(message), { badInput: true });
}

/**
 * Reads <workdir>/genotype.json. Accepts the Genotype itself ({cells: [{nodes}]}),
 * an object holding it under `genotype`, or the compact PhaseResult form
 * ({cells: [[[input, op], ...], ...]}).
 */
export function readGenotype(file: string): Genotype {
  if (!existsSync(file)) throw badInput(`${file} not found: run the prune phase first (it writes the discrete cells)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw badInput(`${file} is not valid JSON (${(e as Error).message})`);
  }
  const g = (json as { genotype?: unknown }).genotype ?? json;
  const cells = (g as { cells?: unknown }).cells;
  if (!Array.isArray(cells) || cells.length === 0) throw badInput(`${file}: no 'cells' list; expected the genotype written by the prune phase`);
  return {
    cells: cells.map((cell: unknown, ci): GenotypeCell => {
      if (cell && typeof cell === 'object' && Array.isArray((cell as GenotypeCell).nodes)) return cell as GenotypeCell;
      if (Array.isArray(cell)) {
        return { nodes: cell.map((node: unknown) => (node as [number, string][]).map(([input, op]) => ({ input, op }) as GenotypeCell['nodes'][number][number])) };
      }
      throw badInput(`${file}: cells[${ci}] is neither {nodes: [...]} nor a list of nodes`);
    }),
  };
}

export interface RunEvaluateOptions {
  config: TrainerConfig;
  workdir: string;
  /** The model functions; the real model when omitted. */
  kit?: ModelKit;
  /** The dataset; loaded from config.dataset when omitted. */
  data?: SliceDataset;
  /** A human-readable progress line (the reporter's stderr log). */
  log?: (line: string) => void;
  /** Write report.html at the end (default true); a failing report never fails the evaluation. */
  report?: boolean;
}

/** What `iacnas trainer evaluate` reports in its PhaseResult (spread it into the result fields; the full results are in results.json). */
export interface EvaluateOutcome {
  ok: true;
  meanDice: number;
  dicePerClass: Record<string, number>;
  /** Mean HD95 in mm (omitted when never defined). */
  hd95?: number;
  seconds: number;
}

/**
 * The evaluate phase: rebuilds the network from <workdir>/genotype.json, loads
 * <workdir>/retrain/model/, evaluates the test split, optionally the backbone
 * (<workdir>/backbone/) as the baseline, writes results.json, patients.csv and
 * report.html.
 */
export async function runEvaluate(o: RunEvaluateOptions): Promise<EvaluateOutcome> {
  const started = performance.now();
  const { config, workdir } = o;
  const log = o.log ?? (() => {});
  const kit = o.kit ?? (await (await import('../train/model-kit.ts')).loadModelKit());
  const data = o.data ?? (await (await import('../data/index.ts')).loadDataset(config.dataset));
  const genotype = readGenotype(join(workdir, 'genotype.json'));
  const modelDir = join(workdir, 'retrain', 'model');
  if (!existsSync(modelDir)) throw badInput(`${modelDir} not found: run the retrain phase first (it writes the trained model there)`);
  const space = { operations: config.search.operations, nodes: config.search.nodes, partialChannels: config.search.partialChannels };
  const build = (cells: 'none' | Genotype) =>
    kit.createNetwork({ backbone: config.backbone, inChannels: data.channels, numClasses: data.numClasses, cells, space, seed: config.seed });
  const evaluateWith = async (net: Network, dir: string, what: string): Promise<ModelResults> => {
    try {
      try {
        await kit.loadWeights(net, dir);
      } catch (e) {
        throw badInput(`cannot load the ${what} from ${dir}: ${(e as Error).message}`);
      }
      const patients = await evaluatePatients(net, data, data.test, { metrics: config.evaluate.metrics });
      return summarise(patients, data.classNames);
    } finally {
      net.dispose();
    }
  };
  log(`evaluate: ${data.test.patients.length} test patients, ${data.test.length} slices`);
  const model = await evaluateWith(build(genotype), modelDir, 'retrained model');
  log(`evaluate: IAC model mean Dice ${model.meanDice.toFixed(4)}${model.meanHd95 !== null ? `, HD95 ${model.meanHd95.toFixed(2)} mm` : ''}`);
  let baseline: ModelResults | undefined;
  if (config.evaluate.baseline) {
    const backboneDir = join(workdir, 'backbone');
    if (!existsSync(backboneDir)) throw badInput(`evaluate.baseline: ${backboneDir} not found (the search phase writes the trained backbone there)`);
    baseline = await evaluateWith(build('none'), backboneDir, 'baseline U-Net');
    log(`evaluate: baseline U-Net mean Dice ${baseline.meanDice.toFixed(4)}`);
  }
  const seconds = (performance.now() - started) / 1000;
  const results: EvaluationResults = {
    dataset: data.name,
    split: 'test',
    classNames: [...data.classNames],
    sliceSize: data.sliceSize,
    conventions: CONVENTIONS,
    model,
    ...(baseline ? { baseline, diceGain: model.meanDice - baseline.meanDice } : {}),
    seconds,
    time: new Date().toISOString(),
  };
  writeResults(workdir, results);
  if (o.report ?? true) {
    try {
      const { writeReport } = await import('../report/html.ts');
      writeReport(workdir, { title: config.name, operations: config.search.operations, threshold: config.search.stability.threshold });
    } catch (e) {
      log(`evaluate: could not write report.html: ${(e as Error).message}`);
    }
  }
  return {
    ok: true,
    meanDice: model.meanDice,
    dicePerClass: model.dicePerClass,
    ...(model.meanHd95 !== null ? { hd95: model.meanHd95 } : {}),
    seconds,
  };
}
