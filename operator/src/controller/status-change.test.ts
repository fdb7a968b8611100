import { describe, expect, it } from 'vitest';
import { isTransition } from './status-change.ts';

const base = {
  phase: 'Searching',
  observedGeneration: 1,
  startTime: '2026-01-01T00:00:00Z',
  conditions: [
    { type: 'Ready', status: 'False', reason: 'Searching', message: 'search attempt 1 created (pod s-search-1)', lastTransitionTime: 't0' },
    { type: 'Reconciling', status: 'True', reason: 'Searching', message: 'search attempt 1 created (pod s-search-1)', lastTransitionTime: 't0' },
  ],
  phases: { search: { attempts: 1, failures: 0, preemptions: 0, gpuSeconds: 0, pod: 's-search-1', message: 'search attempt 1 created (pod s-search-1)' } },
  cost: { gpuSeconds: 0, gpuHours: 0, estimatedUSD: 0 },
};
const next = (change: (s: typeof base & Record<string, unknown>) => void) => {
  const s = structuredClone(base) as typeof base & Record<string, unknown>;
  change(s);
  return s;
};

describe('isTransition', () => {
  it('calls news what only changes messages, progress and running GPU-seconds', () => {
    const running = next((s) => {
      s.conditions[0].message = s.conditions[1].message = 'search attempt 1 running (pod s-search-1)';
      s.phases.search.message = 'search attempt 1 running (pod s-search-1)';
      s.phases.search.gpuSeconds = 12;
      s.cost = { gpuSeconds: 12, gpuHours: 0.0033, estimatedUSD: 0.01 };
      s.progress = { phase: 'search', epoch: 3, maxEpochs: 10 };
    });
    expect(isTransition(base, running)).toBe(false);
    const waiting = next((s) => {
      s.conditions[1].reason = s.conditions[0].reason = 'WaitingForResources';
      s.conditions[1].message = 'search attempt 1 waiting for a node: 0/3 nodes have nvidia.com/gpu';
    });
    expect(isTransition(base, waiting)).toBe(false);
    expect(isTransition(waiting, base)).toBe(false);
    expect(isTransition(base, base)).toBe(false);
  });

  it('calls a transition a new phase, a condition that turns True or False, an attempt, a finished attempt, a result', () => {
    expect(
      isTransition(
        base,
        next((s) => (s.phase = 'Pruning')),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => (s.conditions[0].status = 'True')),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => s.conditions.push({ type: 'BudgetExceeded', status: 'True', reason: 'BudgetExceeded', message: '', lastTransitionTime: 't1' })),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => (s.phases.search.attempts = 2)),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => (s.phases.search.failures = 1)),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => ((s.phases.search as Record<string, unknown>).succeeded = true)),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => ((s.phases.search as Record<string, unknown>).history = [{ pod: 's-search-1', outcome: 'Failed', gpuSeconds: 3 }])),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => ((s.phases as Record<string, unknown>).prune = { attempts: 1 })),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => (s.results = { meanDice: 0.8 })),
      ),
    ).toBe(true);
    expect(
      isTransition(
        base,
        next((s) => (s.observedGeneration = 2)),
      ),
    ).toBe(true);
    expect(isTransition({}, base)).toBe(true);
  });
});
