// A finished run, as `iacnas predict` and `iacnas evaluate` use it: its trainer
// configuration, the found cells, the trained model and what the model was trained on
// (number of classes, class names, intensity normalisation).
//
// A run is either the directory `iacnas run` writes (runs/<name>/: the trainer's work
// directory, with search.json holding the IACSearch definition), or a trainer work
// directory given together with its trainer configuration (--config).
import { SEARCH_DEFINITION_FILE, TRAINER_CONFIG_FILE, workdirLayout } from '../../../contract/src/index.ts';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { ConfigError, type TrainerConfig, loadTrainerConfig, parseTrainerConfig } from '../config/index.ts';
import { readLayout } from '../data/layout.ts';
import { PHANTOM_CLASSES } from '../data/phantom.ts';
import type { Modality } from '../data/slicing.ts';
import { readGenotype } from '../eval/evaluate.ts';
import type { Genotype, Network } from '../model/api.ts';
import type { ModelKit } from '../training/model-kit.ts';
import { badInput } from '../util/bad-input.ts';

export interface RunInfo {
  /** The trainer's work directory (for `iacnas run`: runs/<name>/). */
  workdir: string;
  config: TrainerConfig;
  /** Where the configuration came from, for messages. */
  configSource: string;
  genotype: Genotype;
  /** The trained cell model: <workdir>/retrain/model/. */
  modelDir: string;
  /** The U-Net trained with the same budget: <workdir>/baseline/model/, when the run has it. */
  baselineDir?: string;
  /** Classes the model predicts, background included. */
  numClasses: number;
  /** Class names by label value (from results.json or the run's dataset; class_<n> when neither says). */
  classNames: string[];
  /** The normalisation the run was trained with, when the run tells it (else undefined). */
  modality?: Modality;
}

/**
 * The IACSearch fields that make up a trainer configuration, in the order
 * `iacnas run` stores them in search.json (IMMUTABLE_SPEC_FIELDS of
 * operator/src/api/spec.ts begins with them); the trainer configuration of an
 * IACSearch is {name, seed, dataset, backbone, search, retrain, evaluate}.
 */
const SPEC_FIELDS = ['seed', 'dataset', 'backbone', 'search', 'retrain', 'evaluate'] as const;

/** The trainer configuration of an `iacnas run` directory, from its search.json. */
export function configFromSearchJson(file: string, name: string): TrainerConfig {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw badInput('file', `${file}: cannot read the search definition (${(e as Error).message})`, { file });
  }
  let spec: Record<string, unknown>;
  if (Array.isArray(json)) {
    // [seed, dataset, backbone, search, retrain, evaluate, resources, image, artifacts]
    const [seed, dataset] = json as unknown[];
    if (json.length < SPEC_FIELDS.length || !(seed === null || typeof seed === 'number') || typeof dataset !== 'object') {
      throw badInput(
        'file',
        `${file}: not the search definition 'iacnas run' writes ([seed, dataset, backbone, search, retrain, evaluate, ...]); give the trainer configuration with --config`,
        { file },
      );
    }
    spec = Object.fromEntries(SPEC_FIELDS.map((f, i) => [f, json[i]]));
  } else if (json && typeof json === 'object') {
    // An IACSearch object or its spec.
    const o = json as { spec?: Record<string, unknown>; metadata?: { name?: unknown } };
    spec = o.spec ?? (json as Record<string, unknown>);
    if (typeof o.metadata?.name === 'string') name = o.metadata.name;
  } else {
    throw badInput('file', `${file}: not a search definition (neither a list nor an object); give the trainer configuration with --config`, { file });
  }
  const field = (f: (typeof SPEC_FIELDS)[number]) => (spec[f] === null ? undefined : spec[f]);
  // Claims (dataset.pvc, evaluate.external[].pvc) are the operator's business; the trainer reads the paths.
  const withoutClaim = (item: unknown) => {
    if (!item || typeof item !== 'object' || Array.isArray(item)) return item;
    const { pvc: _pvc, ...rest } = item as Record<string, unknown>;
    return rest;
  };
  let evaluate = field('evaluate');
  const external = (evaluate as { external?: unknown } | undefined)?.external;
  if (Array.isArray(external)) evaluate = { ...(evaluate as object), external: external.map(withoutClaim) };
  const input = {
    name,
    seed: field('seed'),
    dataset: withoutClaim(field('dataset')),
    backbone: field('backbone'),
    search: field('search'),
    retrain: field('retrain'),
    evaluate,
  };
  try {
    return parseTrainerConfig(input);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(`${file}: ${e.message}`, e.issues);
    throw e;
  }
}

/** Classes of a saved model: the length of its output layer's bias, from the weights manifest. */
export function modelClasses(modelDir: string): number | undefined {
  try {
    const manifest = JSON.parse(readFileSync(join(modelDir, 'weights.json'), 'utf8')) as { tensors?: { name: string; shape: number[] }[] };
    const head = manifest.tensors?.find((t) => t.name === 'head/bias');
    return head && head.shape.length === 1 ? head.shape[0] : undefined;
  } catch {
    return undefined;
  }
}

function readResults(workdir: string): { classNames?: unknown; modality?: unknown } {
  try {
    return JSON.parse(readFileSync(workdirLayout(workdir).results, 'utf8')) as { classNames?: unknown; modality?: unknown };
  } catch {
    return {};
  }
}

/** What the run's dataset.json says (class names, modality), when the dataset is reachable from here. */
function datasetFacts(config: TrainerConfig): { classNames?: string[]; modality?: Modality } {
  if (config.dataset.format === 'phantom') return { classNames: [...PHANTOM_CLASSES], modality: 'MRI' };
  if (!config.dataset.path) return {};
  try {
    const layout = readLayout(config.dataset.path, config.dataset.format);
    return { classNames: layout.classNames, modality: layout.modality };
  } catch {
    return {};
  }
}

/** Opens a finished run; every problem is bad input naming the file and what to do. */
export function openRun(run: string, opts: { config?: string } = {}): RunInfo {
  const workdir = resolve(run);
  const layout = workdirLayout(workdir);
  if (!existsSync(workdir) || !statSync(workdir).isDirectory()) {
    throw badInput(
      'usage',
      `${run}: no such directory; give the run directory (runs/<name>/ of 'iacnas run'), or a trainer work directory with --config <file>`,
      { file: run },
    );
  }
  let config: TrainerConfig;
  let configSource: string;
  if (opts.config !== undefined) {
    config = loadTrainerConfig({ file: opts.config });
    configSource = opts.config;
  } else if (existsSync(layout.trainerConfig)) {
    // Written by every trainer phase: what the models of this directory were trained with.
    configSource = layout.trainerConfig;
    try {
      config = loadTrainerConfig({ file: configSource });
    } catch (e) {
      throw badInput('config', `${configSource}: ${(e as Error).message}; give the trainer configuration with --config <file>`, { file: configSource });
    }
  } else if (existsSync(layout.searchDefinition)) {
    // A run of 'iacnas run' from before the phases recorded their configuration.
    configSource = layout.searchDefinition;
    config = configFromSearchJson(configSource, basename(workdir));
  } else {
    throw badInput(
      'file',
      `${run}: neither ${TRAINER_CONFIG_FILE} (written by every trainer phase) nor ${SEARCH_DEFINITION_FILE} (of 'iacnas run') is there; give the trainer configuration with --config <file>`,
      { file: run },
    );
  }
  const genotype = readGenotype(layout.genotype);
  const modelDir = layout.retrainModel;
  if (!existsSync(join(modelDir, 'weights.json'))) {
    throw badInput('file', `${modelDir}: no trained model (weights.json missing); the run has not finished its retrain phase`, { file: modelDir });
  }
  const baselineDir = layout.baselineModel;
  const results = readResults(workdir);
  let facts: ReturnType<typeof datasetFacts> | undefined;
  const dataset = () => (facts ??= datasetFacts(config));
  let classNames = Array.isArray(results.classNames) && results.classNames.every((c) => typeof c === 'string') ? (results.classNames as string[]) : undefined;
  classNames ??= dataset().classNames;
  const numClasses = modelClasses(modelDir) ?? classNames?.length;
  if (numClasses === undefined) {
    throw badInput(
      'file',
      `${modelDir}/weights.json: cannot tell how many classes the model predicts (no head/bias tensor); was it written by the retrain phase?`,
      { file: `${modelDir}/weights.json` },
    );
  }
  if (classNames?.length !== numClasses) classNames = Array.from({ length: numClasses }, (_, v) => (v === 0 ? 'background' : `class_${v}`));
  let modality: Modality | undefined = config.dataset.modality !== 'auto' ? config.dataset.modality : undefined;
  if (modality === undefined && (results.modality === 'MRI' || results.modality === 'CT')) modality = results.modality;
  modality ??= dataset().modality;
  return {
    workdir,
    config,
    configSource,
    genotype,
    modelDir,
    ...(existsSync(join(baselineDir, 'weights.json')) ? { baselineDir } : {}),
    numClasses,
    classNames,
    ...(modality ? { modality } : {}),
  };
}

/** Builds the run's cell model (or, with `baseline`, its plain U-Net) and loads its weights. */
export async function loadRunNetwork(kit: ModelKit, run: RunInfo, which: 'model' | 'baseline' = 'model'): Promise<Network> {
  const c = run.config;
  const dir = which === 'model' ? run.modelDir : run.baselineDir;
  if (!dir) throw badInput('usage', `${run.workdir}: no baseline/model/; the run was retrained without evaluate.baseline`);
  const what = which === 'model' ? 'trained cell model' : 'baseline U-Net';
  let net: Network;
  try {
    net = kit.createNetwork({
      backbone: c.backbone,
      inChannels: 1,
      numClasses: run.numClasses,
      cells: which === 'model' ? run.genotype : 'none',
      space: { operations: c.search.operations, nodes: c.search.nodes, partialChannels: c.search.partialChannels },
      seed: c.seed,
    });
  } catch (e) {
    throw badInput('config', `cannot build the ${what} of ${run.workdir} with the configuration of ${run.configSource}: ${(e as Error).message}`);
  }
  try {
    await kit.loadWeights(net, dir);
  } catch (e) {
    net.dispose();
    throw badInput('file', `cannot load the ${what} from ${dir} with the configuration of ${run.configSource}: ${(e as Error).message}`, { file: dir });
  }
  return net;
}
