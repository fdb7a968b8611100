import { describe, expect, it } from 'vitest';
import { parseIACSearch } from '../api/index.ts';
import { slimPod } from '../controller/cache.ts';
import { buildPod } from './children.ts';
import { KUEUE_ADMISSION_GATE, KUEUE_QUEUE_LABEL, kueueQueueHolding } from './kueue.ts';
import { attemptGPUSeconds, observePod } from './observe.ts';
import type { KubeObject } from './types.ts';
import { at, result, searchObject, World } from '../../testing/world.ts';

const settings = { defaultImage: 'ghcr.io/example/iacnas-trainer:0.1.0' };
const cond = (w: World, type: string) => w.status.conditions.find((c: { type: string }) => c.type === type);

function podOf(spec: Record<string, unknown>): KubeObject {
  const r = parseIACSearch(searchObject(spec));
  if (!r.ok) throw new Error(r.message);
  return buildPod(r.search, 'search', 1, settings);
}

/** What Kueue's pod webhook does to a pod with the queue label: gates, a finalizer, its labels; the API server adds SchedulingGated. */
function gate(pod: KubeObject): KubeObject {
  const p = structuredClone(pod) as KubeObject & { spec: Record<string, unknown>; status?: Record<string, unknown> };
  p.metadata.labels = { ...p.metadata.labels, 'kueue.x-k8s.io/managed': 'true' };
  p.metadata.annotations = { 'kueue.x-k8s.io/role-hash': 'a1b2c3d4' };
  Object.assign(p.metadata, { finalizers: ['kueue.x-k8s.io/managed'] });
  p.spec.schedulingGates = [{ name: KUEUE_ADMISSION_GATE }, { name: 'kueue.x-k8s.io/topology' }];
  p.status = {
    phase: 'Pending',
    conditions: [{ type: 'PodScheduled', status: 'False', reason: 'SchedulingGated', message: 'Scheduling is blocked due to non-empty scheduling gates' }],
  };
  return p;
}

/** What Kueue does at admission: the gates go, its labels and annotation come; SchedulingGated stays until the scheduler acts. */
function admit(pod: KubeObject): KubeObject {
  const p = structuredClone(pod) as KubeObject & { spec: Record<string, unknown> };
  delete p.spec.schedulingGates;
  p.metadata.labels = {
    ...p.metadata.labels,
    'kueue.x-k8s.io/cluster-queue-name': 'gpu-cq',
    'kueue.x-k8s.io/local-queue-name': 'gpu-lq',
    'kueue.x-k8s.io/podset': 'main',
  };
  p.metadata.annotations = { ...p.metadata.annotations, 'kueue.x-k8s.io/workload': 'pod-demo-search-1-83690' };
  return p;
}

describe('spec.queueName on the phase pods', () => {
  it('labels every phase pod with the LocalQueue', () => {
    const r = parseIACSearch(searchObject({ queueName: 'gpu-lq' }));
    if (!r.ok) throw new Error(r.message);
    for (const stage of ['search', 'prune', 'retrain', 'evaluate'] as const) {
      expect(buildPod(r.search, stage, 1, settings).metadata.labels?.[KUEUE_QUEUE_LABEL]).toBe('gpu-lq');
    }
  });

  it('puts no Kueue label on the pods of a search without it', () => {
    const labels = podOf({}).metadata.labels ?? {};
    expect(Object.keys(labels).filter((k) => k.startsWith('kueue.x-k8s.io/'))).toEqual([]);
  });

  it('takes only a LocalQueue name that is a label value', () => {
    for (const bad of ['GPU', 'gpu_lq', '-gpu', 'x'.repeat(64), '']) expect(parseIACSearch(searchObject({ queueName: bad })).ok, bad).toBe(false);
    expect(parseIACSearch(searchObject({ queueName: 'team-a.gpu' })).ok).toBe(true);
  });
});

describe('a pod held by Kueue', () => {
  it('is queued while it has the admission gate, not once the gate is gone', () => {
    const pod = gate(podOf({ queueName: 'gpu-lq' }));
    expect(kueueQueueHolding(pod)).toBe('gpu-lq');
    const a = observePod(pod)!;
    expect(a).toMatchObject({ state: 'Waiting', reason: 'Queued', queue: 'gpu-lq' });
    // Admitted: the lingering SchedulingGated condition is no reason to wait any more.
    const admitted = observePod(admit(pod))!;
    expect(admitted.state).toBe('Waiting');
    expect(admitted.queue).toBeUndefined();
    expect(admitted.reason).toBeUndefined();
  });

  it('keeps the gate in the informer cache', () => {
    const pod = gate(podOf({ queueName: 'gpu-lq' }));
    expect(observePod(slimPod(pod))).toEqual(observePod(pod));
    expect(observePod(slimPod(admit(pod)))).toEqual(observePod(admit(pod)));
  });

  it('costs no GPU time while queued', () => {
    const a = observePod(gate(podOf({ queueName: 'gpu-lq' })))!;
    expect(a.gpus).toBe(1);
    expect(attemptGPUSeconds(a, at(3600))).toBe(0);
  });

  it('shows Reconciling=True reason Queued naming the queue, charges none of the wait, and counts from the container start', () => {
    const w = new World({ queueName: 'gpu-lq' });
    w.step(at(0));
    expect(w.pod('demo-search-1').metadata.labels?.[KUEUE_QUEUE_LABEL]).toBe('gpu-lq');
    w.pods[0] = gate(w.pods[0]);
    w.step(at(600));
    expect(w.status.phase).toBe('Searching');
    expect(cond(w, 'Reconciling')).toMatchObject({ status: 'True', reason: 'Queued' });
    expect(cond(w, 'Reconciling').message).toContain('LocalQueue gpu-lq');
    expect(cond(w, 'Ready')).toMatchObject({ status: 'False', reason: 'Queued' });
    expect(w.status.cost.gpuSeconds).toBe(0);
    expect(w.last!.actions.filter((a) => a.type !== 'event')).toEqual([]);

    // Admitted after 10 minutes: Kueue's labels, annotation and finalizer are no change to act on.
    w.pods[0] = admit(w.pods[0]);
    w.step(at(610));
    expect(cond(w, 'Reconciling').reason).toBe('Searching');
    expect(w.last!.actions.filter((a) => a.type !== 'event')).toEqual([]);
    w.pods[0] = {
      ...w.pods[0],
      status: { phase: 'Running', containerStatuses: [{ name: 'trainer', state: { running: { startedAt: at(620).toISOString() } } }] },
    };
    w.step(at(680));
    expect(w.status.cost.gpuSeconds).toBe(60);
    w.pods[0] = {
      ...w.pods[0],
      status: {
        phase: 'Succeeded',
        containerStatuses: [
          {
            name: 'trainer',
            state: { terminated: { exitCode: 0, startedAt: at(620).toISOString(), finishedAt: at(720).toISOString(), message: result({ phase: 'search' }) } },
          },
        ],
      },
    };
    w.step(at(730));
    expect(w.status.phases.search.history).toEqual([expect.objectContaining({ outcome: 'Succeeded', gpuSeconds: 100 })]);
    expect(w.pod('demo-prune-1').metadata.labels?.[KUEUE_QUEUE_LABEL]).toBe('gpu-lq');
  });

  it('counts a pod Kueue stopped (Workload evicted, preempted or deleted) as a disruption, not a failure', () => {
    const w = new World({ queueName: 'gpu-lq' });
    w.step(at(0));
    w.pods[0] = {
      ...admit(gate(w.pods[0])),
      status: {
        phase: 'Failed',
        conditions: [{ type: 'TerminationTarget', status: 'True', reason: 'WorkloadEvicted', message: 'Preempted to accommodate a workload' }],
        containerStatuses: [
          { name: 'trainer', state: { terminated: { exitCode: 143, reason: 'Error', startedAt: at(10).toISOString(), finishedAt: at(70).toISOString() } } },
        ],
      },
    };
    w.step(at(80));
    const search = w.status.phases.search;
    expect(search.failures).toBe(0);
    expect(search.preemptions).toBe(1);
    expect(search.history).toEqual([expect.objectContaining({ outcome: 'Disrupted', reason: 'WorkloadEvicted', gpuSeconds: 60 })]);
    expect(w.pods.map((p) => p.metadata.name)).toContain('demo-search-2');
  });

  it('counts a pod Kueue deleted outright as a vanished pod (a disruption)', () => {
    const w = new World({ queueName: 'gpu-lq' });
    w.step(at(0));
    w.pods = [];
    w.step(at(120));
    expect(w.status.phases.search).toMatchObject({ failures: 0, preemptions: 1 });
    expect(w.pods.map((p) => p.metadata.name)).toEqual(['demo-search-2']);
  });
});
