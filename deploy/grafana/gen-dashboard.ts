// Writes deploy/grafana/iac-operator.json, the Grafana dashboard of IACSearch cost and
// progress, and keeps the chart's copy (charts/iac-operator/files/) identical.
// Run: scripts/with-node node deploy/grafana/gen-dashboard.ts
// The panels are data here so that the tests can read every query (test/packaging).
import { writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The selector every per-search query carries, bound to the dashboard's variables. */
const sel = 'namespace=~"$namespace", name=~"$search"';
/** The selector of per-set queries (iacsearchset_*). */
const setSel = 'namespace=~"$namespace", name=~"$set"';
/** Joins a per-search series to the set of the search, keeping only children of the selected sets. */
const ofSet = 'on (namespace, name) group_left (set) iacsearch_info{set=~"$set", set!=""}';
/** GPU-seconds used so far: finished attempts plus the running one (docs/metrics.md). */
const used = (extra = '') => `{__name__=~"iacsearch_gpu_seconds_total|iacsearch_running_gpu_seconds", ${sel}${extra ? `, ${extra}` : ''}}`;

export interface Target {
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  format?: 'table' | 'time_series';
}
export interface PanelSpec {
  title: string;
  type: 'stat' | 'timeseries' | 'table' | 'bargauge' | 'row';
  description?: string;
  unit?: string;
  w: number;
  h: number;
  targets: Target[];
  /** Queries that need a source outside the operator (OpenCost): empty without it. */
  optional?: boolean;
  /** Queries of IACSearchSets and their children: empty where no set exists. */
  fleet?: boolean;
}

const row = (title: string): PanelSpec => ({ title, type: 'row', w: 24, h: 1, targets: [] });

export const panels: PanelSpec[] = [
  row('Overview'),
  {
    title: 'Searches by phase',
    type: 'bargauge',
    description: 'IACSearch objects in each status.phase.',
    w: 8,
    h: 6,
    targets: [{ expr: `sum by (phase) (iacsearch_phase{${sel}})`, legendFormat: '{{phase}}', instant: true }],
  },
  {
    title: 'GPU-hours used',
    type: 'stat',
    description: 'All phases and attempts, the running ones included.',
    unit: 'h',
    w: 4,
    h: 6,
    targets: [{ expr: `sum(${used()}) / 3600`, instant: true }],
  },
  {
    title: 'Estimated cost',
    type: 'stat',
    description: 'GPU-hours times spec.cost.gpuHourlyUSD of each search.',
    unit: 'currencyUSD',
    w: 4,
    h: 6,
    targets: [{ expr: `sum(iacsearch_estimated_cost_usd_total{${sel}})`, instant: true }],
  },
  {
    title: 'GPU-hours saved by stability pruning',
    type: 'stat',
    description: 'Projected full-length search (all spec.search.maxEpochs epochs) minus the actual search.',
    unit: 'h',
    w: 4,
    h: 6,
    targets: [{ expr: `sum(iacsearch_saved_gpu_seconds_total{${sel}}) / 3600`, instant: true }],
  },
  {
    title: 'Search speedup',
    type: 'stat',
    description: 'Full-length search GPU-time over the actual search GPU-time, over all selected searches.',
    unit: 'x',
    w: 4,
    h: 6,
    targets: [
      {
        expr: `(sum(${used('phase="search"')}) + sum(iacsearch_saved_gpu_seconds_total{${sel}})) / sum(${used('phase="search"')})`,
        instant: true,
      },
    ],
  },
  row('GPU time and cost'),
  {
    title: 'GPU-hours by namespace',
    type: 'timeseries',
    unit: 'h',
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (namespace) (${used()}) / 3600`, legendFormat: '{{namespace}}' }],
  },
  {
    title: 'Estimated cost by namespace',
    type: 'timeseries',
    unit: 'currencyUSD',
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (namespace) (iacsearch_estimated_cost_usd_total{${sel}})`, legendFormat: '{{namespace}}' }],
  },
  {
    title: 'GPU-hours by search and phase',
    type: 'table',
    unit: 'h',
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (namespace, name, phase) (${used()}) / 3600`, instant: true, format: 'table' }],
  },
  {
    title: 'Estimated cost by search',
    type: 'table',
    description: 'With the dataset and stability criterion of each search (iacsearch_info).',
    unit: 'currencyUSD',
    w: 12,
    h: 8,
    targets: [
      {
        expr: `sum by (namespace, name, dataset, stability) (iacsearch_estimated_cost_usd_total{${sel}} * on (namespace, name) group_left (dataset, stability) iacsearch_info)`,
        instant: true,
        format: 'table',
      },
    ],
  },
  {
    title: 'Cost at OpenCost GPU prices',
    type: 'timeseries',
    description:
      "GPU-hours priced at the cluster's mean node_gpu_hourly_cost from OpenCost (empty where OpenCost is not scraped). Compare with the estimate from spec.cost.gpuHourlyUSD.",
    unit: 'currencyUSD',
    optional: true,
    w: 24,
    h: 8,
    targets: [
      {
        expr: `sum by (namespace) (${used()}) / 3600 * on () group_left () avg(node_gpu_hourly_cost)`,
        legendFormat: '{{namespace}}',
      },
    ],
  },
  row('Stability pruning'),
  {
    title: 'GPU-hours saved per search',
    type: 'timeseries',
    unit: 'h',
    w: 12,
    h: 8,
    targets: [{ expr: `sum by (namespace, name) (iacsearch_saved_gpu_seconds_total{${sel}}) / 3600`, legendFormat: '{{namespace}}/{{name}}' }],
  },
  {
    title: 'Speedup per search',
    type: 'bargauge',
    description: '(actual search + saved) / actual search GPU-time.',
    unit: 'x',
    w: 12,
    h: 8,
    targets: [
      {
        expr: `(sum by (namespace, name) (${used('phase="search"')}) + sum by (namespace, name) (iacsearch_saved_gpu_seconds_total{${sel}})) / sum by (namespace, name) (${used('phase="search"')})`,
        legendFormat: '{{namespace}}/{{name}}',
        instant: true,
      },
    ],
  },
  {
    title: 'GPU-hours saved by dataset and criterion',
    type: 'table',
    unit: 'h',
    w: 24,
    h: 6,
    targets: [
      {
        expr: `sum by (dataset, stability) (iacsearch_saved_gpu_seconds_total{${sel}} * on (namespace, name) group_left (dataset, stability) iacsearch_info) / 3600`,
        instant: true,
        format: 'table',
      },
    ],
  },
  row('Search progress'),
  {
    title: 'Search epochs',
    type: 'timeseries',
    description: 'Cell-search epochs finished per search.',
    w: 8,
    h: 8,
    targets: [{ expr: `sum by (namespace, name) (iacsearch_search_epochs_total{${sel}})`, legendFormat: '{{namespace}}/{{name}}' }],
  },
  {
    title: 'Active operations',
    type: 'timeseries',
    description: 'Candidate operations still computed; drops as stable edges are pruned.',
    w: 8,
    h: 8,
    targets: [{ expr: `sum by (namespace, name) (iacsearch_active_operations{${sel}})`, legendFormat: '{{namespace}}/{{name}}' }],
  },
  {
    title: 'Stable edges',
    type: 'timeseries',
    description: 'Cell edges whose operation distribution is stable (JS divergence under the threshold).',
    w: 8,
    h: 8,
    targets: [{ expr: `sum by (namespace, name) (iacsearch_stable_edges{${sel}})`, legendFormat: '{{namespace}}/{{name}}' }],
  },
  {
    title: 'Mean phase duration',
    type: 'bargauge',
    description: 'Wall time of completed phases, retries included (all searches: no per-object labels).',
    unit: 's',
    w: 24,
    h: 6,
    targets: [
      {
        expr: 'sum by (phase) (iacsearch_phase_duration_seconds_sum) / sum by (phase) (iacsearch_phase_duration_seconds_count)',
        legendFormat: '{{phase}}',
        instant: true,
      },
    ],
  },
  row('Results'),
  {
    title: 'Test Dice, fair baseline and gain of the cells',
    type: 'table',
    description:
      'Per finished search: mean test Dice of the cell model, of the plain U-Net trained with the same retrain budget (evaluate.baseline), and their difference.',
    w: 12,
    h: 8,
    targets: [
      { expr: `max by (namespace, name) (iacsearch_test_dice{${sel}})`, instant: true, format: 'table', legendFormat: 'cells' },
      { expr: `max by (namespace, name) (iacsearch_baseline_test_dice{${sel}})`, instant: true, format: 'table', legendFormat: 'baseline' },
      { expr: `max by (namespace, name) (iacsearch_dice_gain{${sel}})`, instant: true, format: 'table', legendFormat: 'gain' },
    ],
  },
  {
    title: 'Dice on external datasets',
    type: 'table',
    description: 'Mean Dice of each search on its extra held-out datasets (spec.evaluate.external).',
    w: 12,
    h: 8,
    targets: [{ expr: `max by (namespace, name, dataset) (iacsearch_external_dice{${sel}})`, instant: true, format: 'table' }],
  },
  row('Fleets'),
  {
    title: 'Fleet progress',
    type: 'bargauge',
    description: 'Succeeded children over all children of each IACSearchSet.',
    unit: 'percentunit',
    fleet: true,
    w: 8,
    h: 8,
    targets: [
      {
        expr: `sum by (namespace, name) (iacsearchset_children{phase="Succeeded", ${setSel}}) / sum by (namespace, name) (iacsearchset_children{${setSel}})`,
        legendFormat: '{{namespace}}/{{name}}',
        instant: true,
      },
    ],
  },
  {
    title: 'Fleet children by state',
    type: 'timeseries',
    description: 'Children of the selected sets: Running, Queued (maxParallel), Suspended (budget or by hand), Succeeded, Failed.',
    fleet: true,
    w: 16,
    h: 8,
    targets: [{ expr: `sum by (namespace, name, phase) (iacsearchset_children{${setSel}})`, legendFormat: '{{namespace}}/{{name}} {{phase}}' }],
  },
  {
    title: 'GPU-hours per set',
    type: 'timeseries',
    description: "All children of each set, running attempts included; the set's GPU budget where it sets one.",
    unit: 'h',
    fleet: true,
    w: 12,
    h: 8,
    targets: [
      { expr: `sum by (namespace, name) (iacsearchset_gpu_seconds_total{${setSel}}) / 3600`, legendFormat: '{{namespace}}/{{name}}' },
      { expr: `max by (namespace, name) (iacsearchset_budget_gpu_seconds{${setSel}}) / 3600`, legendFormat: '{{namespace}}/{{name}} budget' },
    ],
  },
  {
    title: 'Estimated cost per set',
    type: 'timeseries',
    description: "All children of each set, each at its own spec.cost.gpuHourlyUSD; the set's cost budget where it sets one.",
    unit: 'currencyUSD',
    fleet: true,
    w: 12,
    h: 8,
    targets: [
      { expr: `sum by (namespace, name) (iacsearchset_estimated_cost_usd_total{${setSel}})`, legendFormat: '{{namespace}}/{{name}}' },
      { expr: `max by (namespace, name) (iacsearchset_budget_usd{${setSel}})`, legendFormat: '{{namespace}}/{{name}} budget' },
    ],
  },
  {
    title: 'Sets: best Dice, GPU-hours saved',
    type: 'table',
    description: 'Per set: the test Dice of its best succeeded child and the GPU-hours its children saved by stopping their searches on stability.',
    fleet: true,
    w: 8,
    h: 8,
    targets: [
      { expr: `max by (namespace, name) (iacsearchset_best_test_dice{${setSel}})`, instant: true, format: 'table', legendFormat: 'best Dice' },
      {
        expr: `sum by (namespace, name) (iacsearchset_saved_gpu_seconds_total{${setSel}}) / 3600`,
        instant: true,
        format: 'table',
        legendFormat: 'saved GPU-hours',
      },
    ],
  },
  {
    title: 'Dice vs cost per child',
    type: 'table',
    description:
      'Each child of the selected sets (iacsearch_info{set}): its test Dice and estimated cost, to compare what each dataset, seed and search variant bought. Children still running have a cost and no Dice yet.',
    fleet: true,
    w: 16,
    h: 8,
    targets: [
      { expr: `max by (namespace, set, name) (iacsearch_test_dice{${sel}} * ${ofSet})`, instant: true, format: 'table', legendFormat: 'test Dice' },
      {
        expr: `max by (namespace, set, name) (iacsearch_estimated_cost_usd_total{${sel}} * ${ofSet})`,
        instant: true,
        format: 'table',
        legendFormat: 'cost USD',
      },
    ],
  },
  row('Failures and preemptions'),
  {
    title: 'Failed searches',
    type: 'stat',
    w: 6,
    h: 6,
    targets: [{ expr: `sum(iacsearch_phase{phase="Failed", ${sel}}) or vector(0)`, instant: true }],
  },
  {
    title: 'GPU-hours lost to failures and preemptions',
    type: 'stat',
    description: 'Attempts that failed (count against backoffLimit) or were disrupted (preemption, eviction, node loss).',
    unit: 'h',
    w: 6,
    h: 6,
    targets: [{ expr: `sum(iacsearch_gpu_seconds_total{outcome=~"Failed|Disrupted", ${sel}}) / 3600 or vector(0)`, instant: true }],
  },
  {
    title: 'GPU-hours by attempt outcome',
    type: 'timeseries',
    description: 'Finished attempts: Succeeded, Failed, Disrupted (preempted), Stopped (suspend, budget, deadline).',
    unit: 'h',
    w: 12,
    h: 6,
    targets: [{ expr: `sum by (outcome) (iacsearch_gpu_seconds_total{${sel}}) / 3600`, legendFormat: '{{outcome}}' }],
  },
  row('Operator'),
  {
    title: 'Reconcile latency',
    type: 'timeseries',
    unit: 's',
    w: 8,
    h: 8,
    targets: [
      {
        expr: 'histogram_quantile(0.5, sum by (le) (rate(iac_operator_reconcile_duration_seconds_bucket[$__rate_interval])))',
        legendFormat: 'p50',
      },
      {
        expr: 'histogram_quantile(0.99, sum by (le) (rate(iac_operator_reconcile_duration_seconds_bucket[$__rate_interval])))',
        legendFormat: 'p99',
      },
    ],
  },
  {
    title: 'Reconciles by result',
    type: 'timeseries',
    unit: 'ops',
    w: 8,
    h: 8,
    targets: [{ expr: 'sum by (result) (rate(iac_operator_reconcile_total[$__rate_interval]))', legendFormat: '{{result}}' }],
  },
  {
    title: 'Workqueue depth and retries',
    type: 'timeseries',
    w: 8,
    h: 8,
    targets: [
      { expr: 'sum(iac_operator_workqueue_depth)', legendFormat: 'depth' },
      { expr: 'sum(rate(iac_operator_workqueue_retries_total[$__rate_interval]))', legendFormat: 'retries/s' },
    ],
  },
  {
    title: 'Leader and informer restarts',
    type: 'timeseries',
    w: 24,
    h: 6,
    targets: [
      { expr: 'max by (pod, instance) (iac_operator_leader)', legendFormat: 'leader {{pod}}{{instance}}' },
      {
        expr: 'sum by (resource) (increase(iac_operator_informer_restarts_total[$__rate_interval])) or vector(0)',
        legendFormat: 'restarts {{resource}}',
      },
    ],
  },
];

// biome-ignore lint/suspicious/noTemplateCurlyInString: ${datasource} is Grafana's dashboard variable, written literally into the JSON
const DS = { type: 'prometheus', uid: '${datasource}' };

function grafanaPanels(): unknown[] {
  const out: unknown[] = [];
  let x = 0;
  let y = 0;
  let rowH = 0;
  let id = 1;
  for (const p of panels) {
    if (p.type === 'row' || x + p.w > 24) {
      y += rowH;
      x = 0;
      rowH = 0;
    }
    const gridPos = { x, y, w: p.w, h: p.h };
    if (p.type === 'row') {
      out.push({ id: id++, type: 'row', title: p.title, collapsed: false, gridPos, panels: [] });
      y += 1;
      continue;
    }
    out.push({
      id: id++,
      type: p.type,
      title: p.title,
      ...(p.description ? { description: p.description } : {}),
      datasource: DS,
      gridPos,
      fieldConfig: { defaults: { ...(p.unit ? { unit: p.unit } : {}) }, overrides: [] },
      options:
        p.type === 'stat'
          ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'area' }
          : p.type === 'bargauge'
            ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, orientation: 'horizontal', displayMode: 'gradient' }
            : p.type === 'table'
              ? { showHeader: true }
              : { legend: { displayMode: 'table', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi' } },
      ...(p.type === 'table'
        ? {
            transformations: [
              // Several instant queries of one table: one row per series, one column per query.
              ...(p.targets.length > 1 ? [{ id: 'merge', options: {} }] : []),
              { id: 'organize', options: { excludeByName: { Time: true } } },
            ],
          }
        : {}),
      targets: p.targets.map((t, i) => ({
        refId: String.fromCharCode(65 + i),
        datasource: DS,
        expr: t.expr,
        ...(t.legendFormat ? { legendFormat: t.legendFormat } : {}),
        ...(t.instant ? { instant: true, range: false } : { range: true }),
        ...(t.format ? { format: t.format } : {}),
      })),
    });
    x += p.w;
    rowH = Math.max(rowH, p.h);
  }
  return out;
}

const variable = (name: string, label: string, query: string) => ({
  name,
  label,
  type: 'query',
  datasource: DS,
  query: { query, refId: name },
  definition: query,
  refresh: 2,
  multi: true,
  includeAll: true,
  allValue: '.*',
  current: { selected: true, text: ['All'], value: ['$__all'] },
  sort: 1,
});

export function dashboard(): Record<string, unknown> {
  return {
    uid: 'iac-operator',
    title: 'IAC-LTH searches: cost and progress',
    description: 'IACSearch GPU time, estimated cost, savings from stability pruning, search progress, IACSearchSet fleets and operator health (iac-operator).',
    tags: ['iac-operator', 'neural-architecture-search', 'gpu-cost'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-7d', to: 'now' },
    refresh: '1m',
    timezone: 'utc',
    templating: {
      list: [
        { name: 'datasource', label: 'Prometheus', type: 'datasource', query: 'prometheus', current: {}, hide: 0 },
        variable('namespace', 'Namespace', 'label_values(iacsearch_info, namespace)'),
        variable('search', 'Search', 'label_values(iacsearch_info{namespace=~"$namespace"}, name)'),
        variable('set', 'Search set', 'label_values(iacsearchset_info{namespace=~"$namespace"}, name)'),
      ],
    },
    annotations: { list: [] },
    panels: grafanaPanels(),
  };
}

export const dashboardJSON = (): string => `${JSON.stringify(dashboard(), null, 2)}\n`;

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const text = dashboardJSON();
  for (const p of ['deploy/grafana/iac-operator.json', 'charts/iac-operator/files/iac-operator.json']) {
    writeFileSync(join(root, p), text);
    console.log(`wrote ${p}`);
  }
}
