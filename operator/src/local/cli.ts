// `iacnas run <IACSearch.yaml | IACSearchSet.yaml>`: a whole search, or a fleet of them,
// on this machine, driven by the same state machines as in a cluster, with child processes
// instead of pods. Ctrl-C suspends (status saved under runs/); the same command again resumes.
import { EXIT_BAD_INPUT, parseCommandLine, type CommandIO } from '../../../contract/src/index.ts';
import { KIND, SET_KIND } from '../api/index.ts';
import { runSearchSet } from './fleet.ts';
import { readObjects, RunError, runSearchFile, type RunIO, type RunOptions } from './search.ts';

export { loadSearchFile, RunError, type RunIO, type RunOptions } from './search.ts';

const USAGE = `usage: iacnas run <IACSearch.yaml | IACSearchSet.yaml> [--out <dir>] [--data <dir>] [--parallel <n>]

Runs the four phases of an IACSearch (search, prune, retrain, evaluate) on this
machine, each phase attempt as a child process \`iacnas trainer <phase>\`, with the
same state machine, retries and cost accounting as the operator in a cluster.
An IACSearchSet runs every child of its matrix the same way, each in
<dir>/<set>/<child>/, at most --parallel at once, under the set's budget, and ends
with a table comparing them (<dir>/<set>/fleet.json and fleet.md).

  --out <dir>       where runs go (default runs/); artifacts, report and status are
                    written to <dir>/<metadata.name>/
  --data <dir>      dataset directory (holding dataset.json); default: spec.dataset.path,
                    relative to the YAML file
  --parallel <n>    an IACSearchSet's children run at once (default 1; at most the
                    CPUs of this machine, and at most the set's maxParallel); each
                    child's trainer gets its share of the CPUs as its thread count
  -h, --help        this help

Ctrl-C suspends the search (the running phase stops, status.yaml is saved); run the
same command again to resume it from its checkpoint. A set resumes child by child:
those that succeeded are kept, the others resume from their checkpoints.
Exit status: 0 succeeded, 1 failed, 2 bad input, 130 suspended by Ctrl-C.`;

/**
 * The options of `iacnas run`, or the exit status when the command line is answered here:
 * 0 after --help (the usage on stdout), 2 after a mistake (it and the usage on stderr).
 */
export function parseRunArgs(argv: string[], io: CommandIO = {}): RunOptions | number {
  const parsed = parseCommandLine('run', USAGE, argv, { out: { type: 'string', default: 'runs' }, data: { type: 'string' }, parallel: { type: 'string' } }, io);
  if (typeof parsed === 'number') return parsed;
  const [file, ...more] = parsed.positionals;
  const parallel = parsed.values.parallel;
  const mistake = !file
    ? 'the IACSearch YAML file is missing'
    : more.length
      ? `one IACSearch file at a time (got '${file}' and '${more[0]}')`
      : parallel !== undefined && !/^[1-9][0-9]*$/.test(parallel)
        ? `--parallel takes a whole number of children, at least 1 (got '${parallel}')`
        : undefined;
  if (mistake) {
    (io.stderr ?? process.stderr).write(`iacnas run: ${mistake}\n\n${USAGE}\n`);
    return EXIT_BAD_INPUT;
  }
  const opts: RunOptions = { file, out: parsed.values.out!, data: parsed.values.data };
  if (parallel !== undefined) opts.parallel = Number(parallel);
  return opts;
}

/** Runs the file's IACSearch, or its IACSearchSet's children; the exit status. */
export async function runSearch(opts: RunOptions, io: RunIO = {}): Promise<number> {
  const objects = readObjects(opts.file);
  const set = objects.find((o) => o.kind === SET_KIND);
  if (set && !objects.some((o) => o.kind === KIND)) return runSearchSet(set, opts, io);
  if (opts.parallel !== undefined) {
    (io.stderr ?? process.stderr).write(
      `iacnas run: --parallel is for an ${SET_KIND}; ${opts.file} holds an ${KIND}, which runs its phases one after another\n`,
    );
    return EXIT_BAD_INPUT;
  }
  return runSearchFile(opts, io);
}

export async function main(argv: string[]): Promise<number> {
  const opts = parseRunArgs(argv);
  if (typeof opts === 'number') return opts;
  // Ctrl-C (or SIGTERM) once: suspend cleanly. Twice: stop now; the children, in their
  // own process groups, are killed on the way out.
  let signals = 0;
  const interrupt = new Promise<void>((resolveInterrupt) => {
    const onSignal = () => {
      signals += 1;
      if (signals === 1) {
        process.stderr.write('\niacnas run: suspending (Ctrl-C again to stop at once)\n');
        resolveInterrupt();
      } else {
        process.exit(130);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  try {
    return await runSearch(opts, { interrupt });
  } catch (e) {
    if (e instanceof RunError) {
      process.stderr.write(`iacnas run: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
