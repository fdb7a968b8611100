import { describe, expect, it } from 'vitest';
import type { KubeObject } from '../k8s/types.ts';
import { OperatorMetrics, type MetricsSource } from './registry.ts';

function search(status: Record<string, unknown>, spec: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearch',
    metadata: { name: 'acdc', namespace: 'lab', uid: 'u-1' },
    spec: { dataset: { format: 'nnunet', path: 'raw/Dataset027_ACDC/' }, search: { stability: { enabled: true } }, ...spec },
    status,
  };
}

const status = {
  phase: 'Retraining',
  phases: {
    search: {
      startTime: '2026-01-01T00:00:00Z',
      endTime: '2026-01-01T01:00:00Z',
      succeeded: true,
      gpuSeconds: 3000,
      pod: 'acdc-search-2',
      history: [
        { pod: 'acdc-search-1', outcome: 'Disrupted', gpuSeconds: 1000 },
        { pod: 'acdc-search-2', outcome: 'Succeeded', gpuSeconds: 2000 },
      ],
    },
    prune: {
      startTime: '2026-01-01T01:00:00Z',
      endTime: '2026-01-01T01:01:00Z',
      succeeded: true,
      gpuSeconds: 0,
      history: [{ pod: 'acdc-prune-1', outcome: 'Succeeded', gpuSeconds: 0 }],
    },
    retrain: { startTime: '2026-01-01T01:01:00Z', gpuSeconds: 500, pod: 'acdc-retrain-1', history: [] },
  },
  progress: { phase: 'retrain', epoch: 3, activeOperations: 12, stableEdges: 5 },
  searchResult: { epochs: 40 },
  cost: { gpuSeconds: 3500, estimatedUSD: 2.5, savedGPUSeconds: 12000 },
};

function source(objs: () => KubeObject[], leader = () => true): MetricsSource {
  return { searches: objs, exportsSearchMetrics: leader, queueDepth: () => 3 };
}

/** The sample lines of a metric (name and labels) -> value. */
async function samples(m: OperatorMetrics): Promise<Map<string, number>> {
  const text = await m.metrics();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

describe('OperatorMetrics', () => {
  it('derives the iacsearch_* series from the status', async () => {
    const m = new OperatorMetrics(source(() => [search(status)]));
    const s = await samples(m);
    expect(s.get('iacsearch_info{namespace="lab",name="acdc",dataset="Dataset027_ACDC",stability="jsd",set=""}')).toBe(1);
    expect(s.get('iacsearch_phase{namespace="lab",name="acdc",phase="Retraining"}')).toBe(1);
    expect(s.get('iacsearch_phase{namespace="lab",name="acdc",phase="Searching"}')).toBe(0);
    expect(s.get('iacsearch_gpu_seconds_total{namespace="lab",name="acdc",phase="search",outcome="Disrupted"}')).toBe(1000);
    expect(s.get('iacsearch_gpu_seconds_total{namespace="lab",name="acdc",phase="search",outcome="Succeeded"}')).toBe(2000);
    expect(s.get('iacsearch_running_gpu_seconds{namespace="lab",name="acdc",phase="retrain"}')).toBe(500);
    expect(s.get('iacsearch_estimated_cost_usd_total{namespace="lab",name="acdc"}')).toBe(2.5);
    expect(s.get('iacsearch_saved_gpu_seconds_total{namespace="lab",name="acdc"}')).toBe(12000);
    expect(s.get('iacsearch_search_epochs_total{namespace="lab",name="acdc"}')).toBe(40);
    expect(s.get('iacsearch_active_operations{namespace="lab",name="acdc"}')).toBe(12);
    expect(s.get('iacsearch_stable_edges{namespace="lab",name="acdc"}')).toBe(5);
    expect(s.get('iacsearch_phase_duration_seconds_count{phase="search"}')).toBe(1);
    expect(s.get('iacsearch_phase_duration_seconds_sum{phase="search"}')).toBe(3600);
    expect(s.get('iacsearch_phase_duration_seconds_sum{phase="prune"}')).toBe(60);
    expect(s.get('iac_operator_workqueue_depth')).toBe(3);
    expect([...s.keys()].some((k) => k.startsWith('iacsearch_budget'))).toBe(false); // no budget set
  });

  it('exports the budget of a search that sets one', async () => {
    const s = await samples(new OperatorMetrics(source(() => [search(status, { budget: { maxGPUHours: 2, maxCostUSD: 50 } })])));
    expect(s.get('iacsearch_budget_gpu_seconds{namespace="lab",name="acdc"}')).toBe(7200);
    expect(s.get('iacsearch_budget_usd{namespace="lab",name="acdc"}')).toBe(50);
  });

  it('reports the same totals after a restart and counts nothing twice', async () => {
    const objs = [search(status)];
    const before = await samples(new OperatorMetrics(source(() => objs)));
    const first = new OperatorMetrics(source(() => objs));
    await samples(first);
    const again = await samples(first); // a second scrape observes no phase twice
    const restarted = await samples(new OperatorMetrics(source(() => objs)));
    for (const s of [again, restarted]) {
      for (const [k, v] of before) if (k.startsWith('iacsearch_')) expect(s.get(k), k).toBe(v);
    }
  });

  it('never lets a counter go back within a process', async () => {
    let current = search(status);
    const m = new OperatorMetrics(source(() => [current]));
    await samples(m);
    current = search({ ...status, cost: { estimatedUSD: 1, savedGPUSeconds: 10 }, searchResult: { epochs: 2 } });
    const s = await samples(m);
    expect(s.get('iacsearch_estimated_cost_usd_total{namespace="lab",name="acdc"}')).toBe(2.5);
    expect(s.get('iacsearch_search_epochs_total{namespace="lab",name="acdc"}')).toBe(40);
  });

  it('counts search epochs from live progress while the search runs and labels a full-length search', async () => {
    const running = search(
      { phase: 'Searching', progress: { phase: 'search', epoch: 17, stableEdges: 2 } },
      { dataset: { format: 'phantom' }, search: { stability: { enabled: false } } },
    );
    const s = await samples(new OperatorMetrics(source(() => [running])));
    expect(s.get('iacsearch_search_epochs_total{namespace="lab",name="acdc"}')).toBe(17);
    expect(s.get('iacsearch_info{namespace="lab",name="acdc",dataset="phantom",stability="off",set=""}')).toBe(1);
  });

  it("exports the test Dice, the fair baseline's gain and each external dataset's figures", async () => {
    const external = [
      { name: 'hippo-site-b', cases: 12, meanDice: 0.71, dicePerClass: { '1': 0.7, '2': 0.72 }, hd95: 3.1 },
      { name: 'hippo-site-c', cases: 30, meanDice: 0.64 },
    ];
    const done = search({ phase: 'Succeeded', results: { meanDice: 0.8, hd95: 2.5, baselineMeanDice: 0.76, diceGain: 0.04, external } });
    const s = await samples(new OperatorMetrics(source(() => [done])));
    expect(s.get('iacsearch_test_dice{namespace="lab",name="acdc"}')).toBe(0.8);
    expect(s.get('iacsearch_test_hd95_mm{namespace="lab",name="acdc"}')).toBe(2.5);
    expect(s.get('iacsearch_baseline_test_dice{namespace="lab",name="acdc"}')).toBe(0.76);
    expect(s.get('iacsearch_dice_gain{namespace="lab",name="acdc"}')).toBe(0.04);
    expect(s.get('iacsearch_external_dice{namespace="lab",name="acdc",dataset="hippo-site-b"}')).toBe(0.71);
    expect(s.get('iacsearch_external_hd95_mm{namespace="lab",name="acdc",dataset="hippo-site-b"}')).toBe(3.1);
    expect(s.get('iacsearch_external_cases{namespace="lab",name="acdc",dataset="hippo-site-b"}')).toBe(12);
    expect(s.get('iacsearch_external_dice{namespace="lab",name="acdc",dataset="hippo-site-c"}')).toBe(0.64);
    expect(s.get('iacsearch_external_cases{namespace="lab",name="acdc",dataset="hippo-site-c"}')).toBe(30);
    expect(s.has('iacsearch_external_hd95_mm{namespace="lab",name="acdc",dataset="hippo-site-c"}')).toBe(false);

    // Before the evaluate phase there is no figure at all (not a 0), and no baseline without one.
    const running = await samples(new OperatorMetrics(source(() => [search(status)])));
    expect([...running.keys()].filter((k) => /iacsearch_(test|baseline|dice_gain|external)/.test(k))).toEqual([]);
  });

  it('bounds the external series: at most 16 datasets per search, one series per name', async () => {
    const external = Array.from({ length: 40 }, (_, i) => ({ name: `site-${i % 20}`, cases: i, meanDice: i / 100 }));
    const s = await samples(new OperatorMetrics(source(() => [search({ phase: 'Succeeded', results: { meanDice: 0.8, external } })])));
    const series = [...s.keys()].filter((k) => k.startsWith('iacsearch_external_dice{'));
    expect(series).toHaveLength(16);
    expect(s.get('iacsearch_external_dice{namespace="lab",name="acdc",dataset="site-15"}')).toBe(0.15);
    expect(s.has('iacsearch_external_dice{namespace="lab",name="acdc",dataset="site-16"}')).toBe(false);
  });

  it('a standby exports only its own iac_operator_* series', async () => {
    const m = new OperatorMetrics(
      source(
        () => [search(status)],
        () => false,
      ),
    );
    m.setLeader(false);
    const s = await samples(m);
    expect([...s.keys()].some((k) => k.startsWith('iacsearch_') && !k.includes('phase_duration'))).toBe(false);
    expect(s.get('iac_operator_leader')).toBe(0);
  });

  it('drops the series of a deleted search', async () => {
    let objs = [search(status)];
    const m = new OperatorMetrics(source(() => objs));
    expect((await samples(m)).has('iacsearch_info{namespace="lab",name="acdc",dataset="Dataset027_ACDC",stability="jsd",set=""}')).toBe(true);
    objs = [];
    const s = await samples(m);
    expect([...s.keys()].filter((k) => k.includes('name="acdc"'))).toEqual([]);
  });
});

function set(status: Record<string, unknown> | undefined, spec: Record<string, unknown> = {}, uid = 'set-1'): KubeObject {
  return {
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearchSet',
    metadata: { name: 'lth', namespace: 'lab', uid },
    spec: { template: {}, ...spec },
    ...(status ? { status } : {}),
  };
}

const setStatus = {
  phase: 'Running',
  children: 6,
  running: 2,
  queued: 1,
  suspended: 0,
  succeeded: 2,
  failed: 1,
  gpuHours: 1.5,
  estimatedUSD: 3.75,
  savedGPUHours: 0.25,
  bestChild: { name: 'lth-s2', testDice: 0.83 },
};

function setSource(searches: () => KubeObject[], sets: () => KubeObject[], leader = () => true): MetricsSource {
  return { searches, sets, exportsSearchMetrics: leader, queueDepth: () => 0 };
}

describe('OperatorMetrics of IACSearchSets', () => {
  it('derives the iacsearchset_* series from the status and the budget', async () => {
    const s = await samples(
      new OperatorMetrics(
        setSource(
          () => [],
          () => [set(setStatus, { budget: { maxGPUHours: 10, maxCostUSD: 400, action: 'Fail' } })],
        ),
      ),
    );
    const sel = 'namespace="lab",name="lth"';
    expect(s.get(`iacsearchset_info{${sel}}`)).toBe(1);
    expect(s.get(`iacsearchset_phase{${sel},phase="Running"}`)).toBe(1);
    expect(s.get(`iacsearchset_phase{${sel},phase="Succeeded"}`)).toBe(0);
    expect(s.get(`iacsearchset_children{${sel},phase="Running"}`)).toBe(2);
    expect(s.get(`iacsearchset_children{${sel},phase="Queued"}`)).toBe(1);
    expect(s.get(`iacsearchset_children{${sel},phase="Suspended"}`)).toBe(0);
    expect(s.get(`iacsearchset_children{${sel},phase="Succeeded"}`)).toBe(2);
    expect(s.get(`iacsearchset_children{${sel},phase="Failed"}`)).toBe(1);
    expect(s.get(`iacsearchset_gpu_seconds_total{${sel}}`)).toBe(5400);
    expect(s.get(`iacsearchset_estimated_cost_usd_total{${sel}}`)).toBe(3.75);
    expect(s.get(`iacsearchset_saved_gpu_seconds_total{${sel}}`)).toBe(900);
    expect(s.get(`iacsearchset_best_test_dice{${sel}}`)).toBe(0.83);
    expect(s.get(`iacsearchset_budget_gpu_seconds{${sel}}`)).toBe(36000);
    expect(s.get(`iacsearchset_budget_usd{${sel}}`)).toBe(400);
  });

  it('a set the operator has not seen yet has its info and Pending phase, and nothing it has no figure for', async () => {
    const s = await samples(
      new OperatorMetrics(
        setSource(
          () => [],
          () => [set(undefined)],
        ),
      ),
    );
    expect(s.get('iacsearchset_info{namespace="lab",name="lth"}')).toBe(1);
    expect(s.get('iacsearchset_phase{namespace="lab",name="lth",phase="Pending"}')).toBe(1);
    const absent = [...s.keys()].filter((k) => /^iacsearchset_(children|gpu|estimated|saved|best|budget)/.test(k));
    expect(absent).toEqual([]);
  });

  it('labels a child with its set in iacsearch_info, and a search of no set with an empty set', async () => {
    const child = search(status);
    child.metadata = { ...child.metadata, name: 'lth-s2', uid: 'u-2', labels: { 'iac.dev/search-set': 'lth' } };
    const s = await samples(
      new OperatorMetrics(
        setSource(
          () => [search(status), child],
          () => [],
        ),
      ),
    );
    expect(s.get('iacsearch_info{namespace="lab",name="lth-s2",dataset="Dataset027_ACDC",stability="jsd",set="lth"}')).toBe(1);
    expect(s.get('iacsearch_info{namespace="lab",name="acdc",dataset="Dataset027_ACDC",stability="jsd",set=""}')).toBe(1);
  });

  it('never lets a set counter go back within a process (a deleted child leaves the sum), and forgets a deleted set', async () => {
    let sets = [set(setStatus)];
    const m = new OperatorMetrics(
      setSource(
        () => [],
        () => sets,
      ),
    );
    await samples(m);
    sets = [set({ ...setStatus, gpuHours: 1, estimatedUSD: 2.5, savedGPUHours: 0 })];
    let s = await samples(m);
    expect(s.get('iacsearchset_gpu_seconds_total{namespace="lab",name="lth"}')).toBe(5400);
    expect(s.get('iacsearchset_estimated_cost_usd_total{namespace="lab",name="lth"}')).toBe(3.75);
    expect(s.get('iacsearchset_saved_gpu_seconds_total{namespace="lab",name="lth"}')).toBe(900);
    sets = [];
    s = await samples(m);
    expect([...s.keys()].filter((k) => k.startsWith('iacsearchset_'))).toEqual([]);
    // Created again under the same name: a new object (uid), counted from its own status.
    sets = [set({ ...setStatus, gpuHours: 1 }, {}, 'set-2')];
    s = await samples(m);
    expect(s.get('iacsearchset_gpu_seconds_total{namespace="lab",name="lth"}')).toBe(3600);
  });

  it('keeps the set and search high-water marks apart', async () => {
    let objs = [search(status)];
    const m = new OperatorMetrics(
      setSource(
        () => objs,
        () => [set(setStatus)],
      ),
    );
    await samples(m);
    objs = [search({ ...status, cost: { estimatedUSD: 1 } })];
    const s = await samples(m);
    expect(s.get('iacsearch_estimated_cost_usd_total{namespace="lab",name="acdc"}')).toBe(2.5);
    expect(s.get('iacsearchset_estimated_cost_usd_total{namespace="lab",name="lth"}')).toBe(3.75);
  });

  it('a standby exports no iacsearchset_* series, and an operator without sets none either', async () => {
    const standby = await samples(
      new OperatorMetrics(
        setSource(
          () => [],
          () => [set(setStatus)],
          () => false,
        ),
      ),
    );
    expect([...standby.keys()].some((k) => k.startsWith('iacsearchset_'))).toBe(false);
    const none = await samples(new OperatorMetrics(source(() => [search(status)])));
    expect([...none.keys()].some((k) => k.startsWith('iacsearchset_'))).toBe(false);
  });
});
