// Every dashboard query and alert expression asks for metrics, labels and label values the
// operator really exports: the queries are matched against the exposition of the
// operator's own registry (operator/src/metrics) over searches in every state.
import { beforeAll, describe, expect, it } from 'vitest';
import { OperatorMetrics } from '../../operator/src/metrics/registry.ts';
import type { KubeObject } from '../../operator/src/k8s/types.ts';
import { dashboard } from '../../deploy/grafana/gen-dashboard.ts';
import { dashboardQueries, metricNames, ruleQueries, selectors, type Matcher, type Query } from './promql.ts';

const FOREIGN = new Set(['up', 'node_gpu_hourly_cost']);

const finished = (pod: string, outcome: string, gpuSeconds: number) => ({ pod, outcome, gpuSeconds });
function search(name: string, status: Record<string, unknown>, set?: string): KubeObject {
  return {
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearch',
    metadata: { name, namespace: 'lab', uid: `uid-${name}`, ...(set ? { labels: { 'iac.dev/search-set': set } } : {}) },
    spec: {
      dataset: { format: 'msd', path: 'raw/Task04_Hippocampus' },
      search: { stability: { enabled: true, criterion: 'jsd' } },
      budget: { maxGPUHours: 10, maxCostUSD: 40, action: 'Suspend' },
    },
    status,
  };
}
// One search in each interesting state, with every attempt outcome somewhere.
const objects: KubeObject[] = [
  search('running', {
    phase: 'Searching',
    phases: {
      search: { startTime: '2026-01-01T00:00:00Z', pod: 'running-search-2', gpuSeconds: 900, history: [finished('running-search-1', 'Disrupted', 300)] },
    },
    progress: { phase: 'search', epoch: 12, activeOperations: 40, stableEdges: 3 },
    cost: { gpuSeconds: 900, estimatedUSD: 0.5 },
  }),
  search('done', {
    phase: 'Succeeded',
    phases: {
      search: {
        startTime: '2026-01-01T00:00:00Z',
        endTime: '2026-01-01T01:00:00Z',
        succeeded: true,
        gpuSeconds: 3600,
        history: [finished('done-search-1', 'Failed', 600), finished('done-search-2', 'Succeeded', 3000)],
      },
      prune: {
        startTime: '2026-01-01T01:00:00Z',
        endTime: '2026-01-01T01:01:00Z',
        succeeded: true,
        gpuSeconds: 0,
        history: [finished('done-prune-1', 'Succeeded', 0)],
      },
      retrain: {
        startTime: '2026-01-01T01:01:00Z',
        endTime: '2026-01-01T02:00:00Z',
        succeeded: true,
        gpuSeconds: 3500,
        history: [finished('done-retrain-1', 'Stopped', 100), finished('done-retrain-2', 'Succeeded', 3400)],
      },
      evaluate: {
        startTime: '2026-01-01T02:00:00Z',
        endTime: '2026-01-01T02:05:00Z',
        succeeded: true,
        gpuSeconds: 300,
        history: [finished('done-evaluate-1', 'Succeeded', 300)],
      },
    },
    searchResult: { epochs: 40 },
    results: { meanDice: 0.81, hd95: 2.4, baselineMeanDice: 0.79, diceGain: 0.02, external: [{ name: 'site-b', cases: 58, meanDice: 0.77, hd95: 2.9 }] },
    progress: { epoch: 40, activeOperations: 10, stableEdges: 10 },
    cost: { gpuSeconds: 7400, estimatedUSD: 5, savedGPUSeconds: 14000 },
  }),
  search('broken', { phase: 'Failed', phases: { search: { gpuSeconds: 100, history: [finished('broken-search-1', 'Failed', 100)] } } }),
  // Two children of the set below, one finished, one running.
  search('fleet-s1', { phase: 'Succeeded', results: { meanDice: 0.8 }, cost: { gpuSeconds: 3600, estimatedUSD: 2.5, savedGPUSeconds: 7200 } }, 'fleet'),
  search('fleet-s2', { phase: 'Searching', cost: { gpuSeconds: 900, estimatedUSD: 0.6 } }, 'fleet'),
];
const sets: KubeObject[] = [
  {
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearchSet',
    metadata: { name: 'fleet', namespace: 'lab', uid: 'uid-fleet' },
    spec: { template: {}, matrix: { seeds: [1, 2] }, budget: { maxGPUHours: 10, maxCostUSD: 40, action: 'Suspend' } },
    status: {
      phase: 'Running',
      children: 2,
      running: 1,
      queued: 0,
      suspended: 0,
      succeeded: 1,
      failed: 0,
      gpuHours: 1.25,
      estimatedUSD: 3.1,
      savedGPUHours: 2,
      bestChild: { name: 'fleet-s1', testDice: 0.8 },
    },
  },
];

interface Sample {
  metric: string;
  labels: Record<string, string>;
}
let samples: Sample[] = [];
let families = new Map<string, string>(); // name -> type

function parseExposition(text: string): void {
  samples = [];
  families = new Map();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) families.set(type[1], type[2]);
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? /.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ metric: m[1], labels });
  }
}

const matches = (m: Matcher, value: string | undefined): boolean => {
  const v = value ?? '';
  if (m.value.includes('$')) return true; // a Grafana variable: any value
  switch (m.op) {
    case '=':
      return v === m.value;
    case '!=':
      return v !== m.value;
    case '=~':
      return new RegExp(`^(?:${m.value})$`).test(v);
    case '!~':
      return !new RegExp(`^(?:${m.value})$`).test(v);
  }
};

/** A metric name as exported: histogram series are <family>_bucket/_sum/_count. */
const exported = (name: string) => families.has(name) || families.get(name.replace(/_(bucket|sum|count)$/, '')) === 'histogram';

function checkQuery(q: Query, allowMissing: string[] = []): string[] {
  const problems: string[] = [];
  for (const name of metricNames(q.expr)) {
    if (FOREIGN.has(name) || allowMissing.includes(name)) continue;
    if (!exported(name)) problems.push(`${q.source}: ${name} is not exported by the operator`);
  }
  for (const s of selectors(q.expr)) {
    if (FOREIGN.has(s.metric) || allowMissing.includes(s.metric) || !exported(s.metric)) continue;
    const series = samples.filter((x) => x.metric === s.metric || x.metric.replace(/_(bucket|sum|count)$/, '') === s.metric);
    const hit = series.some((x) => s.matchers.every((m) => matches(m, x.labels[m.label])));
    if (!hit) {
      problems.push(`${q.source}: no ${s.metric} series matches {${s.matchers.map((m) => `${m.label}${m.op}"${m.value}"`).join(', ')}}`);
    }
  }
  // Labels grouped by must be labels the metrics have.
  for (const by of q.expr.matchAll(/\b(?:by|on)\s*\(([^)]*)\)/g)) {
    for (const label of by[1]
      .split(',')
      .map((l) => l.trim())
      .filter(Boolean)) {
      if (label === 'le' || label === 'instance' || label === 'pod') continue;
      const names = [...metricNames(q.expr)].filter((n) => exported(n));
      const family = (n: string) => (families.has(n) ? n : n.replace(/_(bucket|sum|count)$/, ''));
      const wanted = new Set(names.map(family));
      if (!samples.some((x) => wanted.has(family(x.metric)) && label in x.labels)) {
        problems.push(`${q.source}: none of ${names.join(', ')} has the label ${label}`);
      }
    }
  }
  return problems;
}

describe('dashboard and alert queries against the operator metrics', () => {
  beforeAll(async () => {
    const m = new OperatorMetrics({ searches: () => objects, sets: () => sets, exportsSearchMetrics: () => true, queueDepth: () => 2 });
    m.setLeader(true);
    m.reconcileTotal.inc({ result: 'error' });
    m.reconcileTotal.inc({ result: 'success' });
    m.reconcileDuration.observe({ result: 'success' }, 0.01);
    m.workqueueRetries.inc();
    m.informerRestarts.inc({ resource: 'pods' });
    parseExposition(await m.metrics());
  });

  it('sees the operator export its documented families', () => {
    expect(families.get('iacsearch_gpu_seconds_total')).toBe('counter');
    expect(families.get('iacsearch_phase_duration_seconds')).toBe('histogram');
    expect(samples.some((s) => s.metric === 'iacsearch_gpu_seconds_total' && s.labels.outcome === 'Disrupted')).toBe(true);
  });

  it('every dashboard query uses exported metrics, labels and label values', () => {
    const problems = dashboardQueries().flatMap((q) => checkQuery(q));
    expect(problems).toEqual([]);
  });

  it('the Fleets row asks for set metrics and joins children to their set; only its queries are marked fleet', () => {
    const fleet = dashboardQueries().filter((q) => q.fleet);
    expect(fleet.length).toBeGreaterThan(5);
    for (const q of fleet) expect(q.expr, q.source).toMatch(/iacsearchset_|iacsearch_info\{set=~"\$set"/);
    for (const q of dashboardQueries().filter((x) => !x.fleet)) expect(q.expr, q.source).not.toMatch(/iacsearchset_|\$set/);
  });

  it('only the OpenCost panel needs a metric from outside the operator', () => {
    const foreign = dashboardQueries().filter((q) => [...metricNames(q.expr)].some((n) => FOREIGN.has(n)));
    expect(foreign.map((q) => q.source)).toEqual(['dashboard panel "Cost at OpenCost GPU prices" #1']);
    expect(foreign.every((q) => q.optional)).toBe(true);
  });

  it('every alert expression uses exported metrics, labels and label values', () => {
    const problems = ruleQueries().flatMap((q) => checkQuery(q));
    expect(problems).toEqual([]);
  });

  it('the dashboard variables list searches from iacsearch_info and sets from iacsearchset_info, and every panel has a datasource', () => {
    const d = dashboard() as {
      templating: { list: Array<{ name: string; definition?: string }> };
      panels: Array<{ type: string; datasource?: unknown; targets?: unknown[] }>;
    };
    expect(d.templating.list.map((v) => v.name)).toEqual(['datasource', 'namespace', 'search', 'set']);
    for (const p of d.panels.filter((x) => x.type !== 'row')) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the dashboard JSON holds Grafana's literal ${datasource} variable
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length).toBeGreaterThan(0);
    }
  });

  it('the checker itself catches a wrong label value and an unknown metric', () => {
    expect(checkQuery({ source: 'q', expr: 'sum(iacsearch_gpu_seconds_total{outcome="failed"})', optional: false })).toHaveLength(1);
    expect(checkQuery({ source: 'q', expr: 'iacsearch_gpu_hours_total', optional: false })).toHaveLength(1);
    expect(checkQuery({ source: 'q', expr: 'sum by (dataset) (iacsearch_stable_edges)', optional: false })).toHaveLength(1);
    expect(checkQuery({ source: 'q', expr: 'iacsearchset_children{phase="Pending"}', optional: false })).toHaveLength(1);
    expect(
      checkQuery({ source: 'q', expr: 'iacsearch_test_dice * on (namespace, name) group_left (set) iacsearch_info{set="other"}', optional: false }),
    ).toHaveLength(1);
  });
});
