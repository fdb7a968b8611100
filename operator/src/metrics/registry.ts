// The operator's Prometheus metrics. The iacsearch_* series are derived at scrape time
// from the IACSearch objects in the informer cache (their status is what the API server
// holds), so a restarted or newly elected operator reports the same totals; a
// per-process high-water mark keeps every counter from going back. The iac_operator_*
// series describe this process. docs/metrics.md documents each one.
import path from 'node:path';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SEARCH_PHASES, STAGES } from '../api/status.ts';
import type { KubeObject } from '../k8s/types.ts';

/** Where the derived metrics come from. */
export interface MetricsSource {
  /** IACSearch objects as cached (status included). */
  searches(): readonly KubeObject[];
  /**
   * Whether this replica exports the iacsearch_* series. Only the leader does, so that
   * a sum over replicas never counts a search twice.
   */
  exportsSearchMetrics(): boolean;
  /** Keys waiting in the workqueue. */
  queueDepth(): number;
}

const OUTCOMES = ['Succeeded', 'Failed', 'Disrupted', 'Stopped'] as const;

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The dataset label: the dataset directory's name, else its format ("phantom"). */
export function datasetLabel(spec: Obj): string {
  const ds = obj(spec.dataset);
  const p = str(ds.path);
  if (p) return path.posix.basename(p.replace(/\/+$/, '')) || p;
  return str(ds.format) ?? 'phantom';
}

/** The stability label: the criterion ("jsd"), or "off" for the original full-length search. */
export function stabilityLabel(spec: Obj): string {
  const st = obj(obj(spec.search).stability);
  if (st.enabled === false) return 'off';
  return str(st.criterion) ?? 'jsd';
}

/** External evaluation datasets exported per search: as many as status.results.external holds. */
export const MAX_EXTERNAL_SERIES = 16;

export const DURATION_BUCKETS = [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 57600, 115200, 230400];

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal: Counter<'result'>;
  readonly reconcileDuration: Histogram<'result'>;
  readonly workqueueRetries: Counter;
  readonly informerRestarts: Counter<'resource'>;
  readonly leader: Gauge;
  readonly progressEvents: Counter<'code'>;
  private readonly source: MetricsSource;
  /** Highest value exposed per counter series (keyed with the object's uid). */
  private readonly highWater = new Map<string, number>();
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

    const self = this;
    const info = new Gauge({
      name: 'iacsearch_info',
      help: 'Always 1 for each IACSearch; labels name its dataset and stability criterion.',
      labelNames: ['namespace', 'name', 'dataset', 'stability'],
      registers: [r],
    });
    const phase = new Gauge({
      name: 'iacsearch_phase',
      help: 'Phase of each IACSearch: 1 for the current phase, 0 for the others.',
      labelNames: ['namespace', 'name', 'phase'],
      registers: [r],
    });
    const gpuSeconds = new Counter({
      name: 'iacsearch_gpu_seconds_total',
      help: 'GPU-seconds of finished phase attempts, by trainer phase and attempt outcome.',
      labelNames: ['namespace', 'name', 'phase', 'outcome'],
      registers: [r],
    });
    const runningGpuSeconds = new Gauge({
      name: 'iacsearch_running_gpu_seconds',
      help: 'GPU-seconds of the attempt now running (moves to iacsearch_gpu_seconds_total when it ends).',
      labelNames: ['namespace', 'name', 'phase'],
      registers: [r],
    });
    const cost = new Counter({
      name: 'iacsearch_estimated_cost_usd_total',
      help: 'Estimated cost in US dollars (GPU-hours times spec.cost.gpuHourlyUSD), running attempt included.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const saved = new Counter({
      name: 'iacsearch_saved_gpu_seconds_total',
      help: 'GPU-seconds the stability criterion saved against running every search epoch.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const epochs = new Counter({
      name: 'iacsearch_search_epochs_total',
      help: 'Cell-search epochs finished.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const activeOps = new Gauge({
      name: 'iacsearch_active_operations',
      help: 'Candidate operations still computed, over all cell edges.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const stableEdges = new Gauge({
      name: 'iacsearch_stable_edges',
      help: 'Cell edges whose operation distribution is stable (JS divergence under the threshold).',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const budgetGpuSeconds = new Gauge({
      name: 'iacsearch_budget_gpu_seconds',
      help: 'GPU-second budget of the search (spec.budget.maxGPUHours in seconds); absent when unset.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const budgetUSD = new Gauge({
      name: 'iacsearch_budget_usd',
      help: 'Cost budget of the search in US dollars (spec.budget.maxCostUSD); absent when unset.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const testDice = new Gauge({
      name: 'iacsearch_test_dice',
      help: 'Mean foreground Dice of the cell model on the test split of the search\'s dataset (0-1), once the evaluate phase succeeded.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const testHD95 = new Gauge({
      name: 'iacsearch_test_hd95_mm',
      help: 'Mean 95th-percentile Hausdorff distance of the cell model on the test split, in mm.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const baselineDice = new Gauge({
      name: 'iacsearch_baseline_test_dice',
      help: 'Mean test Dice of the U-Net without cells trained with the same budget (spec.evaluate.baseline).',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const diceGain = new Gauge({
      name: 'iacsearch_dice_gain',
      help: 'Gain of the cells over the U-Net trained with the same budget: test Dice minus the baseline\'s.',
      labelNames: ['namespace', 'name'],
      registers: [r],
    });
    const externalDice = new Gauge({
      name: 'iacsearch_external_dice',
      help: 'Mean foreground Dice of the cell model on an external evaluation dataset (spec.evaluate.external), all its cases.',
      labelNames: ['namespace', 'name', 'dataset'],
      registers: [r],
    });
    const externalHD95 = new Gauge({
      name: 'iacsearch_external_hd95_mm',
      help: 'Mean 95th-percentile Hausdorff distance of the cell model on an external evaluation dataset, in mm.',
      labelNames: ['namespace', 'name', 'dataset'],
      registers: [r],
    });
    const externalCases = new Gauge({
      name: 'iacsearch_external_cases',
      help: 'Cases of an external evaluation dataset the cell model was evaluated on.',
      labelNames: ['namespace', 'name', 'dataset'],
      registers: [r],
    });
    const phaseDuration = new Histogram({
      name: 'iacsearch_phase_duration_seconds',
      help: 'Wall time of completed phases, first attempt created to success, by trainer phase.',
      labelNames: ['phase'],
      buckets: DURATION_BUCKETS,
      registers: [r],
    });

    // info is registered first of the derived metrics, so its collect() runs first on
    // every scrape and fills all of them from one snapshot of the cache.
    (info as unknown as { collect: () => void }).collect = () =>
      self.derive({
        info,
        phase,
        gpuSeconds,
        runningGpuSeconds,
        cost,
        saved,
        epochs,
        activeOps,
        stableEdges,
        budgetGpuSeconds,
        budgetUSD,
        testDice,
        testHD95,
        baselineDice,
        diceGain,
        externalDice,
        externalHD95,
        externalCases,
        phaseDuration,
      });
  }

  setLeader(leading: boolean): void {
    this.leader.set(leading ? 1 : 0);
  }

  async metrics(): Promise<string> {
    return this.registry.metrics();
  }

  /** A counter value that never goes below what this process already exposed. */
  private monotonic(key: string, value: number, seen: Set<string>): number {
    seen.add(key);
    const v = Math.max(this.highWater.get(key) ?? 0, value);
    this.highWater.set(key, v);
    return v;
  }

  /** The evaluate figures of one search: its own test split, the baseline, each external dataset. */
  private deriveResults(
    id: { namespace: string; name: string },
    results: Obj,
    m: { testDice: Gauge; testHD95: Gauge; baselineDice: Gauge; diceGain: Gauge; externalDice: Gauge; externalHD95: Gauge; externalCases: Gauge },
  ): void {
    const set = (g: Gauge, labels: Record<string, string>, v: unknown) => {
      const x = num(v);
      if (x !== undefined) g.set(labels, x);
    };
    set(m.testDice, id, results.meanDice);
    set(m.testHD95, id, results.hd95);
    set(m.baselineDice, id, results.baselineMeanDice);
    set(m.diceGain, id, results.diceGain);
    // One series per dataset name, at most MAX_EXTERNAL_SERIES per search (the status holds
    // no more); a name seen twice keeps its first figures.
    const seen = new Set<string>();
    for (const e of Array.isArray(results.external) ? results.external.slice(0, MAX_EXTERNAL_SERIES) : []) {
      const item = obj(e);
      const dataset = str(item.name);
      if (!dataset || dataset.length > 63 || seen.has(dataset)) continue;
      seen.add(dataset);
      const labels = { ...id, dataset };
      set(m.externalDice, labels, item.meanDice);
      set(m.externalHD95, labels, item.hd95);
      set(m.externalCases, labels, item.cases);
    }
  }

  private derive(m: {
    info: Gauge;
    phase: Gauge;
    gpuSeconds: Counter;
    runningGpuSeconds: Gauge;
    cost: Counter;
    saved: Counter;
    epochs: Counter;
    activeOps: Gauge;
    stableEdges: Gauge;
    budgetGpuSeconds: Gauge;
    budgetUSD: Gauge;
    testDice: Gauge;
    testHD95: Gauge;
    baselineDice: Gauge;
    diceGain: Gauge;
    externalDice: Gauge;
    externalHD95: Gauge;
    externalCases: Gauge;
    phaseDuration: Histogram;
  }): void {
    m.info.reset();
    m.phase.reset();
    m.gpuSeconds.reset();
    m.runningGpuSeconds.reset();
    m.cost.reset();
    m.saved.reset();
    m.epochs.reset();
    m.activeOps.reset();
    m.stableEdges.reset();
    m.budgetGpuSeconds.reset();
    m.budgetUSD.reset();
    for (const g of [m.testDice, m.testHD95, m.baselineDice, m.diceGain, m.externalDice, m.externalHD95, m.externalCases]) g.reset();
    if (!this.source.exportsSearchMetrics()) return;
    const seen = new Set<string>();
    for (const s of this.source.searches()) {
      const namespace = s.metadata.namespace ?? '';
      const name = s.metadata.name;
      const uid = s.metadata.uid ?? `${namespace}/${name}`;
      const spec = obj(s.spec);
      const status = obj(s.status);
      const id = { namespace, name };
      m.info.set({ ...id, dataset: datasetLabel(spec), stability: stabilityLabel(spec) }, 1);
      const current = str(status.phase) ?? 'Pending';
      for (const p of SEARCH_PHASES) m.phase.set({ ...id, phase: p }, p === current ? 1 : 0);

      const phases = obj(status.phases);
      for (const stage of STAGES) {
        const rec = obj(phases[stage]);
        const byOutcome = new Map<string, number>();
        let finished = 0;
        for (const a of Array.isArray(rec.history) ? rec.history : []) {
          const at = obj(a);
          const outcome = str(at.outcome) ?? 'Failed';
          const g = num(at.gpuSeconds) ?? 0;
          finished += g;
          byOutcome.set(outcome, (byOutcome.get(outcome) ?? 0) + g);
        }
        for (const outcome of OUTCOMES) {
          const v = byOutcome.get(outcome);
          if (v === undefined) continue;
          m.gpuSeconds.inc({ ...id, phase: stage, outcome }, this.monotonic(`${uid}/gpu/${stage}/${outcome}`, v, seen));
        }
        const total = num(rec.gpuSeconds);
        if (total !== undefined && rec.pod !== undefined && !rec.endTime && total > finished) {
          m.runningGpuSeconds.set({ ...id, phase: stage }, total - finished);
        }
        const start = Date.parse(str(rec.startTime) ?? '');
        const end = Date.parse(str(rec.endTime) ?? '');
        const key = `${uid}/${stage}`;
        if (rec.succeeded === true && Number.isFinite(start) && Number.isFinite(end) && !this.observedPhases.has(key)) {
          this.observedPhases.add(key);
          m.phaseDuration.observe({ phase: stage }, Math.max(0, (end - start) / 1000));
        }
      }

      const c = obj(status.cost);
      const usd = num(c.estimatedUSD);
      if (usd !== undefined) m.cost.inc(id, this.monotonic(`${uid}/usd`, usd, seen));
      const savedSeconds = num(c.savedGPUSeconds);
      if (savedSeconds !== undefined) m.saved.inc(id, this.monotonic(`${uid}/saved`, savedSeconds, seen));

      const progress = obj(status.progress);
      const result = obj(status.searchResult);
      const epochsDone = Math.max(num(result.epochs) ?? 0, str(progress.phase) === 'search' ? (num(progress.epoch) ?? 0) : 0);
      m.epochs.inc(id, this.monotonic(`${uid}/epochs`, epochsDone, seen));

      const active = num(progress.activeOperations);
      if (active !== undefined) m.activeOps.set(id, active);
      const stable = num(progress.stableEdges);
      if (stable !== undefined) m.stableEdges.set(id, stable);

      this.deriveResults(id, obj(status.results), m);

      const budget = obj(spec.budget);
      const maxHours = num(budget.maxGPUHours);
      if (maxHours !== undefined) m.budgetGpuSeconds.set(id, maxHours * 3600);
      const maxUSD = num(budget.maxCostUSD);
      if (maxUSD !== undefined) m.budgetUSD.set(id, maxUSD);
    }
    // Forget the high-water marks and observed phases of deleted searches.
    for (const k of [...this.highWater.keys()]) if (!seen.has(k)) this.highWater.delete(k);
    const uids = new Set(this.source.searches().map((s) => s.metadata.uid ?? `${s.metadata.namespace ?? ''}/${s.metadata.name}`));
    for (const k of [...this.observedPhases]) if (!uids.has(k.slice(0, k.lastIndexOf('/')))) this.observedPhases.delete(k);
  }
}
