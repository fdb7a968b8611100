// The operator-scale benchmark's smallest setting runs through the real control plane and
// reports sensible figures (the full run is `npm run bench:operator-scale`).
import { describe, expect, it } from 'vitest';
import { clusterAvailability } from '../cluster/suite.ts';
import { histogramQuantile, markdown, runOperatorScale } from './operator-scale.ts';

const availability = clusterAvailability();

describe('histogramQuantile', () => {
  it('interpolates inside the bucket holding the rank, as Prometheus does', () => {
    const h = {
      buckets: [
        [0.01, 50],
        [0.1, 90],
        [1, 100],
        [Infinity, 100],
      ] as Array<[number, number]>,
      count: 100,
    };
    expect(histogramQuantile(0.5, h)).toBeCloseTo(0.01);
    expect(histogramQuantile(0.7, h)).toBeCloseTo(0.055);
    expect(histogramQuantile(0.99, h)).toBeCloseTo(0.91);
    expect(histogramQuantile(0.5, { buckets: [], count: 0 })).toBe(0);
  });
});

describe.skipIf(availability.skip)('operator-scale benchmark, smallest setting', () => {
  it('runs 3 searches to success and measures the operator', async () => {
    const r = await runOperatorScale({ searches: 3, quietSeconds: 5, simulateSeconds: 1, workers: 2 });
    expect(r.settings.searches).toBe(3);
    expect(r.seconds.toEveryFirstPod).toBeGreaterThan(0);
    expect(r.seconds.toAllSucceeded).toBeGreaterThan(r.seconds.toEveryFirstPod);
    // four phases, one pod each, per search; one Secret and one claim per search. A create
    // of a pod that already exists (409: the informer had not shown it yet, a load-dependent
    // and harmless repeat, docs/iacsearch-api.md) is counted apart and is the only refusal.
    expect(r.apiRequests.life.byVerbResource['CREATE pods']).toBe(12);
    expect(Object.keys(r.apiRequests.life.byVerbResource).filter((k) => /^CREATE pods \d+$/.test(k) && k !== 'CREATE pods 409')).toEqual([]);
    expect(r.apiRequests.life.byVerbResource['CREATE secrets']).toBe(3);
    expect(r.apiRequests.life.byVerbResource['CREATE persistentvolumeclaims']).toBe(3);
    expect(r.apiRequests.life.perSearch).toBeCloseTo(r.apiRequests.life.total / 3, 1);
    expect(r.apiRequests.life.lease).toBeGreaterThan(0);
    expect(r.reconcile.count).toBeGreaterThanOrEqual(12);
    expect(r.reconcile.p99Ms).toBeGreaterThanOrEqual(r.reconcile.p50Ms);
    expect(r.reconcile.p50Ms).toBeGreaterThan(0);
    // steady state: nothing beyond watches and the leader Lease
    expect(r.apiRequests.quiet.total).toBe(0);
    expect(r.apiRequests.quiet.seconds).toBeGreaterThanOrEqual(5);
    expect(r.apiRequests.allClients.life).toBeGreaterThan(r.apiRequests.life.total);
    expect(r.operatorMemoryMiB.peakRss).toBeGreaterThan(20);
    expect(r.operatorMemoryMiB.peakRss).toBeGreaterThanOrEqual(r.operatorMemoryMiB.rssBeforeSearches);
    const md = markdown({ benchmark: 'operator-scale', date: r.date, machine: r.machine, runs: [r, r] });
    expect(md).toContain('per search');
    expect(md).toContain('--searches 3,3');
    const before = {
      benchmark: 'operator-scale' as const,
      date: r.date,
      machine: r.machine,
      runs: [{ ...r, apiRequests: { ...r.apiRequests, life: { ...r.apiRequests.life, perSearch: 20.5 } } }],
    };
    expect(markdown({ benchmark: 'operator-scale', date: r.date, machine: r.machine, runs: [r] }, before)).toMatch(
      /Before and after, N = 3, .*20\.5 requests per search.*this one/,
    );
  }, 600_000); // the run's own waits are bounded by events (600 s + 4 s a search), not by vitest's default 120 s
});
