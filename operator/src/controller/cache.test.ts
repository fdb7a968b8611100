import { describe, expect, it } from 'vitest';
import { observePod } from '../reconcile/observe.ts';
import { runningWorld, setPodState } from '../../testing/world.ts';
import type { KubeObject } from '../k8s/types.ts';
import { ownerIndex, slimClaim, slimPod } from './cache.ts';

/** A pod as the API server serves it: the operator's pod plus what the server and the kubelet add. */
function served(pod: KubeObject): KubeObject {
  const spec = pod.spec as Record<string, unknown>;
  return {
    ...pod,
    metadata: {
      ...pod.metadata,
      namespace: 'lab',
      uid: 'u-1',
      resourceVersion: '42',
      creationTimestamp: '2026-01-01T00:00:00Z',
      managedFields: [{ manager: 'iac-operator', fieldsV1: { 'f:spec': {} } }],
    } as KubeObject['metadata'],
    spec: { ...spec, nodeName: 'gpu-1', tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists' }], dnsPolicy: 'ClusterFirst' },
    status: {
      ...(pod.status as Record<string, unknown>),
      hostIP: '10.0.0.1',
      podIP: '10.1.0.7',
      qosClass: 'Guaranteed',
      startTime: '2026-01-01T00:00:01Z',
    },
  };
}

describe('slimPod', () => {
  it('keeps everything the reconcile reads of a phase pod, in every state', () => {
    const world = runningWorld();
    const base = world.pods[0];
    const t = new Date('2026-01-01T00:00:05Z');
    const states = [
      setPodState(structuredClone(base), { phase: 'Pending', unschedulable: '0/3 nodes have nvidia.com/gpu' }),
      setPodState(structuredClone(base), { phase: 'Running', startedAt: t }),
      setPodState(structuredClone(base), {
        phase: 'Succeeded',
        startedAt: t,
        finishedAt: new Date(t.getTime() + 60_000),
        message: '{"ok":true,"phase":"search","message":"done"}',
      }),
      setPodState(structuredClone(base), { phase: 'Failed', startedAt: t, finishedAt: new Date(t.getTime() + 5_000), exitCode: 137, reason: 'OOMKilled' }),
      setPodState(structuredClone(base), { phase: 'Failed', finishedAt: t, disruption: 'PreemptionByScheduler' }),
    ];
    for (const pod of states.map(served)) {
      const slim = slimPod(pod);
      expect(observePod(slim)).toEqual(observePod(pod));
      expect(ownerIndex(slim)).toBe(ownerIndex(pod));
      expect(slim.metadata.ownerReferences).toEqual(pod.metadata.ownerReferences);
      expect(JSON.stringify(slim).length).toBeLessThan(JSON.stringify(pod).length / 2);
      expect(JSON.stringify(slim)).not.toMatch(/managedFields|tolerations|volumes|env|hostIP/);
    }
  });

  it('indexes a child by namespace and search label only', () => {
    expect(ownerIndex({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'lab', labels: { 'iac.dev/search': 's' } } })).toBe('lab/s');
    expect(ownerIndex({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'lab' } })).toBeUndefined();
  });
});

describe('slimClaim', () => {
  it("keeps the claim's identity, label, owner and phase", () => {
    const claim: KubeObject = {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'a',
        namespace: 'lab',
        labels: { 'iac.dev/search': 's' },
        ownerReferences: [{ apiVersion: 'x', kind: 'IACSearch', name: 's', uid: 'u', controller: true }],
      },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      status: { phase: 'Bound', capacity: { storage: '1Gi' } },
    };
    expect(slimClaim(claim)).toEqual({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: claim.metadata, status: { phase: 'Bound' } });
  });
});
