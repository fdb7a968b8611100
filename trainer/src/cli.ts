// `iacnas trainer <phase>`: the command the operator's pods and `iacnas run` start.
// The contract (flags, outputs, exit codes) is docs/trainer-phases.md; the phases
// themselves, their help and what --simulate makes of them are in phases/registry.ts.
import { mkdirSync } from 'node:fs';
import { loadTrainerConfig } from './config/index.ts';
import { type CommandIO, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, isBadInput, parseCommandLine, workdirLayout } from '../../contract/src/index.ts';
import { ProgressReporter, resultFilePath } from './report/progress.ts';
import { writeFileAtomic } from './util/atomic.ts';
import { simulatePhase, simulateSeconds } from './phases/simulate.ts';
import { PHASE_COMMANDS, PHASE_DEFINITIONS, type PhaseDefinition, aliasesOf, phaseDefinition } from './phases/registry.ts';

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

const COMMON_OPTIONS = {
  workdir: { type: 'string' },
  config: { type: 'string' },
  'config-json': { type: 'string' },
  'result-file': { type: 'string' },
  simulate: { type: 'string' },
} as const;

const TRAINER_HELP = `usage: iacnas trainer <phase> --workdir <dir> (--config <file> | --config-json <json>) [--result-file <path>]

phases:
${PHASE_DEFINITIONS.map((p) => {
  const aliases = aliasesOf(p.name);
  return `  ${p.name.padEnd(10)} ${p.summary}${aliases.length > 0 ? ` (alias: ${aliases.join(', ')})` : ''}`;
}).join('\n')}

The configuration is required: a trainer configuration (dataset, backbone, search,
retrain, evaluate; unknown keys are refused) or an IACSearch manifest, whose spec is
used. --config-json '{}' asks for the built-in defaults explicitly.

stdout carries JSON lines (a progress event per epoch, then the result); stderr a
human-readable line per epoch. Exit status: 0 done, 1 failed, 2 bad configuration or data.
Run 'iacnas trainer <phase> --help' for the options of a phase.`;

/** The help of `iacnas trainer <command>`, where the command is a phase or an alias of one. */
function phaseHelp(command: string, phase: PhaseDefinition): string {
  const options = phase.options.map((o) => `\n  ${o.help}`).join('');
  return `usage: iacnas trainer ${command} --workdir <dir> [options]\n\n${phase.description}\n\n${COMMON}${options}`;
}

export interface TrainerArgs {
  /** The command as given: a phase or an alias of one. */
  command: string;
  phase: PhaseDefinition;
  workdir: string;
  config?: string;
  configJson?: string;
  resultFile?: string;
  simulate?: string;
  /** The options only this phase takes (prune: history, checkpoint). */
  options: Record<string, string | undefined>;
}

/**
 * The arguments of `iacnas trainer <phase> ...`, or the exit status when the command
 * line is answered here: the help (0; 2 for a bare `iacnas trainer`), or a usage error
 * on stderr with the help (2).
 */
export function parseTrainerArgs(argv: readonly string[], io: CommandIO = {}): TrainerArgs | number {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    stdout.write(`${TRAINER_HELP}\n`);
    return command === undefined ? EXIT_BAD_INPUT : EXIT_OK;
  }
  const phase = phaseDefinition(command);
  if (!phase) {
    stderr.write(`iacnas trainer: unknown phase '${command}'; use one of ${PHASE_COMMANDS.join(', ')}\n\n${TRAINER_HELP}\n`);
    return EXIT_BAD_INPUT;
  }
  const help = phaseHelp(command, phase);
  const own = Object.fromEntries(phase.options.map((o) => [o.name, { type: 'string' as const }]));
  const parsed = parseCommandLine(`trainer ${command}`, help, [...rest], { ...COMMON_OPTIONS, ...own }, io);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const usage = (message: string) => {
    stderr.write(`iacnas trainer ${command}: ${message}\n\n${help}\n`);
    return EXIT_BAD_INPUT;
  };
  if (positionals.length > 0) return usage(`unexpected argument '${positionals[0]}'; the phase takes options only`);
  if (!values.workdir) return usage('--workdir is required (the work directory shared by the phases)');
  if (values.config && values['config-json']) return usage('give either --config or --config-json, not both');
  if (!values.config && !values['config-json']) {
    return usage(
      "--config <file> or --config-json <json> is required: the trainer configuration, or an IACSearch manifest (its spec is used). For the built-in defaults (the phantom dataset, a 200-epoch search) say so: --config-json '{}'",
    );
  }
  const options: Record<string, string | undefined> = {};
  for (const o of phase.options) options[o.name] = (values as Record<string, string | boolean | undefined>)[o.name] as string | undefined;
  return {
    command,
    phase,
    workdir: values.workdir,
    config: values.config,
    configJson: values['config-json'],
    resultFile: values['result-file'],
    simulate: values.simulate,
    options,
  };
}

export interface TrainerIO extends CommandIO {
  env?: Record<string, string | undefined>;
}

export async function trainerMain(argv: string[], io: TrainerIO = {}): Promise<number> {
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  const args = parseTrainerArgs(argv, io);
  if (typeof args === 'number') return args;
  const phase = args.phase;
  const reporter = new ProgressReporter({
    phase: phase.name,
    stdout: io.stdout ?? process.stdout,
    stderr,
    env,
    resultFile: resultFilePath(args.resultFile, env),
  });
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  const cpuSeconds = () => {
    const c = process.cpuUsage(cpu0);
    return (c.user + c.system) / 1e6;
  };
  try {
    const simulate = simulateSeconds(args.simulate, env);
    const config = loadTrainerConfig({ file: args.config, json: args.configJson, log: (line) => reporter.log(line) });
    mkdirSync(args.workdir, { recursive: true });
    // The configuration the work directory's models were trained with, for `iacnas predict`,
    // `evaluate` and `export` on the finished run (docs/trainer-phases.md).
    writeFileAtomic(workdirLayout(args.workdir).trainerConfig, `${JSON.stringify(config, null, 2)}\n`);
    const fields =
      simulate !== undefined
        ? await simulatePhase(phase, simulate, reporter)
        : await phase.run({ config, workdir: args.workdir, reporter, options: args.options });
    await reporter.result({ ...fields, cpuSeconds: cpuSeconds() });
    return fields.ok ? EXIT_OK : EXIT_FAILED;
  } catch (e) {
    const bad = isBadInput(e);
    const message = e instanceof Error ? e.message : String(e);
    stderr.write(`iacnas trainer ${phase.name}: ${bad ? message : e instanceof Error ? (e.stack ?? message) : message}\n`);
    await reporter.result({ ok: false, message, seconds: (performance.now() - started) / 1000, cpuSeconds: cpuSeconds() });
    return bad ? EXIT_BAD_INPUT : EXIT_FAILED;
  }
}
