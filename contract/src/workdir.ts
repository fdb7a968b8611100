// The work directory the phases share (a search's artifacts volume, or runs/<name>/ of
// `iacnas run`): what each phase leaves there for the next, for `iacnas predict`,
// `evaluate` and `export`, and for whoever reads a finished run. docs/search.md and
// docs/evaluation.md say what each file holds.
import { join } from 'node:path';

/** The trainer configuration of the latest phase (every phase writes it). */
export const TRAINER_CONFIG_FILE = 'trainer-config.json';
/** The search definition `iacnas run` writes into its run directory. */
export const SEARCH_DEFINITION_FILE = 'search.json';
/** The discrete cells the prune phase derives. */
export const GENOTYPE_FILE = 'genotype.json';
/** The evaluate phase's figures (also of each external dataset, and of `iacnas evaluate --out`). */
export const RESULTS_FILE = 'results.json';
/** The evaluate phase's per-patient figures, beside RESULTS_FILE. */
export const PATIENTS_FILE = 'patients.csv';
/** The run report (HTML with SVG plots). */
export const REPORT_FILE = 'report.html';
/** A checkpoint directory's commit point. */
export const CHECKPOINT_STATE_FILE = 'state.json';

/** A training's directory (search/, backbone-training/, retrain/, baseline/): its checkpoint and its per-epoch history. */
export function trainingFiles(root: string): { checkpoint: string; history: string } {
  return { checkpoint: join(root, 'checkpoint'), history: join(root, 'history.jsonl') };
}

/** Every path of a work directory, by what it holds. */
export function workdirLayout(workdir: string) {
  const search = join(workdir, 'search');
  const backbone = join(workdir, 'backbone');
  const retrain = join(workdir, 'retrain');
  const baseline = join(workdir, 'baseline');
  return {
    trainerConfig: join(workdir, TRAINER_CONFIG_FILE),
    searchDefinition: join(workdir, SEARCH_DEFINITION_FILE),
    /** search: the cell search's checkpoint and history. */
    search,
    searchCheckpoint: trainingFiles(search).checkpoint,
    searchHistory: trainingFiles(search).history,
    /** search: the trained U-Net the cells are implanted into; complete once backboneMeta exists. */
    backbone,
    backboneMeta: join(backbone, 'meta.json'),
    /** search: the plain U-Net's training (checkpoint and history) when the backbone is trained here. */
    backboneTraining: join(workdir, 'backbone-training'),
    /** prune */
    genotype: join(workdir, GENOTYPE_FILE),
    /** retrain: the cell model's training, and its best-validation weights. */
    retrain,
    retrainModel: join(retrain, 'model'),
    /** retrain with evaluate.baseline: the plain U-Net's training, weights and record. */
    baseline,
    baselineModel: join(baseline, 'model'),
    baselineTraining: join(baseline, 'training.json'),
    /** evaluate */
    results: join(workdir, RESULTS_FILE),
    patients: join(workdir, PATIENTS_FILE),
    report: join(workdir, REPORT_FILE),
    /** evaluate: one directory per dataset of evaluate.external. */
    external: (name: string) => join(workdir, 'external', name),
    /** `iacnas predict`'s default output directory. */
    predictions: join(workdir, 'predictions'),
    /** `iacnas export`'s default output file. */
    onnxModel: join(workdir, 'model.onnx'),
  };
}
export type WorkdirLayout = ReturnType<typeof workdirLayout>;
