// The IACSearchSet state machine: a pure function from the set as stored, the IACSearches
// it owns and the clock to actions (create, patch or delete a child, events) and the set's
// new status. Level-based like the IACSearch reconcile: the same input gives the same
// output, so a pass repeated after a restart or a lagging cache creates, releases or
// suspends nothing twice (children are released and suspended in matrix order).
import { LABEL_SEARCH_SET } from '../../../contract/src/index.ts';
import { formatIssues } from '../../../trainer/src/config/index.ts';
import {
  API_VERSION,
  bracketIndexes,
  type ChildRow,
  type Condition,
  IACSearchSet,
  IACSearchSetStatus,
  KIND,
  MAX_CHILDREN,
  parseIACSearch,
  readFields,
} from '../api/index.ts';
import { controllerReference } from '../reconcile/children.ts';
import { getCondition, setCondition } from '../reconcile/conditions.ts';
import type { KubeObject } from '../reconcile/types.ts';
import { childName, childSpec, combinationCount, combinationKey, combinationLabel, combinations, type CombinationLabel, shortHash } from './matrix.ts';

export { childName, childSpec, combinationKey, combinations, deepMerge, shortHash } from './matrix.ts';

/** The combination a child was created for (JSON of its dataset and search names and its seed). */
export const COMBINATION_ANNOTATION = 'iac.dev/search-set-combination';
/** Hash of the spec a child was created with: a different one now marks it outdated. */
export const SPEC_HASH_ANNOTATION = 'iac.dev/search-set-spec-hash';
/** The set holds the child suspended: Queued (maxParallel) or Budget. Absent: the set does not hold it. */
export const HOLD_ANNOTATION = 'iac.dev/search-set-hold';

export interface SetReconcileInput {
  /** The IACSearchSet as read (validated here). */
  set: KubeObject;
  /** IACSearches labelled with the set's name in its namespace (those another owner controls are left out here). */
  children: KubeObject[];
  now: Date;
}

export type SetAction =
  | { type: 'create'; object: KubeObject }
  | { type: 'patch'; name: string; patch: Record<string, unknown> }
  | { type: 'delete'; name: string }
  | { type: 'event'; eventType: 'Normal' | 'Warning'; reason: string; message: string };

export interface SetReconcileResult {
  actions: SetAction[];
  status: Record<string, unknown>;
}

type Status = Partial<IACSearchSetStatus>;
type Hold = 'Queued' | 'Budget';
type Json = Record<string, unknown>;

interface ChildView {
  name: string;
  object?: KubeObject;
  phase?: string;
  suspend: boolean;
  hold?: Hold;
  finished: boolean;
  /** Not finished and not suspended: it runs, or is about to. */
  active: boolean;
  label: CombinationLabel;
  specHash?: string;
}

const FINISHED = new Set(['Succeeded', 'Failed']);

function view(obj: KubeObject): ChildView {
  const status = (obj.status ?? {}) as Json;
  const spec = (obj.spec ?? {}) as Json;
  const phase = typeof status.phase === 'string' ? status.phase : undefined;
  const suspend = spec.suspend === true;
  const holdValue = obj.metadata.annotations?.[HOLD_ANNOTATION];
  const hold = suspend && (holdValue === 'Queued' || holdValue === 'Budget') ? holdValue : undefined;
  const finished = phase !== undefined && FINISHED.has(phase);
  let label: CombinationLabel = {};
  try {
    label = JSON.parse(obj.metadata.annotations?.[COMBINATION_ANNOTATION] ?? '{}') as CombinationLabel;
  } catch {
    // a damaged annotation only costs the table its dataset and seed columns
  }
  return {
    name: obj.metadata.name,
    object: obj,
    phase,
    suspend,
    hold,
    finished,
    active: !finished && !suspend,
    label,
    specHash: obj.metadata.annotations?.[SPEC_HASH_ANNOTATION],
  };
}

const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const round = (v: number, digits: number) => Number(v.toFixed(digits));

function costOf(obj: KubeObject | undefined): { gpuSeconds: number; usd: number; saved: number } {
  const cost = ((obj?.status ?? {}) as Json).cost as Json | undefined;
  return { gpuSeconds: num(cost?.gpuSeconds) ?? 0, usd: num(cost?.estimatedUSD) ?? 0, saved: num(cost?.savedGPUSeconds) ?? 0 };
}

function row(v: ChildView, desiredHash: string | undefined): ChildRow {
  const status = (v.object?.status ?? {}) as Json;
  const cost = status.cost as Json | undefined;
  const progress = status.progress as Json | undefined;
  const searchResult = status.searchResult as Json | undefined;
  const results = status.results as Json | undefined;
  const r: ChildRow = { name: v.name };
  if (v.label.dataset !== undefined) r.dataset = v.label.dataset;
  if (v.label.seed !== undefined) r.seed = v.label.seed;
  if (v.label.search !== undefined) r.search = v.label.search;
  r.phase = v.phase ?? 'Pending';
  if (v.hold) r.held = v.hold;
  const epochs = num(searchResult?.epochs) ?? (progress?.phase === 'search' ? num(progress.epoch) : undefined);
  if (epochs !== undefined) r.searchEpochs = epochs;
  if (num(cost?.speedup) !== undefined) r.speedup = num(cost?.speedup);
  if (num(results?.meanDice) !== undefined) r.testDice = num(results?.meanDice);
  if (num(cost?.gpuHours) !== undefined) r.gpuHours = num(cost?.gpuHours);
  if (num(cost?.estimatedUSD) !== undefined) r.costUSD = num(cost?.estimatedUSD);
  if (desiredHash !== undefined && v.specHash !== undefined && v.specHash !== desiredHash) r.outdated = true;
  return r;
}

function conditions(
  status: Status,
  generation: number | undefined,
  now: Date,
  set: Record<'Ready' | 'Reconciling' | 'Stalled' | 'BudgetExceeded', [boolean, string, string] | undefined>,
) {
  let out: Condition[] = status.conditions ?? [];
  for (const [type, value] of Object.entries(set)) {
    if (!value) continue;
    const [on, reason, message] = value;
    out = setCondition(out, { type, status: on ? 'True' : 'False', reason, message }, now, generation);
  }
  return out;
}

/** Why the set's spec cannot make children: every bad field, one a line; undefined when it can. */
export function invalidSetSpec(set: KubeObject): string | undefined {
  const parsed = IACSearchSet.safeParse(set);
  if (!parsed.success) return formatIssues(parsed.error).split('\n').map(bracketIndexes).join('\n');
  const spec = set.spec as Json;
  const templateQueue = (spec.template as Json | undefined)?.queueName;
  if (spec.queueName !== undefined && templateQueue !== undefined) {
    return `spec.queueName: ${spec.queueName}, and spec.template.queueName: ${templateQueue}; give the children's queue once (spec.queueName, or the template's)`;
  }
  const n = combinationCount(spec.matrix as Json | undefined);
  if (n > MAX_CHILDREN) {
    return `spec.matrix: ${n} combinations, over the limit of ${MAX_CHILDREN} children per set; split the fleet into several sets or shorten an axis`;
  }
  const problems: string[] = [];
  for (const c of combinations(spec.matrix as Json | undefined)) {
    const name = childName(set.metadata.name, c);
    const child = parseIACSearch({
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name },
      spec: childSpec(spec.template as Json, c, spec.queueName as string | undefined),
    });
    if (!child.ok) problems.push(...child.message.split('\n').map((line) => `child ${combinationKey(c)} (spec.template with its matrix items): ${line}`));
  }
  return problems.length ? problems.join('\n') : undefined;
}

export function reconcileSet(input: SetReconcileInput): SetReconcileResult {
  const { set, now } = input;
  const status: Status = readFields(IACSearchSetStatus, set.status);
  const generation = set.metadata.generation;
  const previous = structuredClone(status);
  status.observedGeneration = generation;
  const actions: SetAction[] = [];
  const event = (eventType: 'Normal' | 'Warning', reason: string, message: string) => actions.push({ type: 'event', eventType, reason, message });
  if (set.metadata.deletionTimestamp) return { actions, status: plain(previous) };

  const invalid = invalidSetSpec(set);
  if (invalid !== undefined) {
    const was = getCondition(status.conditions, 'Stalled');
    if (was?.status !== 'True' || was.reason !== 'InvalidSpec' || was.message !== invalid) event('Warning', 'InvalidSpec', invalid);
    status.phase ??= 'Pending';
    status.conditions = conditions(status, generation, now, {
      Ready: [false, 'InvalidSpec', invalid],
      Reconciling: [false, 'InvalidSpec', invalid],
      Stalled: [true, 'InvalidSpec', `the spec is invalid; fix these fields and apply again:\n${invalid}`.slice(0, 32768)],
      BudgetExceeded: undefined,
    });
    return { actions, status: plain(status) };
  }
  const spec = IACSearchSet.parse(set).spec;
  const rawSpec = set.spec as Json;
  const template = rawSpec.template as Json;
  const setName = set.metadata.name;
  const namespace = set.metadata.namespace;

  // What the matrix asks for, in matrix order.
  const desired = combinations(rawSpec.matrix as Json | undefined).map((c) => {
    const { suspend: _suspend, ...spec } = childSpec(template, c, rawSpec.queueName as string | undefined);
    return { name: childName(setName, c), combination: c, spec, hash: shortHash(spec) };
  });
  const desiredNames = new Set(desired.map((d) => d.name));
  const existing = new Map(input.children.map((o) => [o.metadata.name, view(o)]));

  // Budget: what every child so far has spent, together.
  let gpuSeconds = 0;
  let usd = 0;
  let saved = 0;
  for (const child of input.children) {
    const c = costOf(child);
    gpuSeconds += c.gpuSeconds;
    usd += c.usd;
    saved += c.saved;
  }
  const gpuHours = gpuSeconds / 3600;
  const over: string[] = [];
  if (spec.budget.maxGPUHours !== undefined && gpuHours >= spec.budget.maxGPUHours) {
    over.push(`the children used ${round(gpuHours, 4)} GPU-hours of spec.budget.maxGPUHours ${spec.budget.maxGPUHours}`);
  }
  if (spec.budget.maxCostUSD !== undefined && usd >= spec.budget.maxCostUSD) {
    over.push(`the children cost an estimated ${round(usd, 2)} USD of spec.budget.maxCostUSD ${spec.budget.maxCostUSD}`);
  }
  const budgetExceeded = over.length > 0;
  const budgetMessage = budgetExceeded ? over.join('; ') : 'within spec.budget';
  const stalled = getCondition(status.conditions, 'Stalled');
  // A set failed by its budget stays failed: raising the budget does not undo it.
  const failedByBudget = (stalled?.status === 'True' && stalled.reason === 'BudgetExceeded') || (budgetExceeded && spec.budget.action === 'Fail');
  if (budgetExceeded && getCondition(status.conditions, 'BudgetExceeded')?.status !== 'True') {
    event(
      'Warning',
      'BudgetExceeded',
      `${budgetMessage}; ${spec.budget.action === 'Fail' ? 'the set fails and its children are suspended' : 'running children are suspended until the budget is raised'}`,
    );
  }

  // Children whose combination left the matrix.
  const removed = [...existing.values()].filter((v) => !desiredNames.has(v.name));
  if (removed.length) {
    const names = removed.map((v) => v.name).join(', ');
    for (const v of removed) {
      if (spec.removedChildren === 'Delete') {
        actions.push({ type: 'delete', name: v.name });
      } else {
        const refs = (v.object?.metadata.ownerReferences ?? []).filter((r) => !(r.controller && r.kind === set.kind && r.name === setName));
        actions.push({
          type: 'patch',
          name: v.name,
          patch: { metadata: { labels: { [LABEL_SEARCH_SET]: null }, annotations: { [HOLD_ANNOTATION]: null }, ownerReferences: refs } },
        });
      }
    }
    if (spec.removedChildren === 'Delete')
      event('Normal', 'ChildrenDeleted', `deleted ${names}: their combinations left spec.matrix (spec.removedChildren Delete)`);
    else
      event(
        'Normal',
        'ChildrenOrphaned',
        `orphaned ${names}: their combinations left spec.matrix; they stay without the set's label and owner (spec.removedChildren Orphan)`,
      );
  }

  // Create what is missing, release held children while there is room, suspend on the budget.
  const stopAll = budgetExceeded || failedByBudget;
  let room = stopAll ? 0 : (spec.maxParallel ?? Number.POSITIVE_INFINITY) - desired.filter((d) => existing.get(d.name)?.active).length;
  const views: ChildView[] = [];
  for (const d of desired) {
    const v = existing.get(d.name);
    if (!v) {
      if (failedByBudget) continue; // a failed set starts nothing new
      const runs = room > 0;
      if (runs) room--;
      const hold: Hold | undefined = runs ? undefined : stopAll ? 'Budget' : 'Queued';
      const annotations: Record<string, string> = { [COMBINATION_ANNOTATION]: JSON.stringify(combinationLabel(d.combination)), [SPEC_HASH_ANNOTATION]: d.hash };
      if (hold) annotations[HOLD_ANNOTATION] = hold;
      actions.push({
        type: 'create',
        object: {
          apiVersion: API_VERSION,
          kind: KIND,
          metadata: { name: d.name, namespace, labels: { [LABEL_SEARCH_SET]: setName }, annotations, ownerReferences: [controllerReference(set)] },
          spec: { ...d.spec, suspend: !runs },
        },
      });
      views.push({ name: d.name, suspend: !runs, hold, finished: false, active: runs, label: combinationLabel(d.combination), specHash: d.hash });
      continue;
    }
    if (stopAll && v.active) {
      actions.push({ type: 'patch', name: v.name, patch: { metadata: { annotations: { [HOLD_ANNOTATION]: 'Budget' } }, spec: { suspend: true } } });
      views.push({ ...v, suspend: true, hold: 'Budget', active: false });
    } else if (!stopAll && v.hold && !v.finished && room > 0) {
      room--;
      actions.push({ type: 'patch', name: v.name, patch: { metadata: { annotations: { [HOLD_ANNOTATION]: null } }, spec: { suspend: false } } });
      views.push({ ...v, suspend: false, hold: undefined, active: true });
    } else {
      views.push(v);
    }
  }

  // The status: the table in matrix order, the counts, the sums and the best child.
  const hashOf = new Map(desired.map((d) => [d.name, d.hash]));
  const table = views.map((v) => row(v, hashOf.get(v.name)));
  const previousPhase = new Map((previous.table ?? []).map((r) => [r.name, r.phase]));
  for (const r of table) {
    if (r.phase === 'Failed' && previousPhase.get(r.name) !== 'Failed')
      event('Warning', 'ChildFailed', `${r.name} failed; see kubectl describe iacsearch ${r.name}`);
  }
  const count = (p: (v: ChildView) => boolean) => views.filter(p).length;
  const succeeded = count((v) => v.phase === 'Succeeded');
  const failed = count((v) => v.phase === 'Failed');
  const running = count((v) => v.active);
  const queued = count((v) => !v.finished && v.hold === 'Queued');
  const suspended = count((v) => !v.finished && v.suspend && v.hold !== 'Queued');
  Object.assign(status, {
    ready: `${succeeded}/${views.length}`,
    children: views.length,
    running,
    queued,
    suspended,
    succeeded,
    failed,
    gpuHours: round(gpuHours, 4),
    estimatedUSD: round(usd, 4),
    savedGPUHours: round(saved / 3600, 4),
    table,
  });
  let best: ChildRow | undefined;
  for (const r of table) if (r.phase === 'Succeeded' && r.testDice !== undefined && (!best || r.testDice > best.testDice!)) best = r;
  status.bestChild = best ? { name: best.name, testDice: best.testDice! } : undefined;

  const allFinished = views.length > 0 && succeeded + failed === views.length;
  const summary = `${succeeded} of ${views.length} succeeded, ${running} running, ${queued} queued, ${suspended} suspended, ${failed} failed`;
  const budgetCondition: [boolean, string, string] = budgetExceeded ? [true, 'BudgetExceeded', budgetMessage] : [false, 'WithinBudget', budgetMessage];
  if (failedByBudget) {
    const message = `${budgetExceeded ? budgetMessage : (stalled?.message ?? 'the budget was exceeded')} (spec.budget.action Fail); its children are suspended and keep their records`;
    status.phase = 'Failed';
    status.conditions = conditions(status, generation, now, {
      Ready: [false, 'BudgetExceeded', message],
      Reconciling: [false, 'BudgetExceeded', message],
      Stalled: [true, 'BudgetExceeded', stalled?.reason === 'BudgetExceeded' ? stalled.message : message],
      BudgetExceeded: budgetCondition,
    });
  } else if (allFinished) {
    status.phase = failed ? 'Failed' : 'Succeeded';
    const best = status.bestChild ? `; best test Dice ${status.bestChild.testDice.toFixed(4)} (${status.bestChild.name})` : '';
    status.conditions = conditions(status, generation, now, {
      Ready: failed ? [false, 'ChildFailed', summary] : [true, 'Succeeded', `${summary}${best}`],
      Reconciling: [false, failed ? 'ChildFailed' : 'Succeeded', summary],
      Stalled: failed ? [true, 'ChildFailed', summary] : [false, 'Succeeded', summary],
      BudgetExceeded: budgetCondition,
    });
  } else {
    status.phase = budgetExceeded ? 'Suspended' : running > 0 ? 'Running' : 'Pending';
    const reason = budgetExceeded ? 'BudgetExceeded' : 'ChildrenRunning';
    const message = budgetExceeded ? `${budgetMessage}; raise spec.budget to resume (${summary})` : summary;
    status.conditions = conditions(status, generation, now, {
      Ready: [false, reason, message],
      Reconciling: [!budgetExceeded, reason, message],
      Stalled: [false, reason, message],
      BudgetExceeded: budgetCondition,
    });
  }
  return { actions, status: plain(status) };
}

function plain(status: Status): Record<string, unknown> {
  return JSON.parse(JSON.stringify(status)) as Record<string, unknown>;
}
