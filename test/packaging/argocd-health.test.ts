// The Argo CD health check (deploy/argocd/health.lua) run in a real Lua 5.1 interpreter,
// the dialect Argo CD embeds (gopher-lua), against IACSearch objects in every state; and
// deploy/argocd/health-set.lua against IACSearchSet objects in every state.
import { describe, expect, it, beforeAll } from 'vitest';
import { reconcileSet } from '../../operator/src/fleet/index.ts';
import type { KubeObject } from '../../operator/src/k8s/types.ts';
import { argoHealth, SET_HEALTH } from './argocd.ts';
import { requireTools } from './tools.ts';

const tools = requireTools('lua5.1');
const health = (obj: unknown) => argoHealth(tools.paths['lua5.1'], obj);

const meta = { name: 's1', namespace: 'ml', generation: 3 };
const cond = (type: string, status: string, reason: string, message = '') => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: '2026-01-01T00:00:00Z',
  observedGeneration: 3,
});
const search = (status: Record<string, unknown> | undefined) => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: meta,
  spec: { dataset: { builtin: 'phantom' } },
  ...(status ? { status } : {}),
});

describe.skipIf(tools.skip)('Argo CD health check for IACSearch (Lua 5.1)', () => {
  beforeAll(() => tools.assertPresent());

  it('is Progressing before the operator has written any status', () => {
    expect(health(search(undefined)).status).toBe('Progressing');
  });

  it('is Progressing while the operator has not observed the latest generation, whatever the old phase says', () => {
    const r = health(search({ observedGeneration: 2, phase: 'Succeeded' }));
    expect(r.status).toBe('Progressing');
    expect(r.message).toContain('generation 3');
  });

  it.each(['Pending', 'Searching', 'Pruning', 'Retraining', 'Evaluating'])('is Progressing in phase %s', (phase) => {
    const r = health(search({ observedGeneration: 3, phase, conditions: [cond('Reconciling', 'True', phase)] }));
    expect(r.status).toBe('Progressing');
    expect(r.message).toContain(phase);
  });

  it('reports the epoch and stable edges while searching', () => {
    const r = health(
      search({
        observedGeneration: 3,
        phase: 'Searching',
        progress: { epoch: 12, maxEpochs: 200, stableEdges: 4, totalEdges: 10 },
      }),
    );
    expect(r).toEqual({ status: 'Progressing', message: 'Searching: epoch 12/200, 4/10 edges stable' });
  });

  it('is Healthy on Succeeded and shows the mean Dice', () => {
    const r = health(
      search({
        observedGeneration: 3,
        phase: 'Succeeded',
        conditions: [cond('Ready', 'True', 'Succeeded', 'all phases done')],
        results: { meanDice: 0.8772 },
      }),
    );
    expect(r).toEqual({ status: 'Healthy', message: 'Search succeeded, mean Dice 0.877' });
  });

  it('is Healthy on Succeeded without results, with the Ready message', () => {
    const r = health(search({ observedGeneration: 3, phase: 'Succeeded', conditions: [cond('Ready', 'True', 'Succeeded', 'done')] }));
    expect(r).toEqual({ status: 'Healthy', message: 'done' });
  });

  it('is Degraded on Failed with the Stalled message', () => {
    const r = health(
      search({
        observedGeneration: 3,
        phase: 'Failed',
        conditions: [
          cond('Ready', 'False', 'Failed', 'search failed'),
          cond('Stalled', 'True', 'BackoffLimitExceeded', 'search failed 3 times: out of memory'),
        ],
      }),
    );
    expect(r).toEqual({ status: 'Degraded', message: 'search failed 3 times: out of memory' });
  });

  it('is Degraded when Stalled=True even though the phase is still Pending (invalid spec)', () => {
    const r = health(
      search({
        observedGeneration: 3,
        phase: 'Pending',
        conditions: [cond('Stalled', 'True', 'InvalidSpec', 'spec.search.maxEpochs: must be at least 1')],
      }),
    );
    expect(r).toEqual({ status: 'Degraded', message: 'spec.search.maxEpochs: must be at least 1' });
  });

  it('is not Degraded when Stalled is False', () => {
    const r = health(search({ observedGeneration: 3, phase: 'Retraining', conditions: [cond('Stalled', 'False', 'Progressing')] }));
    expect(r.status).toBe('Progressing');
  });

  it('is Suspended on Suspended, naming the budget when that is why', () => {
    expect(
      health(
        search({
          observedGeneration: 3,
          phase: 'Suspended',
          conditions: [cond('BudgetExceeded', 'True', 'MaxGPUHours', 'used 10.2 of 10 GPU-hours')],
        }),
      ),
    ).toEqual({ status: 'Suspended', message: 'used 10.2 of 10 GPU-hours' });
    expect(health(search({ observedGeneration: 3, phase: 'Suspended', conditions: [cond('Ready', 'False', 'Suspended', 'spec.suspend is true')] }))).toEqual({
      status: 'Suspended',
      message: 'spec.suspend is true',
    });
  });

  it('falls back to the reason when a condition has no message', () => {
    const r = health(search({ observedGeneration: 3, phase: 'Failed', conditions: [cond('Stalled', 'True', 'DeadlineExceeded')] }));
    expect(r).toEqual({ status: 'Degraded', message: 'DeadlineExceeded' });
  });
});

const setHealth = (obj: unknown) => argoHealth(tools.paths['lua5.1'], obj, SET_HEALTH);
const set = (status: Record<string, unknown> | undefined) => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearchSet',
  metadata: meta,
  spec: { template: { dataset: { format: 'phantom' } }, matrix: { seeds: [1, 2, 3] }, maxParallel: 2 },
  ...(status ? { status } : {}),
});
const counts = (c: Record<string, number>) => ({ children: 3, running: 0, queued: 0, suspended: 0, succeeded: 0, failed: 0, ...c });

describe.skipIf(tools.skip)('Argo CD health check for IACSearchSet (Lua 5.1)', () => {
  beforeAll(() => tools.assertPresent());

  it('is Progressing before the operator has written any status, and while it has not observed the latest generation', () => {
    expect(setHealth(set(undefined))).toEqual({ status: 'Progressing', message: 'Waiting for the operator to reconcile the set' });
    const r = setHealth(set({ observedGeneration: 2, phase: 'Succeeded', ...counts({ succeeded: 3 }) }));
    expect(r).toEqual({ status: 'Progressing', message: 'Waiting for the operator to observe generation 3' });
  });

  it('is Progressing while children run or wait for a slot, with the counts', () => {
    const running = setHealth(
      set({ observedGeneration: 3, phase: 'Running', ...counts({ running: 2, queued: 1 }), conditions: [cond('Reconciling', 'True', 'ChildrenRunning')] }),
    );
    expect(running).toEqual({ status: 'Progressing', message: 'Running: 0/3 children succeeded, 2 running, 1 queued' });
    const pending = setHealth(set({ observedGeneration: 3, phase: 'Pending', ...counts({ queued: 3 }) }));
    expect(pending).toEqual({ status: 'Progressing', message: 'Pending: 0/3 children succeeded, 3 queued' });
  });

  it('stays Progressing while one child failed and others still run (the set fails once all finished)', () => {
    const r = setHealth(set({ observedGeneration: 3, phase: 'Running', ...counts({ running: 1, succeeded: 1, failed: 1 }) }));
    expect(r).toEqual({ status: 'Progressing', message: 'Running: 1/3 children succeeded, 1 running, 1 failed' });
  });

  it('is Healthy when every child succeeded, with the best child', () => {
    const r = setHealth(
      set({
        observedGeneration: 3,
        phase: 'Succeeded',
        ...counts({ succeeded: 3 }),
        bestChild: { name: 's1-s2', testDice: 0.8772 },
        conditions: [cond('Ready', 'True', 'Succeeded', '3 of 3 succeeded')],
      }),
    );
    expect(r).toEqual({ status: 'Healthy', message: '3/3 children succeeded, best test Dice 0.877 (s1-s2)' });
    expect(setHealth(set({ observedGeneration: 3, phase: 'Succeeded', conditions: [cond('Ready', 'True', 'Succeeded', 'all done')] }))).toEqual({
      status: 'Healthy',
      message: 'all done',
    });
  });

  it('is Degraded when a child failed, with the Stalled message', () => {
    const r = setHealth(
      set({
        observedGeneration: 3,
        phase: 'Failed',
        ...counts({ succeeded: 2, failed: 1 }),
        conditions: [
          cond('Ready', 'False', 'ChildFailed', 'x'),
          cond('Stalled', 'True', 'ChildFailed', '2 of 3 succeeded, 0 running, 0 queued, 0 suspended, 1 failed'),
        ],
      }),
    );
    expect(r).toEqual({ status: 'Degraded', message: '2 of 3 succeeded, 0 running, 0 queued, 0 suspended, 1 failed' });
  });

  it('is Degraded when the budget with action Fail failed the set', () => {
    const r = setHealth(
      set({
        observedGeneration: 3,
        phase: 'Failed',
        ...counts({ suspended: 2, succeeded: 1 }),
        conditions: [
          cond('Stalled', 'True', 'BudgetExceeded', 'the children used 10 GPU-hours of spec.budget.maxGPUHours 10'),
          cond('BudgetExceeded', 'True', 'BudgetExceeded', 'the children used 10 GPU-hours of spec.budget.maxGPUHours 10'),
        ],
      }),
    );
    expect(r).toEqual({ status: 'Degraded', message: 'the children used 10 GPU-hours of spec.budget.maxGPUHours 10' });
  });

  it('is Degraded when Stalled=True before any child exists (invalid matrix)', () => {
    const r = setHealth(
      set({ observedGeneration: 3, phase: 'Pending', conditions: [cond('Stalled', 'True', 'InvalidSpec', 'spec.matrix: 81 children, at most 64')] }),
    );
    expect(r).toEqual({ status: 'Degraded', message: 'spec.matrix: 81 children, at most 64' });
    expect(setHealth(set({ observedGeneration: 3, phase: 'Failed', conditions: [cond('Stalled', 'True', 'ChildFailed')] }))).toEqual({
      status: 'Degraded',
      message: 'ChildFailed',
    });
  });

  it('is Suspended when the budget with action Suspend holds the children', () => {
    const r = setHealth(
      set({
        observedGeneration: 3,
        phase: 'Suspended',
        ...counts({ suspended: 2, succeeded: 1 }),
        conditions: [
          cond('Stalled', 'False', 'BudgetExceeded'),
          cond('BudgetExceeded', 'True', 'BudgetExceeded', 'the children cost 400.2 USD of spec.budget.maxCostUSD 400'),
        ],
      }),
    );
    expect(r).toEqual({ status: 'Suspended', message: 'the children cost 400.2 USD of spec.budget.maxCostUSD 400' });
  });
});

describe.skipIf(tools.skip)('Argo CD health check on the statuses the set reconcile writes', () => {
  beforeAll(() => tools.assertPresent());
  const now = new Date('2026-01-01T00:00:00Z');
  const fleet = (spec: Record<string, unknown>) => ({
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearchSet',
    metadata: { name: 'fleet', namespace: 'ns', uid: 'set-uid', generation: 1 },
    spec: {
      template: { dataset: { format: 'phantom' }, search: { maxEpochs: 3, warmupEpochs: 1 }, cost: { gpuHourlyUSD: 3.6 } },
      matrix: { seeds: [1, 2] },
      ...spec,
    },
  });
  /** One pass on the given child statuses (by seed order), and the set's health with the status it writes. */
  function healthAfter(spec: Record<string, unknown>, childStatus: Array<Record<string, unknown> | undefined>) {
    const set = fleet(spec) as KubeObject;
    const children = reconcileSet({ set, children: [], now })
      .actions.flatMap((a) => (a.type === 'create' ? [structuredClone(a.object)] : []))
      .map((c, i) => (childStatus[i] ? { ...c, status: childStatus[i] } : c));
    const { status } = reconcileSet({ set, children, now });
    return setHealth({ ...set, status });
  }
  const cost = (usd: number) => ({ gpuSeconds: usd * 1000, gpuHours: usd / 3.6, estimatedUSD: usd });

  it('Progressing while children run or wait, Healthy when both succeeded, Degraded when one failed', () => {
    expect(healthAfter({ maxParallel: 1 }, [{ phase: 'Searching' }]).status).toBe('Progressing');
    const done = healthAfter({}, [
      { phase: 'Succeeded', results: { meanDice: 0.8 } },
      { phase: 'Succeeded', results: { meanDice: 0.85 } },
    ]);
    expect(done).toEqual({ status: 'Healthy', message: '2/2 children succeeded, best test Dice 0.850 (fleet-s2)' });
    expect(healthAfter({}, [{ phase: 'Succeeded' }, { phase: 'Failed' }]).status).toBe('Degraded');
  });

  it('Suspended when the budget holds the children, Degraded when the budget fails the set', () => {
    const over = [
      { phase: 'Searching', cost: cost(30) },
      { phase: 'Searching', cost: cost(30) },
    ];
    const suspended = healthAfter({ budget: { maxCostUSD: 50, action: 'Suspend' } }, over);
    expect(suspended.status).toBe('Suspended');
    expect(suspended.message).toContain('maxCostUSD');
    const failed = healthAfter({ budget: { maxCostUSD: 50, action: 'Fail' } }, over);
    expect(failed.status).toBe('Degraded');
    expect(failed.message).toContain('maxCostUSD');
  });

  it('Degraded on an invalid matrix', () => {
    expect(healthAfter({ matrix: { seeds: [1, 1] } }, []).status).toBe('Degraded');
  });
});
