// The Argo CD health check (deploy/argocd/health.lua) run in a real Lua 5.1 interpreter,
// the dialect Argo CD embeds (gopher-lua), against IACSearch objects in every state.
import { describe, expect, it, beforeAll } from 'vitest';
import { argoHealth } from './argocd.ts';
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
