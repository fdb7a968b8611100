// The trainer's phases: for each, its name, its help, the options only it takes, how it
// runs and what `--simulate` makes of it. `iacnas trainer` dispatches through this
// table; a phase module is imported only when that phase runs, so that --help and
// --simulate load neither TensorFlow.js nor data.
import { PHASES, type Phase } from '../../../contract/src/index.ts';
import type { ProgressFields, ResultFields } from '../report/progress.ts';
import type { PhaseContext } from './context.ts';

/** What `--simulate` does for a phase: progress events over the given time, then a plausible result. */
export interface SimulatedPhase {
  /** Progress events it reports, spread evenly over its time (0: it only waits, as prune does). */
  epochs: number;
  /** Fields its progress events carry besides epochs, losses, Dice and times. */
  progress?: (epoch: number) => Partial<ProgressFields>;
  /** Its result fields besides ok, message and seconds; `elapsed` is the simulated phase's wall time. */
  result: (elapsed: number, epochs: number) => Omit<ResultFields, 'ok' | 'message' | 'seconds'>;
}

/** A command-line option only this phase takes (a string value), with its help line. */
export interface PhaseOption {
  /** The option's name without the dashes, e.g. 'history'. */
  name: keyof PhaseContext['options'];
  /** Its line under the common options of the phase's help, e.g. '--history <file>   derive from ...'. */
  help: string;
}

export interface PhaseDefinition {
  name: Phase;
  /** One line in the phase list of `iacnas trainer --help`. */
  summary: string;
  /** What `iacnas trainer <phase> --help` says between its usage line and its options. */
  description: string;
  options: readonly PhaseOption[];
  run(ctx: PhaseContext): Promise<ResultFields>;
  simulate: SimulatedPhase;
}

/** Progress events of a simulated training phase. */
export const SIMULATED_EPOCHS = 2;

const definitions: { [P in Phase]: PhaseDefinition & { name: P } } = {
  search: {
    name: 'search',
    summary: 'train (or load) the U-Net backbone, then search the cells with IAC-LTH stability pruning',
    description: `Trains the plain U-Net (backbone.pretrainEpochs; skipped when backbone.pretrained is
set or <workdir>/backbone/ already holds it), then searches the IAC cells with the
backbone frozen. Checkpoints every epoch to <workdir>/search/ and resumes from there
when started again; appends one line per epoch to <workdir>/search/history.jsonl.`,
    options: [],
    run: async (ctx) => (await import('./search.ts')).runSearchPhase(ctx),
    simulate: {
      epochs: SIMULATED_EPOCHS,
      progress: (epoch) => ({ activeOperations: 8 - epoch, totalOperations: 8, stableEdges: epoch, totalEdges: 4 }),
      result: (elapsed, epochs) => ({
        epochs,
        meanEpochSeconds: elapsed / epochs,
        stoppedBy: 'stable',
        activeOperations: 4,
        totalOperations: 8,
        stableEdges: 4,
        totalEdges: 4,
        bestValDice: 0.7,
      }),
    },
  },
  prune: {
    name: 'prune',
    summary: "derive genotype.json from the search's final checkpoint",
    description: `Derives the discrete cells from the final architecture parameters of the search and
writes <workdir>/genotype.json. Needs no GPU.`,
    options: [
      { name: 'checkpoint', help: '--checkpoint <dir>       read this search checkpoint instead of <workdir>/search/checkpoint' },
      { name: 'history', help: '--history <file>         derive from the last line of a history.jsonl instead' },
    ],
    run: async (ctx) => (await import('./prune.ts')).runPrunePhase(ctx),
    simulate: {
      epochs: 0,
      result: () => ({
        genotype: {
          cells: [
            [
              [
                [0, 'skip_connect'],
                [1, 'conv_3x3'],
              ],
            ],
          ],
        },
        activeOperations: 2,
        totalOperations: 8,
      }),
    },
  },
  retrain: {
    name: 'retrain',
    summary: 'train the U-Net with the discrete cells of genotype.json',
    description: `Builds the U-Net with the discrete cells of <workdir>/genotype.json and trains it
(from the backbone weights in <workdir>/backbone/ with fresh cells, or from scratch
with retrain.fromScratch), with validation Dice every epoch, early stopping and a
checkpoint every epoch. The best-validation weights go to <workdir>/retrain/model/.
With evaluate.baseline: true it then trains the plain U-Net (no cells) from the same
start with the same budget, data order, schedule, early stopping and seed, into
<workdir>/baseline/model/ and baseline/training.json.`,
    options: [],
    run: async (ctx) => (await import('./retrain.ts')).runRetrainPhase(ctx),
    simulate: {
      epochs: SIMULATED_EPOCHS,
      result: (elapsed, epochs) => ({ epochs, meanEpochSeconds: elapsed / epochs, bestValDice: 0.7 }),
    },
  },
  evaluate: {
    name: 'evaluate',
    summary: 'patient-level Dice and HD95 of the retrained model on the test split',
    description: `Evaluates <workdir>/retrain/model/ (and <workdir>/baseline/model/ with
evaluate.baseline) on the test split: patient-level Dice and HD95, written to
<workdir>/results.json, patients.csv and report.html.`,
    options: [],
    run: async (ctx) => (await import('./evaluate.ts')).runEvaluatePhase(ctx),
    simulate: {
      epochs: SIMULATED_EPOCHS,
      result: () => ({ meanDice: 0.7, dicePerClass: { '1': 0.7 }, hd95: 3.5 }),
    },
  },
};

/** Every phase, in the order a search runs them (the contract's PHASES). */
export const PHASE_DEFINITIONS: readonly PhaseDefinition[] = PHASES.map((p) => definitions[p]);

/** Other names a phase answers to on the command line. */
export const PHASE_ALIASES: Readonly<Record<string, Phase>> = { derive: 'prune' };

/** The command names `iacnas trainer` takes: every phase, each followed by its aliases. */
export const PHASE_COMMANDS: readonly string[] = PHASES.flatMap((p) => [p, ...aliasesOf(p)]);

/** The phase a command name stands for (a phase's own name or an alias), or undefined. */
export function phaseDefinition(command: string): PhaseDefinition | undefined {
  const phase = (PHASES as readonly string[]).includes(command) ? (command as Phase) : PHASE_ALIASES[command];
  return phase === undefined ? undefined : definitions[phase];
}

/** The aliases of a phase. */
export function aliasesOf(phase: Phase): string[] {
  return Object.entries(PHASE_ALIASES)
    .filter(([, p]) => p === phase)
    .map(([alias]) => alias);
}
