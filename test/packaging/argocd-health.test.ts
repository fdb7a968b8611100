// The Argo CD health check (deploy/argocd/health.lua) run in a real Lua 5.1 interpreter,
// the dialect Argo CD embeds (gopher-lua), against IACSearch objects in every state.
import { describe, expect, it, beforeAll } from 'vitest';
import { join } from 'node:path';
import { repoRoot, requireTools, run } from './tools.ts';

const tools = requireTools('lua5.1');
const script = join(repoRoot, 'deploy/argocd/health.lua');

/** JSON value -> Lua table constructor, the way Argo CD hands the object to the script. */
function toLua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v); // JSON string escapes are valid Lua 5.1 escapes for this text
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `{${v.map(toLua).join(', ')}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `[${JSON.stringify(k)}] = ${toLua(x)}`)
    .join(', ')}}`;
}

function health(obj: unknown): { status: string; message: string } {
  const program = `obj = ${toLua(obj)}\nlocal hs = dofile(${JSON.stringify(script)})\nio.write(hs.status, "\\n", hs.message or "")`;
  const r = run(tools.paths['lua5.1'], ['-e', program]);
  if (r.status !== 0) throw new Error(`lua5.1 failed (${r.status}): ${r.stderr}`);
  const [status, ...message] = r.stdout.split('\n');
  return { status, message: message.join('\n') };
}

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
    const r = health(
      search({ observedGeneration: 3, phase: 'Succeeded', conditions: [cond('Ready', 'True', 'Succeeded', 'done')] }),
    );
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
    const r = health(
      search({ observedGeneration: 3, phase: 'Retraining', conditions: [cond('Stalled', 'False', 'Progressing')] }),
    );
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
    expect(
      health(search({ observedGeneration: 3, phase: 'Suspended', conditions: [cond('Ready', 'False', 'Suspended', 'spec.suspend is true')] })),
    ).toEqual({ status: 'Suspended', message: 'spec.suspend is true' });
  });

  it('falls back to the reason when a condition has no message', () => {
    const r = health(
      search({ observedGeneration: 3, phase: 'Failed', conditions: [cond('Stalled', 'True', 'DeadlineExceeded')] }),
    );
    expect(r).toEqual({ status: 'Degraded', message: 'DeadlineExceeded' });
  });
});
