// `iacnas run <IACSearchSet.yaml>`: a fleet on this machine. The set's own reconcile
// (operator/src/fleet/) decides, exactly as in a cluster, which children exist, which run
// and which are held (maxParallel, the set's budget), and computes the set's status and
// table; here its creates and merge patches land on an in-memory record of the children
// (runs/<set>/children.yaml), and a child that should run runs as `iacnas run` runs one
// search, in runs/<set>/<child>/. Nothing is held between two runs of the command: a
// child not finished is queued again and resumes from its checkpoints when released.
import { availableParallelism } from 'node:os';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { EXIT_BAD_INPUT } from '../../../contract/src/index.ts';
import { API_VERSION, type ChildRow, type IACSearchSetStatus, type IACSearchStatus, KIND, parseIACSearch, SET_KIND } from '../api/index.ts';
import { childName, childSpec, combinationKey, combinations, HOLD_ANNOTATION, invalidSetSpec, reconcileSet } from '../fleet/index.ts';
import { applyMergePatch } from '../k8s/merge-patch.ts';
import type { KubeObject } from '../reconcile/types.ts';
import type { Output } from './display.ts';
import { localiseSpec, localMetadata, RunError, type RunIO, type RunOptions, runSearchObject, type SearchRunResult } from './search.ts';

type Json = Record<string, unknown>;

/** Thread-pool settings of the trainer's native TensorFlow backend (docs/native-backend.md). */
export const TRAINER_THREAD_ENV = ['TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'] as const;

const FINISHED = new Set(['Succeeded', 'Failed']);

/** Writes whole lines with a tag in front (a child's lines among the others'). */
class TaggedOutput implements Output {
  private pending = '';
  private readonly out: Output;
  private readonly tag: string;
  constructor(out: Output, tag: string) {
    this.out = out;
    this.tag = tag;
  }
  write(text: string) {
    this.pending += text;
    let nl = this.pending.indexOf('\n');
    while (nl >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      if (line.trim()) this.out.write(`${this.tag} ${line}\n`);
      nl = this.pending.indexOf('\n');
    }
    return true;
  }
}

function readYamlObjects(path: string): KubeObject[] {
  if (!existsSync(path)) return [];
  return parseAllDocuments(readFileSync(path, 'utf8'))
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => Boolean(o?.metadata?.name));
}

function readStatus(path: string): Json | undefined {
  if (!existsSync(path)) return undefined;
  return (parse(readFileSync(path, 'utf8')) as { status?: Json } | null)?.status;
}

/** How many children run at once: --parallel, bounded by the CPUs and by the set's maxParallel. */
export function fleetParallelism(requested: number | undefined, cpus: number, maxParallel: number | undefined, children: number) {
  const want = requested ?? 1;
  if (want > cpus) {
    throw new RunError(
      `--parallel ${want}: this machine has ${cpus} CPU${cpus === 1 ? '' : 's'}, and each child's trainer needs at least one; give --parallel ${cpus} or less`,
    );
  }
  const parallel = Math.max(1, Math.min(want, maxParallel ?? want, children));
  return { parallel, threads: Math.max(1, Math.floor(cpus / parallel)) };
}

/** The rows of the final table, as text: one line per child and the best child. */
export function fleetTable(status: Partial<IACSearchSetStatus>): string[] {
  const rows = status.table ?? [];
  const withSearch = rows.some((r) => r.search !== undefined);
  const head = ['child', 'dataset', 'seed', ...(withSearch ? ['search'] : []), 'phase', 'search epochs', 'speedup', 'test Dice', 'cost USD'];
  const cells = rows.map((r) => [
    r.name,
    r.dataset ?? '-',
    r.seed !== undefined ? String(r.seed) : '-',
    ...(withSearch ? [r.search ?? '-'] : []),
    r.held ? `${r.phase} (${r.held})` : (r.phase ?? 'Pending'),
    r.searchEpochs !== undefined ? String(r.searchEpochs) : '-',
    r.speedup !== undefined ? `${r.speedup.toFixed(1)}x` : '-',
    r.testDice !== undefined ? r.testDice.toFixed(4) : '-',
    r.costUSD !== undefined ? r.costUSD.toFixed(2) : '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const out = [line(head), ...cells.map(line)];
  out.push(status.bestChild ? `best child: ${status.bestChild.name} (test mean Dice ${status.bestChild.testDice.toFixed(4)})` : 'best child: none succeeded');
  return out;
}

/** fleet.json: the set's status summed up, and each child's row with where its run lies. */
function fleetJSON(name: string, status: Partial<IACSearchSetStatus>, setDir: string) {
  const where = (child: string) => ({ runDir: child, report: join(child, 'report.html') });
  return {
    set: name,
    phase: status.phase,
    ready: status.ready,
    gpuHours: status.gpuHours,
    estimatedUSD: status.estimatedUSD,
    savedGPUHours: status.savedGPUHours,
    bestChild: status.bestChild ? { ...status.bestChild, ...where(status.bestChild.name) } : null,
    children: (status.table ?? []).map((r: ChildRow) => ({ ...r, ...where(r.name), reportExists: existsSync(join(setDir, r.name, 'report.html')) })),
  };
}

function fleetMarkdown(name: string, status: Partial<IACSearchSetStatus>, setDir: string): string {
  const rows = status.table ?? [];
  const cell = (v: unknown) => (v === undefined ? '-' : String(v));
  const lines = [
    `# ${name}`,
    '',
    `${status.phase ?? 'Pending'}: ${status.ready ?? '0/0'} succeeded, ${cell(status.gpuHours)} GPU-hours, ${cell(status.estimatedUSD)} USD.`,
    status.bestChild
      ? `Best child: [${status.bestChild.name}](${status.bestChild.name}/report.html), test mean Dice ${status.bestChild.testDice.toFixed(4)}.`
      : 'No child succeeded.',
    '',
    '| child | dataset | seed | search | phase | search epochs | speedup | test Dice | cost USD | report |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => {
      const report = existsSync(join(setDir, r.name, 'report.html')) ? `[report.html](${r.name}/report.html)` : '-';
      return `| ${r.name} | ${cell(r.dataset)} | ${cell(r.seed)} | ${cell(r.search)} | ${r.phase ?? 'Pending'}${r.held ? ` (${r.held})` : ''} | ${cell(r.searchEpochs)} | ${r.speedup !== undefined ? `${r.speedup.toFixed(1)}x` : '-'} | ${r.testDice !== undefined ? r.testDice.toFixed(4) : '-'} | ${r.costUSD !== undefined ? r.costUSD.toFixed(2) : '-'} | ${report} |`;
    }),
    '',
  ];
  return lines.join('\n');
}

interface Runner {
  stop: () => void;
  stopping: boolean;
}

/** Runs an IACSearchSet's children on this machine; the exit status (as `iacnas run`'s). */
export async function runSearchSet(setFromFile: KubeObject, opts: RunOptions, io: RunIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  if (!setFromFile.metadata?.name) throw new RunError(`${opts.file}: metadata.name is required (it names the run directory)`);
  const setName = setFromFile.metadata.name;
  const set: KubeObject = { ...setFromFile, metadata: localMetadata(setFromFile) };
  delete set.status;

  // The set as the operator checks it, then each child as `iacnas run` checks a search
  // (misspelt fields refused, its dataset on this machine).
  const invalid = invalidSetSpec(set);
  if (invalid !== undefined) {
    stderr.write(`iacnas run: ${opts.file} is not a valid ${SET_KIND}:\n${invalid}\n`);
    return EXIT_BAD_INPUT;
  }
  const rawSpec = set.spec as Json;
  const wanted = combinations(rawSpec.matrix as Json | undefined);
  const problems: string[] = [];
  for (const c of wanted) {
    const spec = childSpec(rawSpec.template as Json, c, rawSpec.queueName as string | undefined);
    localiseSpec(spec, opts, `child ${combinationKey(c)}: spec`);
    const parsed = parseIACSearch({ apiVersion: API_VERSION, kind: KIND, metadata: { name: childName(setName, c) }, spec }, { unknownFields: 'refuse' });
    if (!parsed.ok) problems.push(...parsed.message.split('\n').map((l) => `child ${combinationKey(c)} (spec.template with its matrix items): ${l}`));
  }
  if (problems.length) {
    stderr.write(`iacnas run: ${opts.file} is not a valid ${SET_KIND}:\n${problems.join('\n')}\n`);
    return EXIT_BAD_INPUT;
  }

  const { parallel, threads } = fleetParallelism(opts.parallel, io.cpus ?? availableParallelism(), rawSpec.maxParallel as number | undefined, wanted.length);
  // The set's reconcile releases children up to maxParallel: on this machine, the bound above.
  set.spec = { ...rawSpec, maxParallel: parallel };
  const setDir = resolve(opts.out, setName);
  mkdirSync(setDir, { recursive: true });
  const statusFile = join(setDir, 'status.yaml');
  const childrenFile = join(setDir, 'children.yaml');
  const tag = (name: string) => `[${name.startsWith(`${setName}-`) ? name.slice(setName.length + 1) : name}]`;
  const say = (text: string) => stdout.write(`[${setName}] ${text}\n`);

  const env = { ...io.env };
  const threadsSet = TRAINER_THREAD_ENV.filter((k) => env[k] === undefined && process.env[k] === undefined);
  for (const k of threadsSet) env[k] = String(threads);
  say(
    `${wanted.length} children, ${parallel} at a time` +
      (opts.parallel !== undefined && parallel < opts.parallel ? ` (the set's maxParallel is ${rawSpec.maxParallel})` : '') +
      (threadsSet.length ? `; each trainer may use ${threads} thread${threads === 1 ? '' : 's'} (${threadsSet.join(', ')})` : '') +
      `; runs in ${setDir}/<child>/`,
  );

  // The children as an API server would hold them, from an earlier run of this set.
  const children = new Map<string, KubeObject>();
  const statuses = new Map<string, Json>();
  for (const child of readYamlObjects(childrenFile)) {
    const status = readStatus(join(setDir, child.metadata.name, 'status.yaml'));
    const phase = status?.phase as string | undefined;
    if (status) statuses.set(child.metadata.name, phase === 'Failed' ? { ...status, phase: undefined } : status);
    // Nothing holds a child between two runs: one not finished (a failed one is tried again,
    // from its checkpoints) is queued; the set releases it, or holds it on the budget.
    if (phase !== 'Succeeded' && child.metadata.annotations?.[HOLD_ANNOTATION] !== 'Budget') {
      child.spec = { ...(child.spec as Json), suspend: true };
      child.metadata.annotations = { ...child.metadata.annotations, [HOLD_ANNOTATION]: 'Queued' };
    }
    children.set(child.metadata.name, child);
  }
  const previous = readStatus(statusFile) as Partial<IACSearchSetStatus> | undefined;
  // A set failed by its budget before is judged again on the budget in the file.
  let status: Json = previous ? { ...previous, conditions: previous.conditions?.filter((c) => !(c.type === 'Stalled' && c.reason === 'BudgetExceeded')) } : {};
  if (previous?.succeeded) say(`resuming from ${setDir}: ${previous.ready} succeeded before and are not run again`);

  const runners = new Map<string, Runner>();
  /** Children whose run ended by itself in this command: not started again by it. */
  const ended = new Set<string>();
  const results = new Map<string, SearchRunResult>();
  let wake: (() => void) | undefined;
  const changed = () => wake?.();
  let interrupted = false;
  /** A child's input was refused (e.g. its run directory belongs to another definition): the fleet stops. */
  let refused = false;
  io.interrupt?.then(() => {
    interrupted = true;
    changed();
  });

  const start = (child: KubeObject) => {
    const name = child.metadata.name;
    let stop!: () => void;
    const interrupt = new Promise<void>((r) => (stop = r));
    const runner: Runner = { stop, stopping: false };
    runners.set(name, runner);
    const out = new TaggedOutput(stdout, tag(name));
    const err = new TaggedOutput(stderr, tag(name));
    const spec = structuredClone(child.spec) as Json;
    delete spec.suspend;
    localiseSpec(spec, opts, `child ${name}: spec`);
    const search: KubeObject = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: localMetadata({ ...child, metadata: { name, labels: child.metadata.labels } }),
      spec,
    };
    runSearchObject(
      search,
      { runDir: join(setDir, name), source: `${opts.file} (child ${name})` },
      { ...io, stdout: out, stderr: err, env, interrupt },
      {
        printObject: false,
        onStatus: (s: IACSearchStatus) => {
          statuses.set(name, s as Json);
          changed();
        },
      },
    )
      .catch((e: unknown): SearchRunResult => {
        err.write(`iacnas run: ${e instanceof Error ? e.message : String(e)}\n`);
        return { code: EXIT_BAD_INPUT };
      })
      .then((r) => {
        runners.delete(name);
        results.set(name, r);
        if (!runner.stopping) ended.add(name);
        if (r.code === EXIT_BAD_INPUT) refused = true;
        changed();
      });
  };

  const save = () => {
    writeFileSync(statusFile, stringify({ ...setFromFile, status }));
    writeFileSync(childrenFile, [...children.values()].map((c) => stringify(c)).join('---\n'));
  };

  for (;;) {
    const result = reconcileSet({
      set: { ...set, status },
      children: [...children.values()].map((c) => ({ ...c, status: statuses.get(c.metadata.name) })),
      now: new Date(),
    });
    for (const action of result.actions) {
      if (action.type === 'create') {
        children.set(action.object.metadata.name, { ...action.object, metadata: { ...action.object.metadata, namespace: 'local' } });
      } else if (action.type === 'patch') {
        const child = children.get(action.name);
        if (child) children.set(action.name, applyMergePatch(child, action.patch) as unknown as KubeObject);
      } else if (action.type === 'delete') {
        // A combination left the matrix: the set stops tracking it; its run directory stays.
        children.delete(action.name);
      } else {
        say(`${action.eventType === 'Warning' ? 'warning: ' : ''}${action.message}`);
      }
    }
    status = result.status;
    save();

    // Make the processes follow the children's specs: start what the set released, stop what it suspended.
    for (const child of children.values()) {
      const name = child.metadata.name;
      const phase = statuses.get(name)?.phase as string | undefined;
      const finished = phase !== undefined && FINISHED.has(phase);
      const held = (child.spec as Json).suspend === true || interrupted || refused;
      const runner = runners.get(name);
      if (!held && !finished && !runner && !ended.has(name)) {
        say(`${name}: ${statuses.has(name) ? 'resuming' : 'starting'}`);
        start(child);
      } else if (held && !finished && runner && !runner.stopping) {
        runner.stopping = true;
        if (!interrupted && !refused) say(`${name}: suspending (${child.metadata.annotations?.[HOLD_ANNOTATION] ?? 'suspended'}); its checkpoints stay`);
        runner.stop();
      }
    }
    if (runners.size === 0) break;
    await new Promise<void>((r) => {
      const timer = setTimeout(done, io.pollMs ?? 2000);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        r();
      }
      wake = done;
    });
  }

  const final = status as Partial<IACSearchSetStatus>;
  writeFileSync(join(setDir, 'fleet.json'), `${JSON.stringify(fleetJSON(setName, final, setDir), null, 2)}\n`);
  writeFileSync(join(setDir, 'fleet.md'), fleetMarkdown(setName, final, setDir));
  stdout.write('\n');
  for (const line of fleetTable(final)) stdout.write(`${line}\n`);
  say(`table: ${join(setDir, 'fleet.md')} and fleet.json; each child's run and report.html: ${setDir}/<child>/`);
  if (interrupted) {
    say('suspended; run the same command again to resume (children that succeeded are kept)');
    return 130;
  }
  if (refused) {
    stderr.write(`iacnas run: ${setName} stopped: a child's input was refused (its message is above)\n`);
    return EXIT_BAD_INPUT;
  }
  if (final.phase === 'Succeeded') return 0;
  const ready = final.conditions?.find((c) => c.type === 'Ready');
  stderr.write(`iacnas run: ${setName} ${final.phase === 'Suspended' ? 'suspended' : 'did not succeed'}: ${ready?.message ?? final.phase}\n`);
  return 1;
}
