import { describe, expect, it } from 'vitest';
import { computeCost, type CostInput } from './cost.ts';

const base = (over: Partial<CostInput> = {}): CostInput => ({
  phases: {},
  running: {},
  gpuHourlyUSD: 2,
  maxEpochs: 200,
  searchGPUs: 2,
  searchSucceeded: false,
  ...over,
});

describe('computeCost', () => {
  it('adds finished attempts once and the running attempt up to now, per phase', () => {
    const phases: CostInput['phases'] = {
      search: { attempts: 2, failures: 1, preemptions: 0, gpuSeconds: 0, history: [{ pod: 's-1', outcome: 'Failed', gpuSeconds: 1800 }] },
      prune: { attempts: 1, failures: 0, preemptions: 0, gpuSeconds: 0, history: [{ pod: 'p-1', outcome: 'Succeeded', gpuSeconds: 0 }] },
    };
    const cost = computeCost(base({ phases, running: { search: 1800 } }));
    expect(cost).toMatchObject({ gpuSeconds: 3600, gpuHours: 1, estimatedUSD: 2 });
    expect(phases.search!.gpuSeconds).toBe(3600);
  });

  it('projects the full-length search and what stopping on stability saved', () => {
    const phases: CostInput['phases'] = {
      search: { attempts: 1, failures: 0, preemptions: 0, gpuSeconds: 0, history: [{ pod: 's-1', outcome: 'Succeeded', gpuSeconds: 2 * (100 + 50 * 10) }] },
    };
    const cost = computeCost(base({ phases, searchSucceeded: true, searchResult: { epochs: 50, seconds: 500, meanEpochSeconds: 10 } }));
    expect(cost.savedGPUSeconds).toBe(150 * 10 * 2);
    expect(cost.projectedFullSearchGPUSeconds).toBe(1200 + 3000);
    expect(cost.speedup).toBe(4);
  });

  it('projects while the search runs, and reports no GPU savings for a search without GPUs', () => {
    const running = computeCost(
      base({
        phases: { search: { attempts: 1, failures: 0, preemptions: 0, gpuSeconds: 0 } },
        running: { search: 200 },
        progress: { epoch: 10, epochSeconds: 10 },
      }),
    );
    expect(running.projectedFullSearchGPUSeconds).toBe(200 + 190 * 10 * 2);
    expect(running.savedGPUSeconds).toBeUndefined();
    const cpu = computeCost(base({ searchGPUs: 0, searchSucceeded: true, searchResult: { epochs: 50, seconds: 500, meanEpochSeconds: 10 } }));
    expect(cpu.savedGPUSeconds).toBeUndefined();
    expect(cpu.speedup).toBe(4);
  });
});
