// One IACSearch on this machine, driven by the same state machine as in a cluster, with
// child processes instead of pods (`iacnas run <IACSearch.yaml>`, and each child of
// `iacnas run <IACSearchSet.yaml>`). Ctrl-C suspends (status saved to
// <run dir>/status.yaml); running the same command again resumes.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { workdirLayout, type ProgressEvent } from '../../../contract/src/index.ts';
import { IMMUTABLE_SPEC_FIELDS, KIND, parseIACSearch, type IACSearchStatus } from '../api/index.ts';
import { reconcile } from '../reconcile/index.ts';
import type { KubeObject } from '../reconcile/types.ts';
import { resultLines, RunDisplay, type Output } from './display.ts';
import { LocalExecutor } from './executor.ts';

export interface RunOptions {
  file: string;
  out: string;
  data?: string;
  /** Children of an IACSearchSet run at once (default 1). */
  parallel?: number;
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
  /** CPUs of this machine (default os.availableParallelism()): the bound of --parallel. */
  cpus?: number;
}

/** What one search's run is told beyond RunIO when it is a child of a set. */
export interface SearchRunHooks {
  /** Prints the object as kubectl would at the end (default true). */
  printObject?: boolean;
  /** Called with the status after every step. */
  onStatus?: (status: IACSearchStatus) => void;
}

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export class RunError extends Error {
  override name = 'RunError';
}

/** The objects of a YAML file (every document). */
export function readObjects(file: string): KubeObject[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new RunError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const docs = parseAllDocuments(text);
  return (Array.isArray(docs) ? docs : [docs])
    .map((d) => {
      if (d.errors.length) throw new RunError(`${file} is not valid YAML: ${d.errors[0].message}`);
      return d.toJS() as KubeObject | null;
    })
    .filter((o): o is KubeObject => o !== null && typeof o === 'object');
}

/** Metadata an object read from a file lacks and an API server would give it. */
export function localMetadata(obj: KubeObject): KubeObject['metadata'] {
  const now = new Date().toISOString();
  return { namespace: 'local', uid: `local-${obj.metadata.name}`, generation: 1, creationTimestamp: now, ...obj.metadata };
}

/** Reads the first IACSearch of a YAML file, with the dataset located on this machine. */
export function loadSearchFile(opts: RunOptions): KubeObject {
  const obj = readObjects(opts.file).find((o) => o.kind === KIND);
  if (!obj) throw new RunError(`${opts.file} holds no object of kind ${KIND}`);
  if (!obj.metadata?.name) throw new RunError(`${opts.file}: metadata.name is required (it names the run directory)`);
  obj.metadata = localMetadata(obj);
  obj.spec ??= {};
  localiseSpec(obj.spec as Record<string, unknown>, opts);
  return obj;
}

/**
 * Points a search spec at this machine: there is no claim here, so the dataset (and each
 * external evaluation dataset) is a directory, relative to the YAML file or given by --data.
 */
export function localiseSpec(spec: Record<string, unknown>, opts: { file: string; data?: string }, field = 'spec') {
  spec.dataset ??= {};
  const dataset = spec.dataset as Record<string, unknown>;
  delete dataset.pvc;
  if (opts.data) {
    dataset.path = resolve(opts.data);
  } else if (typeof dataset.path === 'string' && !isAbsolute(dataset.path)) {
    dataset.path = resolve(dirname(opts.file), dataset.path);
  }
  if (typeof dataset.path === 'string' && dataset.format !== 'phantom' && dataset.format !== undefined && !existsSync(dataset.path)) {
    throw new RunError(
      `${field}.dataset.path: ${dataset.path} does not exist; give the dataset directory with --data <dir> or a path relative to ${opts.file}`,
    );
  }
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
          `${field}.evaluate.external[${i}].path: ${ext.path} does not exist; give the directory that holds its dataset.json, absolute or relative to ${opts.file}`,
        );
      }
    }
  }
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

/** `iacnas run <IACSearch.yaml>`: the file's search in <out>/<name>/. */
export async function runSearchFile(opts: RunOptions, io: RunIO = {}): Promise<number> {
  const obj = loadSearchFile(opts);
  return (await runSearchObject(obj, { runDir: resolve(opts.out, obj.metadata.name), source: opts.file }, io)).code;
}

export interface SearchRunResult {
  /** 0 succeeded, 1 failed or suspended by its budget, 2 bad input, 130 suspended by the interrupt. */
  code: number;
  status?: IACSearchStatus;
}

/**
 * Runs one search (its spec already pointed at this machine) in runDir: resumes what
 * runDir holds, retries a failed run from its checkpoints, only reports a succeeded one.
 */
export async function runSearchObject(
  obj: KubeObject,
  where: { runDir: string; source: string },
  io: RunIO = {},
  hooks: SearchRunHooks = {},
): Promise<SearchRunResult> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const parsed = parseIACSearch(obj, { unknownFields: 'refuse' });
  if (!parsed.ok) {
    stderr.write(`iacnas run: ${where.source} is not a valid ${KIND}:\n${parsed.message}\n`);
    return { code: 2 };
  }
  const name = parsed.search.metadata.name;
  const runDir = where.runDir;
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
    return { code: 2 };
  }
  writeFileSync(definitionFile, definition);

  let status = (readYaml(statusFile)?.status as IACSearchStatus | undefined) ?? undefined;
  const display = new RunDisplay(stdout);
  if (status?.phase === 'Succeeded') {
    display.message(`${name} already succeeded; its results are in ${runDir} (delete the directory to run it again).`);
    if (hooks.printObject !== false) stdout.write(stringify({ ...obj, status }));
    hooks.onStatus?.(status);
    return { code: 0, status };
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
      hooks.onStatus?.(st);
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
  if (hooks.printObject !== false) stdout.write(`\n${stringify(search)}`);
  if (phase === 'Succeeded') {
    const dice = st.results?.meanDice;
    display.message(
      `${name} succeeded${dice !== undefined ? `: test mean Dice ${dice.toFixed(4)}` : ''}. Report: ${workdirLayout(runDir).report}, results: ${workdirLayout(runDir).results}`,
    );
    for (const line of resultLines(st.results ?? {}, runDir)) display.message(`  ${line}`);
    return { code: 0, status: st };
  }
  if (phase === 'Suspended') {
    const reason = st.conditions?.find((c) => c.type === 'Ready')?.message ?? 'suspended';
    display.message(interrupted ? `${name} suspended; status saved to ${statusFile}. Run the same command again to resume.` : `${name} suspended: ${reason}`);
    return { code: interrupted ? 130 : 1, status: st };
  }
  const why = st.conditions?.find((c) => c.type === 'Stalled')?.message ?? 'failed';
  stderr.write(`iacnas run: ${name} failed: ${why}\n`);
  return { code: 1, status: st };
}
