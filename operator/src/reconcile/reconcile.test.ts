import { describe, expect, it } from 'vitest';
import { backoffSeconds, CREATE_GRACE_SECONDS } from './index.ts';
import { at, result, searchObject, setPodState, World } from './testing.ts';

const creates = (r: { actions: Array<{ type: string; object?: { kind: string; metadata: { name: string } } }> }, kind = 'Pod') =>
  r.actions.filter((a) => a.type === 'create' && a.object?.kind === kind).map((a) => a.object!.metadata.name);
const deletes = (r: { actions: Array<{ type: string; name?: string }> }) => r.actions.filter((a) => a.type === 'delete').map((a) => a.name);
const cond = (w: World, type: string) => w.status.conditions.find((c: { type: string }) => c.type === type);

/** Runs a phase's pod to success with the given termination message. */
function finish(w: World, name: string, start: number, end: number, message = result({ phase: name.split('-')[1] })) {
  w.setPod(name, { phase: 'Succeeded', startedAt: at(start), finishedAt: at(end), message });
}

describe('reconcile: the happy path', () => {
  it('runs search, prune, retrain and evaluate, one pod each, and ends Succeeded with results and cost', () => {
    const w = new World({ cost: { gpuHourlyUSD: 3.6 }, search: { maxEpochs: 100 } });
    let r = w.step(at(0));
    expect(creates(r, 'Secret')).toEqual(['demo-progress']);
    expect(creates(r, 'PersistentVolumeClaim')).toEqual(['demo-artifacts']);
    expect(creates(r)).toEqual(['demo-search-1']);
    expect(w.status.phase).toBe('Searching');
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'True', reason: 'Searching' });

    w.setPod('demo-search-1', { phase: 'Running', startedAt: at(10) });
    w.progress = { type: 'progress', phase: 'search', epoch: 5, maxEpochs: 100, stableEdges: 3, totalEdges: 14, activeOperations: 100, totalOperations: 140, epochSeconds: 10, etaSeconds: 950 };
    r = w.step(at(70));
    expect(creates(r)).toEqual([]);
    expect(w.status.progress).toMatchObject({ phase: 'search', epoch: 5, stable: '3/14', etaSeconds: 950 });
    expect(w.status.phases.search.gpuSeconds).toBe(60);
    expect(w.status.cost.projectedFullSearchGPUSeconds).toBe(60 + 95 * 10);
    expect(r.requeueAfterMs).toBe(60_000);

    finish(w, 'demo-search-1', 10, 410, result({ phase: 'search', epochs: 40, seconds: 400, meanEpochSeconds: 10, stoppedBy: 'stable', stableEdges: 14, totalEdges: 14, activeOperations: 14, totalOperations: 140 }));
    r = w.step(at(420));
    expect(creates(r)).toEqual(['demo-prune-1']);
    expect(w.status.phase).toBe('Pruning');
    expect(w.status.phases.search).toMatchObject({ succeeded: true, attempts: 1, gpuSeconds: 400, pod: 'demo-search-1' });
    expect(w.status.cost).toMatchObject({ savedGPUSeconds: 600, projectedFullSearchGPUSeconds: 1000, speedup: 2.5 });
    expect(w.status.progress).toMatchObject({ phase: 'prune', stable: '14/14' });

    const prunePod = w.pod('demo-prune-1') as any;
    expect(prunePod.spec.containers[0].resources.limits).not.toHaveProperty(['nvidia.com/gpu']);
    const genotype = { cells: [[[[0, 'conv_3x3'], [1, 'skip_connect']]]] };
    finish(w, 'demo-prune-1', 421, 425, result({ phase: 'prune', genotype }));
    r = w.step(at(430));
    expect(creates(r)).toEqual(['demo-retrain-1']);
    expect(w.status.genotype).toEqual(genotype);
    expect(w.status.phase).toBe('Retraining');

    finish(w, 'demo-retrain-1', 431, 1231, result({ phase: 'retrain', bestValDice: 0.9 }));
    r = w.step(at(1240));
    expect(creates(r)).toEqual(['demo-evaluate-1']);
    finish(w, 'demo-evaluate-1', 1241, 1301, result({ phase: 'evaluate', meanDice: 0.87, dicePerClass: { '1': 0.85, '2': 0.89 }, hd95: 2.5 }));
    r = w.step(at(1310));
    expect(creates(r)).toEqual([]);
    expect(w.status.phase).toBe('Succeeded');
    expect(w.status.results).toEqual({ bestValDice: 0.9, meanDice: 0.87, dicePerClass: { '1': 0.85, '2': 0.89 }, hd95: 2.5 });
    expect(w.status.cost).toMatchObject({ gpuSeconds: 400 + 800 + 60, gpuHours: 0.35, estimatedUSD: 1.26 });
    expect(w.status.completionTime).toBe(at(1310).toISOString());
    expect(cond(w, 'Ready')).toMatchObject({ status: 'True', reason: 'Succeeded' });
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'False' });
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'False' });
    expect(w.events.map((e) => e.reason)).toContain('Succeeded');

    // Nothing more happens, and no TTL: no requeue.
    r = w.step(at(5000));
    expect(r.actions).toEqual([]);
    expect(r.requeueAfterMs).toBeUndefined();
  });
});
