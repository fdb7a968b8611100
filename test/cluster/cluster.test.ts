// Self-test of the cluster harness: the control plane is real (version, namespaces,
// volume binding, scheduling, garbage collection) and the test kubelet runs pods as a
// kubelet would report them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { K8S_VERSION } from './binaries.ts';
import { startCluster, waitFor, type Cluster } from './control-plane.ts';
import { clusterAvailability } from './suite.ts';
import { TestKubelet } from './test-kubelet.ts';

const availability = clusterAvailability();

describe.skipIf(availability.skip)('cluster harness', () => {
  let cluster: Cluster;
  let kubelet: TestKubelet;
  const pids: number[] = [];
  const ns = 'harness';

  beforeAll(async () => {
    cluster = await startCluster({ persistentVolumes: 2 });
    kubelet = await TestKubelet.start(cluster, { nodes: [{ name: 'gpu-node-1', cpu: '4', memory: '8Gi', gpus: 1 }] });
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  const pod = (name: string, spec: Record<string, unknown>) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns },
    spec: { restartPolicy: 'Never', ...spec },
  });
  const getPod = (name: string) => cluster.client.get(`/api/v1/namespaces/${ns}/pods/${name}`);
  const podPhase = async (name: string, phase: string) => {
    const p = await getPod(name);
    return p.status?.phase === phase ? p : undefined;
  };

  it('serves /version with the real release, also to kubectl', async () => {
    const v = await cluster.client.get('/version');
    expect(v.gitVersion).toBe(K8S_VERSION);
    expect(v.major).toBe(K8S_VERSION.split('.')[0].slice(1));
    const out = await cluster.kubectl(['version', '-o', 'json']);
    const parsed = JSON.parse(out.stdout);
    expect(parsed.serverVersion.gitVersion).toBe(K8S_VERSION);
    expect(parsed.clientVersion.gitVersion).toBe(K8S_VERSION);
  });

  it('creates a namespace and its default service account', async () => {
    await cluster.kubectl(['create', 'namespace', ns]);
    const sa = await waitFor('default service account', () => cluster.client.find(`/api/v1/namespaces/${ns}/serviceaccounts/default`), 30_000);
    expect(sa.metadata.name).toBe('default');
  });

  it('registers the test node Ready with its GPU capacity', async () => {
    const node = await cluster.client.get('/api/v1/nodes/gpu-node-1');
    expect(node.status.allocatable['nvidia.com/gpu']).toBe('1');
    expect(node.status.conditions.find((c: { type: string }) => c.type === 'Ready').status).toBe('True');
    expect(node.spec.taints ?? []).toEqual([]);
    const lease = await cluster.client.get('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/gpu-node-1');
    expect(lease.spec.holderIdentity).toBe('gpu-node-1');
  });

  it('binds a claim to a hostPath volume and runs a pod on it to Succeeded with its termination message', async () => {
    await cluster.client.create(`/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'token' },
      stringData: { token: 's3cret' },
    });
    await cluster.client.create(`/api/v1/namespaces/${ns}/persistentvolumeclaims`, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: 'work' },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
    const pvc = await waitFor(
      'claim bound',
      async () => {
        const c = await cluster.client.get(`/api/v1/namespaces/${ns}/persistentvolumeclaims/work`);
        return c.status?.phase === 'Bound' ? c : undefined;
      },
      60_000,
    );
    expect(pvc.spec.volumeName).toMatch(/^iacnas-test-pv-/);

    await cluster.client.create(
      `/api/v1/namespaces/${ns}/pods`,
      pod('writer', {
        containers: [
          {
            name: 'main',
            image: 'busybox',
            command: ['sh', '-c', 'echo "$TOKEN" > "$WORK/out.txt" && printf "%s" "{\\"ok\\":true,\\"node\\":\\"$NODE\\"}" > "$MSG_FILE"'],
            env: [
              { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'token', key: 'token' } } },
              { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
              // Paths in env values and arguments are mapped (not paths inside a shell script).
              { name: 'MSG_FILE', value: '/dev/termination-log' },
              { name: 'WORK', value: '/work' },
            ],
            resources: { limits: { 'nvidia.com/gpu': '1' } },
            volumeMounts: [{ name: 'work', mountPath: '/work' }],
          },
        ],
        volumes: [{ name: 'work', persistentVolumeClaim: { claimName: 'work' } }],
      }),
    );
    const done = await waitFor('pod writer Succeeded', () => podPhase('writer', 'Succeeded'), 60_000);
    expect(done.spec.nodeName).toBe('gpu-node-1');
    const term = done.status.containerStatuses[0].state.terminated;
    expect(term.exitCode).toBe(0);
    expect(JSON.parse(term.message)).toEqual({ ok: true, node: 'gpu-node-1' });
    expect(Date.parse(term.finishedAt)).toBeGreaterThanOrEqual(Date.parse(term.startedAt));
    const pv = await cluster.client.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(`${pv.spec.hostPath.path}/out.txt`, 'utf8').trim()).toBe('s3cret');
  });

  it('reports a failing container as Failed with its exit code', async () => {
    await cluster.client.create(
      `/api/v1/namespaces/${ns}/pods`,
      pod('failer', {
        containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', 'echo boom >&2; exit 3'], terminationMessagePolicy: 'FallbackToLogsOnError' }],
      }),
    );
    const failed = await waitFor('pod failer Failed', () => podPhase('failer', 'Failed'), 60_000);
    const term = failed.status.containerStatuses[0].state.terminated;
    expect(term.exitCode).toBe(3);
    expect(term.message).toContain('boom');
  });

  it('leaves a pod that asks for more GPUs than any node has Pending as Unschedulable', async () => {
    await cluster.client.create(
      `/api/v1/namespaces/${ns}/pods`,
      pod('greedy', { containers: [{ name: 'main', image: 'busybox', command: ['true'], resources: { limits: { 'nvidia.com/gpu': '2' } } }] }),
    );
    const pending = await waitFor(
      'greedy unschedulable',
      async () => {
        const p = await getPod('greedy');
        const c = (p.status?.conditions ?? []).find((x: { type: string }) => x.type === 'PodScheduled');
        return c?.status === 'False' ? p : undefined;
      },
      60_000,
    );
    const cond = pending.status.conditions.find((x: { type: string }) => x.type === 'PodScheduled');
    expect(cond.reason).toBe('Unschedulable');
    expect(cond.message).toContain('nvidia.com/gpu');
    expect(pending.spec.nodeName).toBeUndefined();
  });

  it('evicts a running pod with a DisruptionTarget condition', async () => {
    await cluster.client.create(
      `/api/v1/namespaces/${ns}/pods`,
      pod('sleeper', { containers: [{ name: 'main', image: 'busybox', command: ['sleep', '300'] }] }),
    );
    await waitFor('sleeper Running', () => podPhase('sleeper', 'Running'), 60_000);
    const pid = kubelet.pid(ns, 'sleeper');
    expect(pid).toBeGreaterThan(0);
    pids.push(pid!);
    await kubelet.evict(ns, 'sleeper', { reason: 'Preempted', message: 'preempted by a test' });
    const failed = await waitFor('sleeper Failed', () => podPhase('sleeper', 'Failed'), 30_000);
    expect(failed.status.reason).toBe('Preempted');
    const dt = failed.status.conditions.find((c: { type: string }) => c.type === 'DisruptionTarget');
    expect(dt).toMatchObject({ status: 'True', reason: 'TerminationByKubelet' });
    expect(failed.status.containerStatuses[0].state.terminated.exitCode).toBe(137);
    expect(() => process.kill(pid!, 0)).toThrow();
  });

  it('finishes a graceful deletion: the process is stopped and the pod removed', async () => {
    await cluster.client.create(
      `/api/v1/namespaces/${ns}/pods`,
      pod('deleted', { terminationGracePeriodSeconds: 5, containers: [{ name: 'main', image: 'busybox', command: ['sleep', '300'] }] }),
    );
    await waitFor('deleted Running', () => podPhase('deleted', 'Running'), 60_000);
    const pid = kubelet.pid(ns, 'deleted')!;
    await cluster.kubectl(['delete', 'pod', '-n', ns, 'deleted', '--wait=true', '--timeout=30s']);
    expect(await cluster.client.find(`/api/v1/namespaces/${ns}/pods/deleted`)).toBeUndefined();
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('garbage-collects an object whose owner is deleted', async () => {
    const owner = await cluster.client.create(`/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'owner' },
      data: {},
    });
    await cluster.client.create(`/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'owned', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid }] },
      data: {},
    });
    await cluster.client.delete(`/api/v1/namespaces/${ns}/configmaps/owner`);
    await waitFor('owned ConfigMap collected', async () => (await cluster.client.find(`/api/v1/namespaces/${ns}/configmaps/owned`)) === undefined, 60_000);
  });

  it('stops every process it started', async () => {
    const running = kubelet.pid(ns, 'writer');
    expect(running).toBeUndefined();
    await cluster.kubectl(['run', 'last', '-n', ns, '--image=busybox', '--restart=Never', '--command', '--', 'sleep', '300']);
    await waitFor('last Running', () => podPhase('last', 'Running'), 60_000);
    const pid = kubelet.pid(ns, 'last')!;
    const components = cluster.componentPids();
    expect(Object.keys(components).sort()).toEqual(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler']);
    await cluster.stop();
    for (const p of [pid, ...Object.values(components)]) {
      expect(() => process.kill(p, 0)).toThrow();
      expect(() => process.kill(-p, 0)).toThrow();
    }
  });

  it('reports no errors from the test kubelet', () => {
    expect(kubelet.errors).toEqual([]);
  });
});
