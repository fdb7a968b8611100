// The operator's Prometheus metrics. The iacsearch_* and iacsearchset_* series are derived
// at scrape time from the IACSearch and IACSearchSet objects in the informer caches (their
// status is what the API server holds), so a restarted or newly elected operator reports
// the same totals; a per-process high-water mark keeps every counter from going back. The
// iac_operator_* series describe this process. docs/metrics.md documents each one.
import path from 'node:path';
import { Counter, Gauge, type GaugeConfiguration, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { LABEL_SEARCH_SET } from '../../../contract/src/index.ts';
import {
  Budget,
  ExternalResult,
  type IACSearchSetSpec,
  IACSearchSetStatus,
  IACSearchSpec,
  IACSearchStatus,
  readFields,
  Results,
  SEARCH_PHASES,
  SET_PHASES,
  STAGES,
} from '../api/index.ts';
import type { KubeObject } from '../k8s/types.ts';

/** Where the derived metrics come from. */
export interface MetricsSource {
  /** IACSearch objects as cached (status included). */
  searches(): readonly KubeObject[];
  /** IACSearchSet objects as cached (status included); absent: no iacsearchset_* series. */
  sets?(): readonly KubeObject[];
  /**
   * Whether this replica exports the iacsearch_* and iacsearchset_* series. Only the
   * leader does, so that a sum over replicas never counts a search or a set twice.
   */
  exportsSearchMetrics(): boolean;
  /** Keys waiting in the workqueue. */
  queueDepth(): number;
}

/** A search as the metrics read it: its identity and its spec and status, parsed leniently. */
export interface SearchView {
  namespace: string;
  name: string;
  /** The set that controls the search (its iac.dev/search-set label), '' when none. */
  set: string;
  spec: Partial<IACSearchSpec>;
  status: IACSearchStatus;
  /** status.results.external, read entry by entry: the first MAX_EXTERNAL_SERIES that fit the schema. */
  external: ExternalResult[];
}

/** One series of a search: its labels beyond namespace and name, and its value. */
export interface Sample {
  labels?: Record<string, string>;
  value: number | undefined;
}

/** A set as the metrics read it: its identity, its budget and its status, parsed leniently. */
export interface SetView {
  namespace: string;
  name: string;
  budget: Partial<IACSearchSetSpec['budget']>;
  status: Partial<IACSearchSetStatus>;
}

/**
 * One metric of a table (iacsearch_* of a search, iacsearchset_* of a set): what it is
 * called and means, and how its series are read from the object. Registration and
 * collection both come from the table; a counter's series never go below what this
 * process already exposed (a per-series high-water mark).
 */
export interface TableMetric<V> {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  /** Labels beyond namespace and name. */
  labelNames: readonly string[];
  samples(v: V): Iterable<Sample>;
}
export type SearchMetric = TableMetric<SearchView>;
export type SetMetric = TableMetric<SetView>;

/** The dataset label: the dataset directory's name, else its format ("phantom"). */
export function datasetLabel(spec: Partial<IACSearchSpec>): string {
  const p = spec.dataset?.path;
  if (p) return path.posix.basename(p.replace(/\/+$/, '')) || p;
  return spec.dataset?.format ?? 'phantom';
}

/** The stability label: the criterion ("jsd"), or "off" for the original full-length search. */
export function stabilityLabel(spec: Partial<IACSearchSpec>): string {
  const st = spec.search?.stability;
  if (st?.enabled === false) return 'off';
  return st?.criterion ?? 'jsd';
}

/** External evaluation datasets exported per search: as many as status.results.external holds. */
export const MAX_EXTERNAL_SERIES = 16;

export const DURATION_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 115200, 230400];

const OUTCOMES = ['Succeeded', 'Failed', 'Disrupted', 'Stopped'] as const;
const one = (value: number | undefined): Sample[] => [{ value }];

/** GPU-seconds of finished attempts by phase and outcome. */
function* gpuSecondsByOutcome(s: SearchView): Iterable<Sample> {
  for (const stage of STAGES) {
    const byOutcome = new Map<string, number>();
    for (const a of s.status.phases?.[stage]?.history ?? []) byOutcome.set(a.outcome, (byOutcome.get(a.outcome) ?? 0) + a.gpuSeconds);
    for (const outcome of OUTCOMES) {
      const value = byOutcome.get(outcome);
      if (value !== undefined) yield { labels: { phase: stage, outcome }, value };
    }
  }
}

/** GPU-seconds of the attempt now running: the phase's total less its finished attempts. */
function* runningGPUSeconds(s: SearchView): Iterable<Sample> {
  for (const stage of STAGES) {
    const r = s.status.phases?.[stage];
    if (!r || r.pod === undefined || r.endTime) continue;
    const finished = (r.history ?? []).reduce((sum, a) => sum + a.gpuSeconds, 0);
    if (r.gpuSeconds > finished) yield { labels: { phase: stage }, value: r.gpuSeconds - finished };
  }
}

/** One series per external dataset, at most MAX_EXTERNAL_SERIES; a name seen twice keeps its first figures. */
function perExternal(read: (e: ExternalResult) => number | undefined) {
  return function* (s: SearchView): Iterable<Sample> {
    const seen = new Set<string>();
    for (const e of s.external) {
      if (!e.name || seen.has(e.name)) continue;
      seen.add(e.name);
      yield { labels: { dataset: e.name }, value: read(e) };
    }
  };
}

/** The iacsearch_* metrics, in the order they are exposed (docs/metrics.md documents each). */
export const SEARCH_METRICS: readonly SearchMetric[] = [
  {
    name: 'iacsearch_info',
    help: "Always 1 for each IACSearch; labels name its dataset, stability criterion and IACSearchSet ('' when none).",
    type: 'gauge',
    labelNames: ['dataset', 'stability', 'set'],
    samples: (s) => [{ labels: { dataset: datasetLabel(s.spec), stability: stabilityLabel(s.spec), set: s.set }, value: 1 }],
  },
  {
    name: 'iacsearch_phase',
    help: 'Phase of each IACSearch: 1 for the current phase, 0 for the others.',
    type: 'gauge',
    labelNames: ['phase'],
    samples: (s) => SEARCH_PHASES.map((p) => ({ labels: { phase: p }, value: p === (s.status.phase ?? 'Pending') ? 1 : 0 })),
  },
  {
    name: 'iacsearch_gpu_seconds_total',
    help: 'GPU-seconds of finished phase attempts, by trainer phase and attempt outcome.',
    type: 'counter',
    labelNames: ['phase', 'outcome'],
    samples: gpuSecondsByOutcome,
  },
  {
    name: 'iacsearch_running_gpu_seconds',
    help: 'GPU-seconds of the attempt now running (moves to iacsearch_gpu_seconds_total when it ends).',
    type: 'gauge',
    labelNames: ['phase'],
    samples: runningGPUSeconds,
  },
  {
    name: 'iacsearch_estimated_cost_usd_total',
    help: 'Estimated cost in US dollars (GPU-hours times spec.cost.gpuHourlyUSD), running attempt included.',
    type: 'counter',
    labelNames: [],
    samples: (s) => one(s.status.cost?.estimatedUSD),
  },
  {
    name: 'iacsearch_saved_gpu_seconds_total',
    help: 'GPU-seconds the stability criterion saved against running every search epoch.',
    type: 'counter',
    labelNames: [],
    samples: (s) => one(s.status.cost?.savedGPUSeconds),
  },
  {
    name: 'iacsearch_search_epochs_total',
    help: 'Cell-search epochs finished.',
    type: 'counter',
    labelNames: [],
    samples: (s) => one(Math.max(s.status.searchResult?.epochs ?? 0, s.status.progress?.phase === 'search' ? (s.status.progress.epoch ?? 0) : 0)),
  },
  {
    name: 'iacsearch_active_operations',
    help: 'Candidate operations still computed, over all cell edges.',
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.status.progress?.activeOperations),
  },
  {
    name: 'iacsearch_stable_edges',
    help: 'Cell edges whose operation distribution is stable (JS divergence under the threshold).',
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.status.progress?.stableEdges),
  },
  {
    name: 'iacsearch_budget_gpu_seconds',
    help: 'GPU-second budget of the search (spec.budget.maxGPUHours in seconds); absent when unset.',
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.spec.budget?.maxGPUHours === undefined ? undefined : s.spec.budget.maxGPUHours * 3600),
  },
  {
    name: 'iacsearch_budget_usd',
    help: 'Cost budget of the search in US dollars (spec.budget.maxCostUSD); absent when unset.',
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.spec.budget?.maxCostUSD),
  },
  {
    name: 'iacsearch_test_dice',
    help: "Mean foreground Dice of the cell model on the test split of the search's dataset (0-1), once the evaluate phase succeeded.",
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.status.results?.meanDice),
  },
  {
    name: 'iacsearch_test_hd95_mm',
    help: 'Mean 95th-percentile Hausdorff distance of the cell model on the test split, in mm.',
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.status.results?.hd95),
  },
  {
    name: 'iacsearch_baseline_test_dice',
    help: 'Mean test Dice of the U-Net without cells trained with the same budget (spec.evaluate.baseline).',
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.status.results?.baselineMeanDice),
  },
  {
    name: 'iacsearch_dice_gain',
    help: "Gain of the cells over the U-Net trained with the same budget: test Dice minus the baseline's.",
    type: 'gauge',
    labelNames: [],
    samples: (s) => one(s.status.results?.diceGain),
  },
  {
    name: 'iacsearch_external_dice',
    help: 'Mean foreground Dice of the cell model on an external evaluation dataset (spec.evaluate.external), all its cases.',
    type: 'gauge',
    labelNames: ['dataset'],
    samples: perExternal((e) => e.meanDice),
  },
  {
    name: 'iacsearch_external_hd95_mm',
    help: 'Mean 95th-percentile Hausdorff distance of the cell model on an external evaluation dataset, in mm.',
    type: 'gauge',
    labelNames: ['dataset'],
    samples: perExternal((e) => e.hd95),
  },
  {
    name: 'iacsearch_external_cases',
    help: 'Cases of an external evaluation dataset the cell model was evaluated on.',
    type: 'gauge',
    labelNames: ['dataset'],
    samples: perExternal((e) => e.cases),
  },
];

/** Children of a set by state: the status counts, which partition the children. */
const CHILD_STATES = [
  ['Running', 'running'],
  ['Queued', 'queued'],
  ['Suspended', 'suspended'],
  ['Succeeded', 'succeeded'],
  ['Failed', 'failed'],
] as const;

const hoursToSeconds = (h: number | undefined) => (h === undefined ? undefined : h * 3600);

/** The iacsearchset_* metrics, in the order they are exposed (docs/metrics.md documents each). */
export const SET_METRICS: readonly SetMetric[] = [
  {
    name: 'iacsearchset_info',
    help: 'Always 1 for each IACSearchSet.',
    type: 'gauge',
    labelNames: [],
    samples: () => one(1),
  },
  {
    name: 'iacsearchset_phase',
    help: 'Phase of each IACSearchSet: 1 for the current phase, 0 for the others.',
    type: 'gauge',
    labelNames: ['phase'],
    samples: (v) => SET_PHASES.map((p) => ({ labels: { phase: p }, value: p === (v.status.phase ?? 'Pending') ? 1 : 0 })),
  },
  {
    name: 'iacsearchset_children',
    help: 'Children of each IACSearchSet by state: Running, Queued (maxParallel), Suspended (budget or by hand), Succeeded, Failed.',
    type: 'gauge',
    labelNames: ['phase'],
    samples: (v) => (v.status.children === undefined ? [] : CHILD_STATES.map(([phase, field]) => ({ labels: { phase }, value: v.status[field] ?? 0 }))),
  },
  {
    name: 'iacsearchset_gpu_seconds_total',
    help: "GPU-seconds of the set's children (the sum of their status.cost), running attempts included.",
    type: 'counter',
    labelNames: [],
    samples: (v) => one(hoursToSeconds(v.status.gpuHours)),
  },
  {
    name: 'iacsearchset_estimated_cost_usd_total',
    help: "Estimated cost in US dollars of the set's children (the sum of their status.cost.estimatedUSD).",
    type: 'counter',
    labelNames: [],
    samples: (v) => one(v.status.estimatedUSD),
  },
  {
    name: 'iacsearchset_saved_gpu_seconds_total',
    help: "GPU-seconds the set's children saved by ending their searches early on stability.",
    type: 'counter',
    labelNames: [],
    samples: (v) => one(hoursToSeconds(v.status.savedGPUHours)),
  },
  {
    name: 'iacsearchset_best_test_dice',
    help: 'Test mean Dice of the best succeeded child of the set (status.bestChild); absent before a child succeeded.',
    type: 'gauge',
    labelNames: [],
    samples: (v) => one(v.status.bestChild?.testDice),
  },
  {
    name: 'iacsearchset_budget_gpu_seconds',
    help: 'GPU-second budget of the set across its children (spec.budget.maxGPUHours in seconds); absent when unset.',
    type: 'gauge',
    labelNames: [],
    samples: (v) => one(hoursToSeconds(v.budget.maxGPUHours)),
  },
  {
    name: 'iacsearchset_budget_usd',
    help: 'Cost budget of the set across its children in US dollars (spec.budget.maxCostUSD); absent when unset.',
    type: 'gauge',
    labelNames: [],
    samples: (v) => one(v.budget.maxCostUSD),
  },
];

/** A Gauge exposed as a counter: collect() sets each series to its (monotonic) value, no reset and re-increment. */
class SetCounter extends Gauge<string> {
  constructor(config: GaugeConfiguration<string>) {
    super(config);
    (this as unknown as { type: string }).type = 'counter';
  }
}

/** A search's spec and status through the api's schemas (a field that does not fit is left out). */
export function viewOf(search: KubeObject): SearchView {
  const status = readFields(IACSearchStatus, search.status);
  const rawResults = (search.status as { results?: { external?: unknown } } | undefined)?.results;
  // status.results field by field: test figures stay when an external entry does not fit.
  if (status.results === undefined && rawResults !== undefined) status.results = readFields(Results, rawResults);
  const rawExternal = Array.isArray(rawResults?.external) ? (rawResults.external as unknown[]) : [];
  return {
    namespace: search.metadata.namespace ?? '',
    name: search.metadata.name,
    set: search.metadata.labels?.[LABEL_SEARCH_SET] ?? '',
    spec: readFields(IACSearchSpec, search.spec),
    status,
    external: rawExternal.slice(0, MAX_EXTERNAL_SERIES).flatMap((e) => {
      const entry = ExternalResult.safeParse(e);
      return entry.success ? [entry.data] : [];
    }),
  };
}

/** A set's budget and status through the api's schemas (a field that does not fit is left out). */
export function setViewOf(set: KubeObject): SetView {
  const budget = (set.spec as { budget?: unknown } | undefined)?.budget;
  return {
    namespace: set.metadata.namespace ?? '',
    name: set.metadata.name,
    budget: readFields(Budget, budget),
    status: readFields(IACSearchSetStatus, set.status),
  };
}

/** The objects of one table as of the current scrape, and the high-water marks of its counters. */
class TableState<V extends { namespace: string; name: string }> {
  views: { uid: string; view: V }[] = [];
  /** Highest value exposed per counter series (keyed with the object's uid). */
  readonly highWater = new Map<string, number>();

  /** Takes the objects of this scrape and forgets the marks of deleted ones. */
  take(objects: readonly KubeObject[], view: (o: KubeObject) => V): Set<string> {
    this.views = objects.map((o) => ({ uid: o.metadata.uid ?? `${o.metadata.namespace ?? ''}/${o.metadata.name}`, view: view(o) }));
    const uids = new Set(this.views.map((v) => v.uid));
    for (const k of [...this.highWater.keys()]) if (!uids.has(k.slice(0, k.indexOf('\u0000')))) this.highWater.delete(k);
    return uids;
  }

  /** Sets the series of one table metric from the snapshot. */
  fill(metric: Gauge<string>, def: TableMetric<V>): void {
    metric.reset();
    for (const { uid, view } of this.views) {
      for (const sample of def.samples(view)) {
        if (sample.value === undefined || !Number.isFinite(sample.value)) continue;
        const labels = { namespace: view.namespace, name: view.name, ...sample.labels };
        let value = sample.value;
        if (def.type === 'counter') {
          // Never below what this process already exposed for the series.
          const key = [uid, def.name, ...def.labelNames.map((l) => sample.labels?.[l] ?? '')].join('\u0000');
          value = Math.max(this.highWater.get(key) ?? 0, value);
          this.highWater.set(key, value);
        }
        metric.set(labels, value);
      }
    }
  }
}

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal: Counter<'result'>;
  readonly reconcileDuration: Histogram<'result'>;
  readonly workqueueRetries: Counter;
  readonly informerRestarts: Counter<'resource'>;
  readonly leader: Gauge;
  readonly progressEvents: Counter<'code'>;
  private readonly phaseDuration: Histogram<'phase'>;
  private readonly source: MetricsSource;
  /** The searches of the current scrape and their counters' high-water marks. */
  private readonly searchTable = new TableState<SearchView>();
  /** The sets of the current scrape and their counters' high-water marks. */
  private readonly setTable = new TableState<SetView>();
  /** Completed phases already observed in the duration histogram (uid/stage). */
  private readonly observedPhases = new Set<string>();

  constructor(source: MetricsSource, opts: { processMetrics?: boolean } = {}) {
    this.source = source;
    const r = this.registry;
    if (opts.processMetrics) collectDefaultMetrics({ register: r });

    this.reconcileTotal = new Counter({
      name: 'iac_operator_reconcile_total',
      help: 'Reconciles by result: success, requeue (requeueAfter set), conflict (stale cache, retried), error (retried with backoff).',
      labelNames: ['result'],
      registers: [r],
    });
    this.reconcileDuration = new Histogram({
      name: 'iac_operator_reconcile_duration_seconds',
      help: 'Time of one reconcile, reading the cache through writing the status, by result.',
      labelNames: ['result'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    });
    new Gauge({
      name: 'iac_operator_workqueue_depth',
      help: 'Keys waiting for a worker.',
      registers: [r],
      collect() {
        this.set(source.queueDepth());
      },
    });
    this.workqueueRetries = new Counter({
      name: 'iac_operator_workqueue_retries_total',
      help: 'Keys put back in the workqueue with backoff after a failed reconcile.',
      registers: [r],
    });
    this.informerRestarts = new Counter({
      name: 'iac_operator_informer_restarts_total',
      help: 'Informer restarts after a list or watch error (410 Gone relists are not counted).',
      labelNames: ['resource'],
      registers: [r],
    });
    this.leader = new Gauge({ name: 'iac_operator_leader', help: '1 when this replica holds the leader lease.', registers: [r] });
    this.progressEvents = new Counter({
      name: 'iac_operator_progress_requests_total',
      help: 'POST /v1/progress requests by HTTP status code.',
      labelNames: ['code'],
      registers: [r],
    });

    // The first metric of each table runs its collect() first on every scrape and takes one
    // snapshot of the cache that every metric of the table then reads.
    const register = <V extends { namespace: string; name: string }>(defs: readonly TableMetric<V>[], table: TableState<V>, snapshot: () => void) =>
      defs.forEach((def, i) => {
        const config: GaugeConfiguration<string> = {
          name: def.name,
          help: def.help,
          labelNames: ['namespace', 'name', ...def.labelNames],
          registers: [r],
          collect: () => {
            if (i === 0) snapshot();
            table.fill(metric, def);
          },
        };
        const metric = def.type === 'counter' ? new SetCounter(config) : new Gauge(config);
      });
    register(SEARCH_METRICS, this.searchTable, () => this.snapshot());
    this.phaseDuration = new Histogram({
      name: 'iacsearch_phase_duration_seconds',
      help: 'Wall time of completed phases, first attempt created to success, by trainer phase.',
      labelNames: ['phase'],
      buckets: DURATION_BUCKETS,
      registers: [r],
    });
    register(SET_METRICS, this.setTable, () => {
      if (this.source.exportsSearchMetrics()) this.setTable.take(this.source.sets?.() ?? [], setViewOf);
      else this.setTable.views = [];
    });
  }

  setLeader(leading: boolean): void {
    this.leader.set(leading ? 1 : 0);
  }

  async metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** Reads the cached searches once per scrape; observes the phases completed since the last one. */
  private snapshot(): void {
    if (!this.source.exportsSearchMetrics()) {
      this.searchTable.views = [];
      return;
    }
    const uids = this.searchTable.take(this.source.searches(), viewOf);
    for (const { uid, view } of this.searchTable.views) {
      for (const stage of STAGES) {
        const r = view.status.phases?.[stage];
        const start = Date.parse(r?.startTime ?? '');
        const end = Date.parse(r?.endTime ?? '');
        const key = `${uid}/${stage}`;
        if (r?.succeeded === true && Number.isFinite(start) && Number.isFinite(end) && !this.observedPhases.has(key)) {
          this.observedPhases.add(key);
          this.phaseDuration.observe({ phase: stage }, Math.max(0, (end - start) / 1000));
        }
      }
    }
    // Forget the observed phases of deleted searches.
    for (const k of [...this.observedPhases]) if (!uids.has(k.slice(0, k.lastIndexOf('/')))) this.observedPhases.delete(k);
  }
}
