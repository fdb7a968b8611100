// `iacnas trainer <phase>`: the command the operator's pods and `iacnas run` start.
// The contract (flags, outputs, exit codes) is docs/trainer-phases.md.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type TrainerConfig, loadTrainerConfig } from './config/index.ts';
import { BadInputError, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, type Phase } from '../../contract/src/index.ts';
import { ProgressReporter, type ResultFields, resultFilePath } from './report/progress.ts';
import { writeFileAtomic } from './training/atomic.ts';
import { simulatePhase, simulateSeconds } from './simulate.ts';
import type { PhaseContext } from './phases/context.ts';

/** The trainer configuration of the latest phase, written into the work directory. */
export const TRAINER_CONFIG_FILE = 'trainer-config.json';


const PHASES = ['search', 'prune', 'derive', 'retrain', 'evaluate'] as const;
type PhaseCommand = (typeof PHASES)[number];

const COMMON = `  --workdir <dir>          work directory shared by the phases (required)
  --config <file>          trainer configuration, YAML or JSON (this or --config-json is
                           required); an IACSearch manifest is read as its spec
  --config-json <json>     trainer configuration inline (instead of --config);
                           --config-json '{}' asks for the built-in defaults (the
                           phantom dataset, a 200-epoch search)
  --result-file <path>     where the JSON result goes (default $IACNAS_RESULT_FILE,
                           else /dev/termination-log when it exists)
  --simulate <seconds>     benchmark/test aid: do no training, wait this long while
                           reporting progress, then write a plausible result
                           (default $IACNAS_SIMULATE_SECONDS)
  -h, --help               this help`;

const HELP: Record<PhaseCommand | 'trainer', string> = {
  trainer: `usage: iacnas trainer <phase> --workdir <dir> (--config <file> | --config-json <json>) [--result-file <path>]

phases:
  search     train (or load) the U-Net backbone, then search the cells with IAC-LTH stability pruning
  prune      derive genotype.json from the search's final checkpoint (alias: derive)
  retrain    train the U-Net with the discrete cells of genotype.json
  evaluate   patient-level Dice and HD95 of the retrained model on the test split

The configuration is required: a trainer configuration (dataset, backbone, search,
retrain, evaluate; unknown keys are refused) or an IACSearch manifest, whose spec is
used. --config-json '{}' asks for the built-in defaults explicitly.

stdout carries JSON lines (a progress event per epoch, then the result); stderr a
human-readable line per epoch. Exit status: 0 done, 1 failed, 2 bad configuration or data.
Run 'iacnas trainer <phase> --help' for the options of a phase.`,
  search: `usage: iacnas trainer search --workdir <dir> [options]

Trains the plain U-Net (backbone.pretrainEpochs; skipped when backbone.pretrained is
set or <workdir>/backbone/ already holds it), then searches the IAC cells with the
backbone frozen. Checkpoints every epoch to <workdir>/search/ and resumes from there
when started again; appends one line per epoch to <workdir>/search/history.jsonl.

${COMMON}`,
  prune: `usage: iacnas trainer prune --workdir <dir> [options]

Derives the discrete cells from the final architecture parameters of the search and
writes <workdir>/genotype.json. Needs no GPU.

${COMMON}
  --checkpoint <dir>       read this search checkpoint instead of <workdir>/search/checkpoint
  --history <file>         derive from the last line of a history.jsonl instead`,
  derive: '',
  retrain: `usage: iacnas trainer retrain --workdir <dir> [options]

Builds the U-Net with the discrete cells of <workdir>/genotype.json and trains it
(from the backbone weights in <workdir>/backbone/ with fresh cells, or from scratch
with retrain.fromScratch), with validation Dice every epoch, early stopping and a
checkpoint every epoch. The best-validation weights go to <workdir>/retrain/model/.
With evaluate.baseline: true it then trains the plain U-Net (no cells) from the same
start with the same budget, data order, schedule, early stopping and seed, into
<workdir>/baseline/model/ and baseline/training.json.

${COMMON}`,
  evaluate: `usage: iacnas trainer evaluate --workdir <dir> [options]

Evaluates <workdir>/retrain/model/ (and <workdir>/baseline/model/ with
evaluate.baseline) on the test split: patient-level Dice and HD95, written to
<workdir>/results.json, patients.csv and report.html.

${COMMON}`,
};
HELP.derive = HELP.prune.replace('iacnas trainer prune', 'iacnas trainer derive');

export interface TrainerArgs {
  phase: PhaseCommand;
  workdir?: string;
  config?: string;
  configJson?: string;
  resultFile?: string;
  history?: string;
  checkpoint?: string;
  simulate?: string;
  help: boolean;
}

const FLAGS: Record<string, keyof TrainerArgs> = {
  '--workdir': 'workdir',
  '--config': 'config',
  '--config-json': 'configJson',
  '--result-file': 'resultFile',
  '--history': 'history',
  '--checkpoint': 'checkpoint',
  '--simulate': 'simulate',
};

/** A problem with the command line: exit status 2 and the help text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function parseTrainerArgs(argv: readonly string[]): TrainerArgs | { help: true; phase?: undefined } {
  const [phase, ...rest] = argv;
  if (phase === undefined || phase === '-h' || phase === '--help' || phase === 'help') return { help: true };
  if (!(PHASES as readonly string[]).includes(phase)) {
    throw new UsageError(`unknown phase '${phase}'; use one of ${PHASES.join(', ')}`);
  }
  const args: TrainerArgs = { phase: phase as PhaseCommand, help: false };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '-h' || arg === '--help') {
      args.help = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const key = FLAGS[flag];
    if (!key || ((key === 'history' || key === 'checkpoint') && args.phase !== 'prune' && args.phase !== 'derive')) {
      throw new UsageError(`unknown option '${flag}' for 'iacnas trainer ${args.phase}'`);
    }
    const value = eq > 0 ? arg.slice(eq + 1) : rest[++i];
    if (value === undefined || value === '') throw new UsageError(`option ${flag} needs a value`);
    (args as unknown as Record<string, unknown>)[key] = value;
  }
  if (args.help) return args;
  if (!args.workdir) throw new UsageError(`--workdir is required (the work directory shared by the phases)`);
  if (args.config && args.configJson) throw new UsageError('give either --config or --config-json, not both');
  if (!args.config && !args.configJson) {
    throw new UsageError(
      "--config <file> or --config-json <json> is required: the trainer configuration, or an IACSearch manifest (its spec is used). For the built-in defaults (the phantom dataset, a 200-epoch search) say so: --config-json '{}'",
    );
  }
  return args;
}


/** An error in the input (configuration or data) that retrying cannot fix: exit status 2. */
export function isBadInput(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  return e instanceof BadInputError || e instanceof UsageError || e.name === 'DataError' || e.name === 'ConfigError' || (e as { badInput?: boolean }).badInput === true;
}

async function runPhase(phase: Phase, ctx: PhaseContext): Promise<ResultFields> {
  switch (phase) {
    case 'search':
      return (await import('./phases/search.ts')).runSearchPhase(ctx);
    case 'prune':
      return (await import('./phases/prune.ts')).runPrunePhase(ctx);
    case 'retrain':
      return (await import('./phases/retrain.ts')).runRetrainPhase(ctx);
    case 'evaluate':
      return (await import('./phases/evaluate.ts')).runEvaluatePhase(ctx);
  }
}

export interface TrainerIO {
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown };
  env?: Record<string, string | undefined>;
}

export async function trainerMain(argv: string[], io: TrainerIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  let args: TrainerArgs | { help: true; phase?: undefined };
  try {
    args = parseTrainerArgs(argv);
  } catch (e) {
    stderr.write(`iacnas trainer: ${(e as Error).message}\n\n${HELP[(argv[0] as PhaseCommand) in HELP ? (argv[0] as PhaseCommand) : 'trainer']}\n`);
    return EXIT_BAD_INPUT;
  }
  if (args.help) {
    stdout.write(`${HELP[args.phase ?? 'trainer']}\n`);
    return argv.length === 0 ? EXIT_BAD_INPUT : EXIT_OK;
  }
  const phase: Phase = args.phase === 'derive' ? 'prune' : args.phase;
  const reporter = new ProgressReporter({ phase, stdout, stderr, env, resultFile: resultFilePath(args.resultFile, env) });
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  const cpuSeconds = () => {
    const c = process.cpuUsage(cpu0);
    return (c.user + c.system) / 1e6;
  };
  try {
    const simulate = simulateSeconds(args.simulate, env);
    const config = loadTrainerConfig({ file: args.config, json: args.configJson, log: (line) => reporter.log(line) });
    mkdirSync(args.workdir!, { recursive: true });
    // The configuration the work directory's models were trained with, for `iacnas predict`,
    // `evaluate` and `export` on the finished run (docs/trainer-phases.md).
    writeFileAtomic(join(args.workdir!, TRAINER_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
    const fields = simulate !== undefined ? await simulatePhase(phase, simulate, reporter) : await runPhase(phase, { config, workdir: args.workdir!, reporter, options: { history: args.history, checkpoint: args.checkpoint } });
    await reporter.result({ ...fields, cpuSeconds: cpuSeconds() });
    return fields.ok ? EXIT_OK : EXIT_FAILED;
  } catch (e) {
    const bad = isBadInput(e);
    const message = e instanceof Error ? e.message : String(e);
    stderr.write(`iacnas trainer ${phase}: ${bad ? message : e instanceof Error ? (e.stack ?? message) : message}\n`);
    await reporter.result({ ok: false, message, seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSeconds() });
    return bad ? EXIT_BAD_INPUT : EXIT_FAILED;
  }
}
