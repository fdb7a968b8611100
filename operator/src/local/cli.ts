// `iacnas run <IACSearch.yaml>`: a whole search on this machine, driven by the same
// state machine as in a cluster, with child processes instead of pods. Ctrl-C suspends
// (status saved to runs/<name>/status.yaml); running the same command again resumes.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { EXIT_BAD_INPUT, parseCommandLine, workdirLayout, type CommandIO, type ProgressEvent } from '../../../contract/src/index.ts';
import { IMMUTABLE_SPEC_FIELDS, KIND, parseIACSearch, type IACSearchStatus } from '../api/index.ts';
import { reconcile } from '../reconcile/index.ts';
import type { KubeObject } from '../reconcile/types.ts';
import { resultLines, RunDisplay, type Output } from './display.ts';
import { LocalExecutor } from './executor.ts';

const USAGE = `usage: iacnas run <IACSearch.yaml> [--out <dir>] [--data <dir>]

Runs the four phases of an IACSearch (search, prune, retrain, evaluate) on this
machine, each phase attempt as a child process \`iacnas trainer <phase>\`, with the
same state machine, retries and cost accounting as the operator in a cluster.

  --out <dir>     where runs go (default runs/); artifacts, report and status are
                  written to <dir>/<metadata.name>/
  --data <dir>    dataset directory (holding dataset.json); default: spec.dataset.path,
                  relative to the YAML file
  -h, --help      this help

Ctrl-C suspends the search (the running phase stops, status.yaml is saved); run the
same command again to resume it from its checkpoint.
Exit status: 0 succeeded, 1 failed, 2 bad input, 130 suspended by Ctrl-C.`;

export interface RunOptions {
  file: string;
  out: string;
  data?: string;
}

export interface RunIO {
  stdout?: Output;
  stderr?: Output;
  /** Replaces `iacnas` in the pod's command (tests use a fake trainer). */
  trainerCommand?: string[];
  env?: Record<string, string | undefined>;
  /** Resolves when the run should suspend (Ctrl-C). */
  interrupt?: Promise<void>;
  /** Upper bound of one wait between two looks, in ms. */
  pollMs?: number;
}

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export class RunError extends Error {
  override name = 'RunError';
}

/**
 * The options of `iacnas run`, or the exit status when the command line is answered here:
 * 0 after --help (the usage on stdout), 2 after a mistake (it and the usage on stderr).
 */
export function parseRunArgs(argv: string[], io: CommandIO = {}): RunOptions | number {
  const parsed = parseCommandLine('run', USAGE, argv, { out: { type: 'string', default: 'runs' }, data: { type: 'string' } }, io);
  if (typeof parsed === 'number') return parsed;
  const [file, ...more] = parsed.positionals;
  const mistake = !file ? 'the IACSearch YAML file is missing' : more.length ? `one IACSearch file at a time (got '${file}' and '${more[0]}')` : undefined;
  if (mistake) {
    (io.stderr ?? process.stderr).write(`iacnas run: ${mistake}\n\n${USAGE}\n`);
    return EXIT_BAD_INPUT;
  }
  return { file, out: parsed.values.out!, data: parsed.values.data };
}

/** Reads the first IACSearch of a YAML file, with the dataset located on this machine. */
export function loadSearchFile(opts: RunOptions): KubeObject {
  let text: string;
  try {
    text = readFileSync(opts.file, 'utf8');
  } catch (e) {
    throw new RunError(`cannot read ${opts.file}: ${(e as Error).message}`);
  }
  const docs = parseAllDocuments(text);
  const objects = (Array.isArray(docs) ? docs : [docs]).map((d) => {
    if (d.errors.length) throw new RunError(`${opts.file} is not valid YAML: ${d.errors[0].message}`);
    return d.toJS() as KubeObject | null;
  });
  const obj = objects.find((o) => o?.kind === KIND);
  if (!obj) throw new RunError(`${opts.file} holds no object of kind ${KIND}`);
  if (!obj.metadata?.name) throw new RunError(`${opts.file}: metadata.name is required (it names the run directory)`);
  const now = new Date().toISOString();
  obj.metadata = { namespace: 'local', uid: `local-${obj.metadata.name}`, generation: 1, creationTimestamp: now, ...obj.metadata };
  obj.spec ??= {};
  const spec = obj.spec as Record<string, unknown>;
  spec.dataset ??= {};
  const dataset = spec.dataset as Record<string, unknown>;
  // Locally there is no claim: the dataset is a directory on this machine.
  delete dataset.pvc;
  if (opts.data) {
    dataset.path = resolve(opts.data);
  } else if (typeof dataset.path === 'string' && !isAbsolute(dataset.path)) {
    dataset.path = resolve(dirname(opts.file), dataset.path);
  }
  if (typeof dataset.path === 'string' && dataset.format !== 'phantom' && dataset.format !== undefined && !existsSync(dataset.path)) {
    throw new RunError(`spec.dataset.path: ${dataset.path} does not exist; give the dataset directory with --data <dir> or a path relative to ${opts.file}`);
  }
  // The external evaluation datasets likewise: directories on this machine, relative to the YAML file.
  const evaluate = spec.evaluate as { external?: unknown } | undefined;
  if (evaluate && typeof evaluate === 'object' && Array.isArray(evaluate.external)) {
    for (const [i, item] of (evaluate.external as unknown[]).entries()) {
      if (!item || typeof item !== 'object') continue;
      const ext = item as Record<string, unknown>;
      delete ext.pvc;
      if (typeof ext.path !== 'string' || !ext.path) continue;
      if (!isAbsolute(ext.path)) ext.path = resolve(dirname(opts.file), ext.path);
      if (!existsSync(ext.path as string)) {
        throw new RunError(
          `spec.evaluate.external[${i}].path: ${ext.path} does not exist; give the directory that holds its dataset.json, absolute or relative to ${opts.file}`,
        );
      }
    }
  }
  return obj;
}

const definitionOf = (spec: Record<string, unknown>) => JSON.stringify(IMMUTABLE_SPEC_FIELDS.map((f) => spec[f] ?? null));

function readYaml(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  return parse(readFileSync(path, 'utf8')) as Record<string, unknown> | undefined;
}

/** Lets a failed run go again: the failing phase's retries start over, its checkpoints stay. */
function retryFailed(status: IACSearchStatus): IACSearchStatus {
  const next = structuredClone(status);
  delete next.phase;
  delete next.completionTime;
  for (const r of Object.values(next.phases ?? {})) {
    if (r && !r.succeeded) {
      r.failures = 0;
      delete r.endTime;
    }
  }
  next.conditions = next.conditions?.filter((c) => c.type === 'BudgetExceeded');
  return next;
}

export async function runSearch(opts: RunOptions, io: RunIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const obj = loadSearchFile(opts);
  const parsed = parseIACSearch(obj, { unknownFields: 'refuse' });
  if (!parsed.ok) {
    stderr.write(`iacnas run: ${opts.file} is not a valid ${KIND}:\n${parsed.message}\n`);
    return 2;
  }
  const name = parsed.search.metadata.name;
  const runDir = resolve(opts.out, name);
  mkdirSync(runDir, { recursive: true });
  const statusFile = join(runDir, 'status.yaml');
  const definitionFile = workdirLayout(runDir).searchDefinition;

  // The search definition of a run directory never changes, as in a cluster (CEL rule).
  const definition = definitionOf(parsed.search.spec as unknown as Record<string, unknown>);
  if (existsSync(definitionFile) && readFileSync(definitionFile, 'utf8') !== definition) {
    stderr.write(
      `iacnas run: the search definition of ${name} (${IMMUTABLE_SPEC_FIELDS.join(', ')}) differs from the one ${runDir} was started with; ` +
        `its checkpoints belong to the old one. Use another --out or metadata.name, or delete ${runDir}.\n`,
    );
    return 2;
  }
  writeFileSync(definitionFile, definition);

  let status = (readYaml(statusFile)?.status as IACSearchStatus | undefined) ?? undefined;
  const display = new RunDisplay(stdout);
  if (status?.phase === 'Succeeded') {
    display.message(`${name} already succeeded; its results are in ${runDir} (delete the directory to run it again).`);
    stdout.write(stringify({ ...obj, status }));
    return 0;
  }
  if (status?.phase === 'Failed') {
    display.message(`${name} failed before; trying again from its checkpoints.`);
    status = retryFailed(status);
  } else if (status?.phase) {
    display.message(`resuming ${name} (${status.phase}) from ${runDir}`);
  }

  let latest: ProgressEvent | undefined;
  const executor = new LocalExecutor({
    runDir,
    command: io.trainerCommand ?? [process.execPath, join(REPO_ROOT, 'bin', 'iacnas.ts')],
    env: io.env,
    onProgress: (e) => (latest = e),
    onLog: (pod, line) => display.trainerLine(pod.metadata.labels?.['iac.dev/phase'] ?? pod.metadata.name, line),
  });
  let interrupted = false;
  io.interrupt?.then(() => {
    interrupted = true;
    executor.waitForChange(0); // wake the loop
  });

  let search: KubeObject = { ...obj, status };
  const save = () => writeFileSync(statusFile, stringify(search));
  let phase: string | undefined;
  try {
    for (;;) {
      const spec = interrupted ? { ...(search.spec as object), suspend: true } : search.spec;
      const result = reconcile({
        search: { ...search, spec },
        pods: executor.pods(),
        secrets: executor.secrets,
        persistentVolumeClaims: executor.claims,
        progress: latest,
        now: new Date(),
        newToken: randomBytes(24).toString('base64url'),
        // Events are this command's progress lines: every phase start and end is shown.
        settings: { defaultImage: 'local', phaseEvents: true },
      });
      for (const action of result.actions) {
        if (action.type === 'event') {
          display.message(`${action.eventType === 'Warning' ? 'warning: ' : ''}${action.message}`);
        } else if (action.type === 'delete' && action.kind === 'IACSearch') {
          // ttlSecondsAfterFinished: nothing to clean up on this machine; the run directory stays.
        } else {
          await executor.apply(action);
        }
      }
      search = { ...search, status: result.status };
      save();
      const st = result.status as IACSearchStatus;
      phase = st.phase;
      display.update(st);
      if (phase === 'Succeeded' || phase === 'Failed') break;
      if (phase === 'Suspended' && !executor.running) break;
      const stalled = st.conditions?.find((c) => c.type === 'Stalled' && c.status === 'True');
      if (stalled) break;
      await executor.waitForChange(Math.min(result.requeueAfterMs ?? 1000, io.pollMs ?? 2000));
    }
  } finally {
    await executor.stopAll();
    display.done();
  }

  const st = search.status as IACSearchStatus;
  stdout.write(`\n${stringify(search)}`);
  if (phase === 'Succeeded') {
    const dice = st.results?.meanDice;
    display.message(
      `${name} succeeded${dice !== undefined ? `: test mean Dice ${dice.toFixed(4)}` : ''}. Report: ${workdirLayout(runDir).report}, results: ${workdirLayout(runDir).results}`,
    );
    for (const line of resultLines(st.results ?? {}, runDir)) display.message(`  ${line}`);
    return 0;
  }
  if (phase === 'Suspended') {
    const reason = st.conditions?.find((c) => c.type === 'Ready')?.message ?? 'suspended';
    display.message(interrupted ? `${name} suspended; status saved to ${statusFile}. Run the same command again to resume.` : `${name} suspended: ${reason}`);
    return interrupted ? 130 : 1;
  }
  const why = st.conditions?.find((c) => c.type === 'Stalled')?.message ?? 'failed';
  stderr.write(`iacnas run: ${name} failed: ${why}\n`);
  return 1;
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
