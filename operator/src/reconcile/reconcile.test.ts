import { describe, expect, it } from 'vitest';
import { backoffSeconds, CREATE_GRACE_SECONDS } from './index.ts';
import type { KubeObject } from './types.ts';
import { at, result, runningWorld, setPodState, World } from '../../testing/world.ts';

const creates = (r: { actions: Array<{ type: string; object?: { kind: string; metadata: { name: string } } }> }, kind = 'Pod') =>
  r.actions.filter((a) => a.type === 'create' && a.object?.kind === kind).map((a) => a.object!.metadata.name);
const deletes = (r: { actions: Array<{ type: string; name?: string }> }) => r.actions.filter((a) => a.type === 'delete').map((a) => a.name);
const cond = (w: World, type: string) => w.status.conditions.find((c: { type: string }) => c.type === type);

/** Runs a phase's pod to success with the given termination message. */
function finish(w: World, name: string, start: number, end: number, message = result({ phase: name.split('-')[1] })) {
  w.setPod(name, { phase: 'Succeeded', startedAt: at(start), finishedAt: at(end), message });
}

describe('reconcile: the happy path', () => {
  it("records no event over a search's happy path (phase changes and the outcome are in the status)", () => {
    const w = new World();
    const events = (r: { actions: Array<{ type: string; reason?: string; message?: string }> }) => r.actions.filter((a) => a.type === 'event');
    const all: string[] = [];
    let r = w.step(at(0));
    all.push(...events(r).map((e) => e.reason!));
    let t = 10;
    for (const stage of ['search', 'prune', 'retrain', 'evaluate']) {
      finish(w, `demo-${stage}-1`, t, t + 10);
      t += 20;
      r = w.step(at(t));
      all.push(...events(r).map((e) => e.reason!));
    }
    expect(w.status.phase).toBe('Succeeded');
    expect(all).toEqual([]);
  });

  it('with phaseEvents, records one event when a phase starts with its pod, naming the pod, and one when it ends', () => {
    const w = new World({}, { settings: { phaseEvents: true } });
    const events = (r: { actions: Array<{ type: string; reason?: string; message?: string }> }) => r.actions.filter((a) => a.type === 'event');
    let r = w.step(at(0));
    expect(events(r)).toEqual([
      expect.objectContaining({ reason: 'Searching', message: 'search phase started: search attempt 1 created (pod demo-search-1)' }),
    ]);
    finish(w, 'demo-search-1', 10, 20);
    r = w.step(at(30));
    expect(events(r).map((e) => e.reason)).toEqual(['PhaseSucceeded', 'Pruning']);
    expect(events(r)[1].message).toContain('pod demo-prune-1');
    let t = 40;
    for (const stage of ['prune', 'retrain', 'evaluate']) {
      finish(w, `demo-${stage}-1`, t, t + 10);
      t += 20;
      r = w.step(at(t));
    }
    expect(events(r).map((e) => e.reason)).toEqual(['PhaseSucceeded', 'Succeeded']);
  });

  it("puts a trainer's warnings on the resource: in status.progress and one Warning event each", () => {
    const w = new World({ search: { maxEpochs: 100 } });
    w.step(at(0));
    w.setPod('demo-search-1', { phase: 'Running', startedAt: at(10) });
    const warning = 'search.stability.threshold 0.001 is above every divergence of the first windows (largest 4.1e-05 at epoch 5): ...';
    const reasons = () => w.events.filter((e) => e.reason === 'TrainerWarning').map((e) => e.message);
    w.progress = { type: 'progress', phase: 'search', epoch: 4, maxEpochs: 100 };
    w.step(at(40));
    expect(reasons()).toEqual([]);
    w.progress = { type: 'progress', phase: 'search', epoch: 5, maxEpochs: 100, warnings: [warning] };
    w.step(at(50));
    expect(w.status.progress.warnings).toEqual([warning]);
    expect(reasons()).toEqual([warning]);
    // Later events repeat it: no second event.
    w.progress = { type: 'progress', phase: 'search', epoch: 6, maxEpochs: 100, warnings: [warning] };
    w.step(at(60));
    expect(reasons()).toEqual([warning]);
    // A pod that sends new text in every event gets at most four warnings (and events) a phase.
    for (let i = 0; i < 10; i++) {
      w.progress = { type: 'progress', phase: 'search', epoch: 7 + i, maxEpochs: 100, warnings: [warning, `noise ${i}`] };
      w.step(at(61 + i));
    }
    expect(reasons()).toEqual([warning, 'noise 0', 'noise 1', 'noise 2']);
    expect(w.status.progress.warnings).toEqual([warning, 'noise 0', 'noise 1', 'noise 2']);
    // The result carries them too (also when no progress event reached the operator).
    finish(w, 'demo-search-1', 10, 100, result({ phase: 'search', epochs: 17, stoppedBy: 'stable', warnings: [warning] }));
    w.step(at(110));
    expect(reasons()).toHaveLength(4);
    expect(w.status.searchResult.warnings).toEqual([warning]);
  });

  it('runs search, prune, retrain and evaluate, one pod each, and ends Succeeded with results and cost', () => {
    const w = new World({ cost: { gpuHourlyUSD: 3.6 }, search: { maxEpochs: 100 } });
    let r = w.step(at(0));
    expect(creates(r, 'Secret')).toEqual(['demo-progress']);
    expect(creates(r, 'PersistentVolumeClaim')).toEqual(['demo-artifacts']);
    expect(creates(r)).toEqual(['demo-search-1']);
    expect(w.status.phase).toBe('Searching');
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'True', reason: 'Searching' });

    w.setPod('demo-search-1', { phase: 'Running', startedAt: at(10) });
    w.progress = {
      type: 'progress',
      phase: 'search',
      epoch: 5,
      maxEpochs: 100,
      stableEdges: 3,
      totalEdges: 14,
      activeOperations: 100,
      totalOperations: 140,
      epochSeconds: 10,
      etaSeconds: 950,
    };
    r = w.step(at(70));
    expect(creates(r)).toEqual([]);
    expect(w.status.progress).toMatchObject({ phase: 'search', epoch: 5, stable: '3/14', etaSeconds: 950 });
    expect(w.status.phases.search.gpuSeconds).toBe(60);
    expect(w.status.cost.projectedFullSearchGPUSeconds).toBe(60 + 95 * 10);
    expect(r.requeueAfterMs).toBe(60_000);

    finish(
      w,
      'demo-search-1',
      10,
      410,
      result({
        phase: 'search',
        epochs: 40,
        seconds: 400,
        meanEpochSeconds: 10,
        stoppedBy: 'stable',
        stableEdges: 14,
        totalEdges: 14,
        activeOperations: 14,
        totalOperations: 140,
      }),
    );
    r = w.step(at(420));
    expect(creates(r)).toEqual(['demo-prune-1']);
    expect(w.status.phase).toBe('Pruning');
    expect(w.status.phases.search).toMatchObject({ succeeded: true, attempts: 1, gpuSeconds: 400, pod: 'demo-search-1' });
    expect(w.status.cost).toMatchObject({ savedGPUSeconds: 600, projectedFullSearchGPUSeconds: 1000, speedup: 2.5 });
    expect(w.status.progress).toMatchObject({ phase: 'prune', stable: '14/14' });

    const prunePod = w.pod('demo-prune-1') as KubeObject & { spec: { containers: { resources: { limits: Record<string, string> } }[] } };
    expect(prunePod.spec.containers[0].resources.limits).not.toHaveProperty(['nvidia.com/gpu']);
    const genotype = {
      cells: [
        [
          [
            [0, 'conv_3x3'],
            [1, 'skip_connect'],
          ],
        ],
      ],
    };
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
    expect(w.status.progress).toMatchObject({ phase: 'search', epoch: 40, maxEpochs: 100, stable: '14/14' });
    expect(w.status.cost).toMatchObject({ gpuSeconds: 400 + 800 + 60, gpuHours: 0.35, estimatedUSD: 1.26 });
    expect(w.status.completionTime).toBe(at(1310).toISOString());
    expect(cond(w, 'Ready')).toMatchObject({ status: 'True', reason: 'Succeeded' });
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'False' });
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'False' });
    expect(w.events.map((e) => e.reason)).not.toContain('Succeeded'); // the outcome is in the status; an event only with phaseEvents

    // Nothing more happens, and no TTL: no requeue.
    r = w.step(at(5000));
    expect(r.actions).toEqual([]);
    expect(r.requeueAfterMs).toBeUndefined();
  });
});

describe("reconcile: the evaluate phase's figures", () => {
  /** A search run to its evaluate pod, which ends with `evaluate` as its result. */
  function evaluated(evaluate: Record<string, unknown>, settings = {}) {
    const w = new World({}, { settings });
    w.step(at(0));
    for (const [i, stage] of ['search', 'prune', 'retrain'].entries()) {
      finish(w, `demo-${stage}-1`, 100 * i + 1, 100 * i + 50, result({ phase: stage, ...(stage === 'retrain' && { bestValDice: 0.9 }) }));
      w.step(at(100 * i + 60));
    }
    finish(w, 'demo-evaluate-1', 301, 350, result({ phase: 'evaluate', ...evaluate }));
    return { w, r: w.step(at(360)) };
  }

  it("copies the fair baseline, the gain and every external dataset's figures into status.results", () => {
    const external = [
      { name: 'site-b', cases: 12, meanDice: 0.71, dicePerClass: { anterior: 0.7, posterior: 0.72 }, hd95: 3.1 },
      { name: 'site-c', cases: 30, meanDice: 0.64, dicePerClass: { anterior: 0.6, posterior: 0.68 } },
    ];
    const { w, r } = evaluated(
      { meanDice: 0.8, dicePerClass: { anterior: 0.79, posterior: 0.81 }, hd95: 2.5, baselineMeanDice: 0.76, diceGain: 0.04, external },
      { phaseEvents: true },
    );
    expect(w.status.phase).toBe('Succeeded');
    expect(w.status.results).toEqual({
      bestValDice: 0.9,
      meanDice: 0.8,
      dicePerClass: { anterior: 0.79, posterior: 0.81 },
      hd95: 2.5,
      baselineMeanDice: 0.76,
      diceGain: 0.04,
      external,
    });
    const done = r.actions.find((a) => a.type === 'event' && a.reason === 'PhaseSucceeded') as { message: string };
    expect(done.message).toBe(
      'evaluate finished (pod demo-evaluate-1): mean Dice 0.8000, gain of the cells over the U-Net trained with the same budget +0.0400; site-b 0.7100, site-c 0.6400',
    );
    // and it stays as the pod reported it
    w.step(at(1000));
    expect(w.status.results.external).toEqual(external);
    expect(w.events.map((e) => e.reason)).not.toContain('StatusCorrected');
  });

  it('keeps the status within its bounds: a malformed external entry is left out, never the result', () => {
    const external = [
      { name: 'ok', cases: 3, meanDice: 0.5, hd95: null },
      { name: 'no-dice', cases: 3 },
      { name: 'x'.repeat(64), cases: 3, meanDice: 0.5 },
      { name: 'ok', cases: 9, meanDice: 0.9 },
      ...Array.from({ length: 40 }, (_, i) => ({ name: `d${i}`, cases: 1, meanDice: i / 100 })),
    ];
    const { w } = evaluated({ meanDice: 0.8, external });
    expect(w.status.results.meanDice).toBe(0.8);
    expect(w.status.results.external[0]).toEqual({ name: 'ok', cases: 3, meanDice: 0.5 });
    expect(w.status.results.external).toHaveLength(32);
    expect(w.status.results.external.at(-1).name).toBe('d30');
  });

  it('has no external figures or gain where the result has none', () => {
    const { w } = evaluated({ meanDice: 0.8 });
    expect(w.status.results).toEqual({ bestValDice: 0.9, meanDice: 0.8 });
  });
});

const running = runningWorld;

describe('reconcile: failures, disruptions and retries', () => {
  it.each([
    { failures: 1, wait: 10 },
    { failures: 2, wait: 20 },
    { failures: 3, wait: 40 },
    { failures: 10, wait: 360 },
  ])('backs off exponentially: $wait s after failure $failures', ({ failures, wait }) => {
    expect(backoffSeconds(failures)).toBe(wait);
  });

  it('retries a failed attempt after the backoff, counting it against backoffLimit', () => {
    const w = running();
    w.setPod('demo-search-1', {
      phase: 'Failed',
      startedAt: at(10),
      finishedAt: at(100),
      message: result({ phase: 'search', ok: false, message: 'NaN loss' }),
    });
    let r = w.step(at(101));
    expect(creates(r)).toEqual([]);
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'True', reason: 'BackoffAfterFailure' });
    expect(w.status.phases.search).toMatchObject({ failures: 1, preemptions: 0, gpuSeconds: 90 });
    expect(w.status.phases.search.message).toMatch(/retrying in 9s/);
    expect(r.requeueAfterMs).toBe(9000);
    expect(w.events.some((e) => e.reason === 'AttemptFailed' && /NaN loss/.test(e.message))).toBe(true);
    r = w.step(at(110));
    expect(creates(r)).toEqual(['demo-search-2']);
    expect(w.status.phases.search).toMatchObject({ attempts: 2, pod: 'demo-search-2', failures: 1 });
    // The failed attempt's GPU-seconds are recorded once, however often we look.
    w.step(at(200));
    w.step(at(300));
    expect(w.status.phases.search.history).toHaveLength(1);
    expect(w.status.phases.search.gpuSeconds).toBe(90);
  });

  it.each([
    { name: 'DisruptionTarget condition (preemption)', state: { disruption: 'PreemptionByScheduler' } },
    { name: 'reason Evicted', state: { reason: 'Evicted' } },
    { name: 'reason Preempting', state: { reason: 'Preempting' } },
  ])('does not count a disruption ($name) and retries at once', ({ state }) => {
    const w = running({ backoffLimit: 0 });
    w.setPod('demo-search-1', { phase: 'Failed', startedAt: at(10), finishedAt: at(50), exitCode: 137, ...state });
    const r = w.step(at(55));
    expect(creates(r)).toEqual(['demo-search-2']);
    expect(w.status.phase).toBe('Searching');
    expect(w.status.phases.search).toMatchObject({ failures: 0, preemptions: 1, gpuSeconds: 40 });
    expect(w.status.phases.search.history[0]).toMatchObject({ outcome: 'Disrupted' });
  });

  it('fails the search when failures exceed backoffLimit', () => {
    const w = running({ backoffLimit: 1 });
    w.setPod('demo-search-1', { phase: 'Failed', startedAt: at(10), finishedAt: at(30) });
    expect(creates(w.step(at(31)))).toEqual([]);
    expect(creates(w.step(at(41)))).toEqual(['demo-search-2']);
    w.setPod('demo-search-2', { phase: 'Failed', startedAt: at(45), finishedAt: at(60), message: 'out of memory' });
    const r = w.step(at(61));
    expect(creates(r)).toEqual([]);
    expect(w.status.phase).toBe('Failed');
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'BackoffLimitExceeded' });
    expect(cond(w, 'Ready')).toMatchObject({ status: 'False', reason: 'BackoffLimitExceeded' });
    expect(cond(w, 'Stalled').message).toMatch(/failed 2 times, over spec.backoffLimit 1/);
    expect(w.status.completionTime).toBe(at(61).toISOString());
    // Failed is final: later looks change nothing.
    expect(creates(w.step(at(1000)))).toEqual([]);
    expect(w.status.phase).toBe('Failed');
  });

  it('fails at once when the trainer rejects its configuration (exit status 2)', () => {
    const w = running({ backoffLimit: 5 });
    w.setPod('demo-search-1', {
      phase: 'Failed',
      startedAt: at(10),
      finishedAt: at(12),
      exitCode: 2,
      message: result({ phase: 'search', ok: false, message: 'dataset.path: no dataset.json' }),
    });
    w.step(at(13));
    expect(w.status.phase).toBe('Failed');
    expect(cond(w, 'Stalled')).toMatchObject({ reason: 'InvalidConfiguration' });
    expect(cond(w, 'Stalled').message).toMatch(/no dataset.json/);
  });

  it('replaces a pod that vanished, but not one merely missing from a stale cache', () => {
    const w = new World();
    w.step(at(0));
    w.pods = []; // the informer has not seen the new pod yet
    let r = w.step(at(2));
    expect(creates(r)).toEqual(['demo-search-1']); // AlreadyExists at worst: never a second attempt
    expect(w.status.phases.search.attempts).toBe(1);
    w.setPod('demo-search-1', { phase: 'Running', startedAt: at(5) });
    w.step(at(100));
    w.pods = []; // deleted by someone, node gone: it is not coming back
    r = w.step(at(200));
    expect(creates(r)).toEqual(['demo-search-2']);
    expect(w.status.phases.search).toMatchObject({ preemptions: 1, failures: 0, attempts: 2 });
    expect(w.status.phases.search.history[0]).toMatchObject({ pod: 'demo-search-1', outcome: 'Disrupted', reason: 'PodVanished' });
    expect(CREATE_GRACE_SECONDS).toBeLessThan(100);
  });
});

describe('reconcile: waiting for resources', () => {
  it('says why a pod waits, and waiting time is not GPU time', () => {
    const w = new World();
    w.step(at(0));
    w.setPod('demo-search-1', { phase: 'Pending', unschedulable: '0/3 nodes are available: 3 Insufficient nvidia.com/gpu.' });
    w.step(at(600));
    expect(w.status.phase).toBe('Searching');
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'True', reason: 'WaitingForResources' });
    expect(cond(w, 'Reconciling').message).toMatch(/Insufficient nvidia.com\/gpu/);
    expect(w.status.cost.gpuSeconds).toBe(0);
  });
});

describe('reconcile: suspend and resume', () => {
  it('deletes the pod on suspend, records its GPU-seconds once, and resumes with a new attempt', () => {
    const w = running();
    w.editSpec({ suspend: true });
    let r = w.step(at(100));
    expect(deletes(r)).toEqual(['demo-search-1']);
    expect(w.status.phase).toBe('Suspended');
    expect(w.status.phases.search.history).toEqual([expect.objectContaining({ pod: 'demo-search-1', outcome: 'Stopped', gpuSeconds: 90 })]);
    expect(cond(w, 'Ready')).toMatchObject({ status: 'False', reason: 'Suspended' });
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'False' });
    expect(w.status.startTime).toBeUndefined();
    expect(w.status.activeSeconds).toBe(100);
    expect(w.status.observedGeneration).toBe(2);

    r = w.step(at(5000)); // stays suspended, nothing to do
    expect(r.actions).toEqual([]);
    expect(w.status.cost.gpuSeconds).toBe(90);

    w.editSpec({ suspend: false });
    r = w.step(at(6000));
    expect(creates(r)).toEqual(['demo-search-2']);
    expect(w.status.phase).toBe('Searching');
    expect(w.status.startTime).toBe(at(6000).toISOString());
    expect(w.status.phases.search).toMatchObject({ failures: 0, attempts: 2 });
    expect(w.events.map((e) => e.reason)).toContain('Resumed');
  });

  it('does not start the next attempt while the suspended pod is still terminating', () => {
    const w = running();
    w.editSpec({ suspend: true });
    w.step(at(100));
    // The delete is graceful: the pod is still there, terminating, when the user resumes.
    const old = setPodState(searchPod(), { phase: 'Running', startedAt: at(10) });
    w.pods = [{ ...old, metadata: { ...old.metadata, deletionTimestamp: at(100).toISOString() } }];
    w.editSpec({ suspend: false });
    let r = w.step(at(105));
    expect(creates(r)).toEqual([]);
    expect(cond(w, 'Reconciling')).toMatchObject({ reason: 'WaitingForPodTermination' });
    // It ends as Failed (killed): already recorded as Stopped, so neither a failure nor counted twice.
    w.pods = [setPodState(w.pods[0], { phase: 'Failed', startedAt: at(10), finishedAt: at(110), exitCode: 143 })];
    r = w.step(at(111));
    expect(creates(r)).toEqual(['demo-search-2']);
    expect(w.status.phases.search).toMatchObject({ failures: 0, gpuSeconds: 90 });
  });

  it('starts suspended when created with suspend: true', () => {
    const w = new World({ suspend: true });
    const r = w.step(at(0));
    expect(creates(r)).toEqual([]);
    expect(w.status.phase).toBe('Suspended');
  });
});

function searchPod() {
  const created = new World().step(at(0)).actions.find((a) => a.type === 'create' && a.object.kind === 'Pod');
  if (created?.type !== 'create') throw new Error('no pod created');
  return created.object;
}

describe('reconcile: budget and deadline', () => {
  it('suspends when the GPU-hour budget is used up, and resumes when it is raised', () => {
    const w = running({ budget: { maxGPUHours: 0.01 } }); // 36 GPU-seconds
    let r = w.step(at(30));
    expect(w.status.phase).toBe('Searching');
    expect(cond(w, 'BudgetExceeded')).toMatchObject({ status: 'False' });
    r = w.step(at(50));
    expect(deletes(r)).toEqual(['demo-search-1']);
    expect(w.status.phase).toBe('Suspended');
    expect(cond(w, 'BudgetExceeded')).toMatchObject({ status: 'True', reason: 'BudgetExceeded' });
    expect(cond(w, 'Ready')).toMatchObject({ reason: 'BudgetExceeded' });
    expect(w.status.phases.search.history[0]).toMatchObject({ outcome: 'Stopped', gpuSeconds: 40 });
    w.editSpec({ budget: { maxGPUHours: 1 } });
    r = w.step(at(60));
    expect(creates(r)).toEqual(['demo-search-2']);
    expect(cond(w, 'BudgetExceeded')).toMatchObject({ status: 'False' });
  });

  it('looks again when the running attempt will reach the budget, not a resync later', () => {
    // Started at 10 s with 1 GPU; at 20 s it has used 10 GPU-seconds.
    expect(running({ budget: { maxGPUHours: 0.01 } }).last!.requeueAfterMs).toBe(26_000); // 36 GPU-seconds
    expect(running({ cost: { gpuHourlyUSD: 36 }, budget: { maxCostUSD: 0.5 } }).last!.requeueAfterMs).toBe(40_000); // 50 GPU-seconds
    expect(running({ budget: { maxGPUHours: 1 } }).last!.requeueAfterMs).toBe(60_000); // the resync comes first
  });

  it('fails when the cost budget is exceeded with action Fail', () => {
    const w = running({ cost: { gpuHourlyUSD: 36 }, budget: { maxCostUSD: 0.5, action: 'Fail' } }); // 0.5 USD = 50 GPU-seconds
    w.step(at(59));
    expect(w.status.phase).toBe('Searching');
    const r = w.step(at(61));
    expect(deletes(r)).toEqual(['demo-search-1']);
    expect(w.status.phase).toBe('Failed');
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'BudgetExceeded' });
  });

  it('fails at activeDeadlineSeconds, not counting suspended time', () => {
    const w = running({ activeDeadlineSeconds: 300 });
    expect(w.last!.requeueAfterMs).toBe(60_000);
    w.step(at(250));
    expect(w.last!.requeueAfterMs).toBe(50_000);
    w.editSpec({ suspend: true });
    w.step(at(260));
    w.editSpec({ suspend: false });
    w.step(at(10_000)); // 260 s used before the suspend
    expect(w.status.phase).toBe('Searching');
    w.setPod('demo-search-2', { phase: 'Running', startedAt: at(10_001) });
    const r = w.step(at(10_041));
    expect(deletes(r)).toEqual(['demo-search-2']);
    expect(w.status.phase).toBe('Failed');
    expect(cond(w, 'Stalled')).toMatchObject({ reason: 'DeadlineExceeded' });
  });

  it('deletes the search ttlSecondsAfterFinished after it finished', () => {
    const w = running({ ttlSecondsAfterFinished: 60, backoffLimit: 0 });
    w.setPod('demo-search-1', { phase: 'Failed', startedAt: at(10), finishedAt: at(30) });
    let r = w.step(at(40));
    expect(w.status.phase).toBe('Failed');
    expect(r.requeueAfterMs).toBe(60_000);
    r = w.step(at(99));
    expect(deletes(r)).toEqual([]);
    r = w.step(at(100));
    expect(r.actions).toContainEqual({ type: 'delete', kind: 'IACSearch', name: 'demo', namespace: 'ml' });
  });
});

describe('reconcile: bad specs, deletion and restarts', () => {
  it('reports a spec that fails validation as Stalled/InvalidSpec naming the field, once', () => {
    const w = new World({ search: { maxEpochs: 0 }, resources: { gpus: -1 } });
    let r = w.step(at(0));
    expect(r.actions).toHaveLength(1);
    expect(r.actions[0]).toMatchObject({ type: 'event', eventType: 'Warning', reason: 'InvalidSpec' });
    expect(w.status.phase).toBe('Pending');
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(cond(w, 'Stalled').message).toMatch(/spec\.search\.maxEpochs/);
    expect(cond(w, 'Stalled').message).toMatch(/spec\.resources\.gpus/);
    r = w.step(at(10));
    expect(r.actions).toEqual([]);
    expect(r.requeueAfterMs).toBeUndefined();
  });

  it('never throws on garbage', () => {
    const w = new World();
    w.search = { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name: 'demo' }, spec: 'nonsense', status: 42 } as never;
    expect(() => w.step(at(0))).not.toThrow();
    expect(cond(w, 'Stalled')).toMatchObject({ reason: 'InvalidSpec' });
  });

  it('does nothing while the search is being deleted', () => {
    const w = running();
    w.search = { ...w.search, metadata: { ...w.search.metadata, deletionTimestamp: at(30).toISOString() } };
    expect(w.step(at(31)).actions).toEqual([]);
  });

  it('gives the same actions for the same input (an operator restart mid-phase creates no duplicate pod)', () => {
    const w = running();
    const a = w.reconcile(at(500));
    const b = w.reconcile(at(500));
    expect(a).toEqual(b);
    expect(creates(a)).toEqual([]);
    // Restart that lost the last status write: the running pod is adopted, not duplicated.
    const fresh = new World();
    fresh.pods = w.pods;
    fresh.secrets = w.secrets;
    fresh.claims = w.claims;
    const r = fresh.step(at(500));
    expect(r.actions.filter((x) => x.type === 'create')).toEqual([]);
    expect(fresh.status.phases.search).toMatchObject({ attempts: 1, pod: 'demo-search-1', gpuSeconds: 490 });
  });

  it('recovers the whole history from the pods when the status is lost', () => {
    const w = running();
    w.setPod('demo-search-1', {
      phase: 'Succeeded',
      startedAt: at(10),
      finishedAt: at(100),
      message: result({ phase: 'search', epochs: 20, meanEpochSeconds: 4 }),
    });
    w.step(at(101));
    w.setPod('demo-prune-1', { phase: 'Running', startedAt: at(102) });
    const fresh = new World();
    Object.assign(fresh, { pods: w.pods, secrets: w.secrets, claims: w.claims });
    const r = fresh.step(at(110));
    expect(creates(r)).toEqual([]);
    expect(fresh.status.phase).toBe('Pruning');
    expect(fresh.status.phases.search).toMatchObject({ succeeded: true, gpuSeconds: 90 });
  });
});

describe('reconcile: progress', () => {
  it('ignores a progress event of another phase and keeps the cell figures across phases', () => {
    const w = running();
    w.progress = { type: 'progress', phase: 'search', epoch: 3, maxEpochs: 50, stableEdges: 2, totalEdges: 14 };
    w.step(at(30));
    w.setPod('demo-search-1', { phase: 'Succeeded', startedAt: at(10), finishedAt: at(40) });
    w.step(at(41));
    expect(w.status.progress).toMatchObject({ phase: 'prune', stable: '2/14' });
    expect(w.status.progress.epoch).toBeUndefined();
    w.progress = { type: 'progress', phase: 'retrain', epoch: 7, maxEpochs: 50 };
    w.step(at(42));
    expect(w.status.progress.epoch).toBeUndefined();
  });

  it("while retraining, labels the epoch and best Dice with the model, never passing the baseline's off as the cells'", () => {
    const w = running();
    finish(w, 'demo-search-1', 10, 410, result({ phase: 'search', epochs: 40, seconds: 400, meanEpochSeconds: 10, stoppedBy: 'stable' }));
    w.step(at(420));
    finish(
      w,
      'demo-prune-1',
      421,
      425,
      result({
        phase: 'prune',
        genotype: {
          cells: [
            [
              [
                [0, 'conv_3x3'],
                [1, 'skip_connect'],
              ],
            ],
          ],
        },
      }),
    );
    w.step(at(430));
    expect(w.status.phase).toBe('Retraining');
    w.progress = { type: 'progress', phase: 'retrain', model: 'cells', epoch: 20, maxEpochs: 20, bestValDice: 0.81, etaSeconds: 300, etaMaxSeconds: 300 };
    w.step(at(500));
    expect(w.status.progress).toMatchObject({ phase: 'retrain', model: 'cells', epoch: 20, bestValDice: 0.81 });
    w.progress = { type: 'progress', phase: 'retrain', model: 'baseline', epoch: 1, maxEpochs: 20 };
    w.step(at(510));
    expect(w.status.progress).toMatchObject({ phase: 'retrain', model: 'baseline', epoch: 1 });
    expect(w.status.progress.bestValDice).toBeUndefined();
    w.progress = { type: 'progress', phase: 'retrain', model: 'baseline', epoch: 2, maxEpochs: 20, bestValDice: 0.6 };
    w.step(at(520));
    expect(w.status.progress).toMatchObject({ model: 'baseline', epoch: 2, bestValDice: 0.6 });
  });
});

describe('reconcile: more edges', () => {
  it('starts once an invalid spec is fixed', () => {
    const w = new World({ budget: { maxGPUHours: -1 } });
    w.step(at(0));
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    w.editSpec({ budget: { maxGPUHours: 2 } });
    const r = w.step(at(10));
    expect(creates(r)).toEqual(['demo-search-1']);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'False' });
    expect(cond(w, 'Stalled').lastTransitionTime).toBe(at(10).toISOString());
    expect(w.status.observedGeneration).toBe(2);
  });

  it('says when the image cannot be pulled', () => {
    const w = new World();
    w.step(at(0));
    const pod = w.pod('demo-search-1');
    w.pods = [
      {
        ...pod,
        status: {
          phase: 'Pending',
          containerStatuses: [{ name: 'trainer', state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off pulling image "x"' } } }],
        },
      },
    ];
    w.step(at(30));
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'True', reason: 'ImagePullBackOff' });
    expect(cond(w, 'Reconciling').message).toMatch(/Back-off pulling image/);
  });

  it('counts a phase as done when the pod stopped for a suspend had in fact finished it', () => {
    const w = running();
    w.editSpec({ suspend: true });
    w.step(at(100));
    expect(w.status.phases.search.history[0].outcome).toBe('Stopped');
    const old = setPodState(searchPod(), { phase: 'Succeeded', startedAt: at(10), finishedAt: at(99), message: result({ phase: 'search', epochs: 7 }) });
    w.pods = [old];
    w.editSpec({ suspend: false });
    const r = w.step(at(200));
    expect(creates(r)).toEqual(['demo-prune-1']);
    expect(w.status.phases.search).toMatchObject({ succeeded: true, attempts: 1 });
    expect(w.status.phases.search.history).toEqual([expect.objectContaining({ outcome: 'Succeeded', gpuSeconds: 90 })]);
  });

  it('keeps lastTransitionTime while a condition keeps its status', () => {
    const w = running();
    const first = cond(w, 'Reconciling').lastTransitionTime;
    w.step(at(500));
    expect(cond(w, 'Reconciling').lastTransitionTime).toBe(first);
    expect(w.status.conditions.map((c: { type: string }) => c.type)).toEqual(['Ready', 'Reconciling', 'Stalled', 'BudgetExceeded']);
  });
});

describe('reconcile: a damaged status', () => {
  it('keeps the fields it can read and rebuilds the rest', () => {
    const w = running();
    w.search = { ...w.search, status: { ...w.status, progress: { epoch: -3 }, phase: 'Dancing' } };
    const r = w.step(at(100));
    expect(creates(r)).toEqual([]);
    expect(w.status.phase).toBe('Searching');
    expect(w.status.phases.search).toMatchObject({ attempts: 1, pod: 'demo-search-1' });
    expect(w.status.startTime).toBe(at(0).toISOString());
  });
});
