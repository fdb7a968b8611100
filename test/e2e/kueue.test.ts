// GPU quota through Kueue: a node with 4 GPUs, so the scheduler is not the limit, and a
// ClusterQueue with a quota of 2. Four 1-GPU searches with spec.queueName run two at a
// time, admitted in creation order; the waiting ones say they are Queued; all succeed; and
// each is charged its containers' run time only. A search without queueName in the same
// namespace runs at once, whatever the queue holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, waitFor } from '../cluster/control-plane.ts';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { ADMISSION_GATE, createGPUQueue, KUEUE_API, kueueAvailability, QUEUE_LABEL, startKueue } from '../cluster/kueue.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { condition, createNamespace, iacsPath, podGPUSeconds, searchPods, startE2E, startOperator, tinySearch, waitForSearch, type E2EEnv } from './env.ts';

const cluster = clusterAvailability();
const kueue = kueueAvailability();
const ns = 'quota';
const queue = 'gpu-lq';
const names = ['kq-a', 'kq-b', 'kq-c', 'kq-d'];
const free = 'kq-free';

const gpusOf = (p: KubeJSON) => Number(p.spec.containers[0].resources?.limits?.['nvidia.com/gpu'] ?? 0);
const isQueued = (s: KubeJSON) => condition(s, 'Reconciling')?.status === 'True' && condition(s, 'Reconciling')?.reason === 'Queued';
const gated = (p: KubeJSON) => (p.spec.schedulingGates ?? []).some((g: { name: string }) => g.name === ADMISSION_GATE);

/** The most GPU pods whose trainer containers ran at the same moment. */
function peakConcurrentGPUs(pods: KubeJSON[]): number {
  const edges: Array<[number, number]> = [];
  for (const p of pods) {
    const t = p.status?.containerStatuses?.[0]?.state?.terminated;
    const gpus = gpusOf(p);
    if (!t || !gpus) continue;
    edges.push([Date.parse(t.startedAt), gpus], [Date.parse(t.finishedAt), -gpus]);
  }
  // At the same instant a finish comes before a start.
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, d] of edges) {
    now += d;
    peak = Math.max(peak, now);
  }
  return peak;
}

describe.skipIf(cluster.skip || kueue.skip)('GPU quota through Kueue', () => {
  let env: E2EEnv;

  beforeAll(async () => {
    env = await startE2E({ cluster: { persistentVolumes: 7 }, kubelet: { nodes: [{ name: 'gpu-quad', cpu: '32', memory: '128Gi', gpus: 4 }] } });
    await startKueue(env.cluster);
    await createNamespace(env.cluster, ns);
    await createGPUQueue(env.cluster, { namespace: ns, localQueue: queue, clusterQueue: 'gpu-cq', gpus: 2 });
    await startOperator(env.cluster);
  }, 300_000);

  afterAll(async () => {
    await env?.stop();
  });

  it('runs 1-GPU searches two at a time in creation order, shows the waiting ones Queued, and charges only run time', async () => {
    const c = env.cluster.client;
    // One at a time, each once its first pod exists and a second later: Kueue orders
    // Workloads by their creation timestamps, which have whole seconds.
    for (const n of names) {
      await c.create(iacsPath(ns), tinySearch(n, ns, { searchEpochs: 40, spec: { queueName: queue } }));
      await waitFor(`${n}'s search pod`, async () => (await searchPods(env.cluster, ns, n)).length > 0, 60_000);
      await sleep(1100);
    }

    // Two search pods admitted and running; the other two held by Kueue, their searches Queued.
    const queued = await waitFor(
      'two running and two Queued',
      async () => {
        const searches: KubeJSON[] = await Promise.all(names.map((n) => c.get(iacsPath(ns, n))));
        const pods: KubeJSON[] = (await Promise.all(names.map((n) => searchPods(env.cluster, ns, n)))).flat();
        const running = pods.filter((p) => p.status?.phase === 'Running');
        const waiting = searches.filter(isQueued);
        return running.length === 2 && waiting.length === 2 ? { searches: waiting, pods } : undefined;
      },
      180_000,
      500,
    );
    expect(queued.searches.map((s) => s.metadata.name).sort()).toEqual(['kq-c', 'kq-d']);
    for (const s of queued.searches) {
      const msg: string = condition(s, 'Reconciling').message;
      expect(msg).toContain(`LocalQueue ${queue}`);
      expect(condition(s, 'Ready')).toMatchObject({ status: 'False', reason: 'Queued' });
      expect(s.status.phase).toBe('Searching');
      expect(s.status.cost?.gpuSeconds ?? 0).toBe(0);
    }
    for (const p of queued.pods) {
      expect(p.metadata.labels[QUEUE_LABEL]).toBe(queue);
      expect(gated(p)).toBe(['kq-c', 'kq-d'].includes(p.metadata.labels['iac.dev/search']));
    }

    // A search without queueName is not Kueue's: it runs at once beside the full queue.
    await c.create(iacsPath(ns), tinySearch(free, ns, { searchEpochs: 40 }));
    const freePod = await waitFor(
      `${free} running while the queue is full`,
      async () => {
        const [p] = await searchPods(env.cluster, ns, free);
        return p?.status?.phase === 'Running' ? p : undefined;
      },
      120_000,
      500,
    );
    expect(Object.keys(freePod.metadata.labels).filter((k) => k.startsWith('kueue.x-k8s.io/'))).toEqual([]);
    expect(freePod.spec.schedulingGates ?? []).toEqual([]);
    const freeStart = Date.parse(freePod.status.containerStatuses[0].state.running.startedAt);

    const finished: KubeJSON[] = [];
    for (const n of [...names, free])
      finished.push(await waitForSearch(env.cluster, ns, n, 'finished', (s) => ['Succeeded', 'Failed'].includes(s.status?.phase), 900_000));
    for (const s of finished) expect(s.status.phase, `${s.metadata.name}: ${JSON.stringify(s.status.phases)}`).toBe('Succeeded');

    const pods = new Map<string, KubeJSON[]>();
    for (const n of [...names, free]) pods.set(n, await searchPods(env.cluster, ns, n));
    // Never more than the quota's 2 GPUs at once among the queued searches, and the quota was used.
    expect(peakConcurrentGPUs(names.flatMap((n) => pods.get(n)!))).toBe(2);

    // Admitted in creation order: c's search once a or b freed a GPU, d's after c's (Kueue
    // writes the Admitted condition on each pod's Workload).
    const workloads: KubeJSON[] = (await c.get(`${KUEUE_API}/namespaces/${ns}/workloads`)).items;
    const admitted = (pod: string) => {
      const wl = workloads.find((w) => w.metadata.ownerReferences?.some((o: KubeJSON) => o.kind === 'Pod' && o.name === pod));
      const at = (wl?.status?.conditions ?? []).find((x: KubeJSON) => x.type === 'Admitted')?.lastTransitionTime;
      expect(at, `the Workload of ${pod} was admitted`).toBeDefined();
      return Date.parse(at);
    };
    expect(admitted('kq-c-search-1')).toBeGreaterThanOrEqual(Math.max(admitted('kq-a-search-1'), admitted('kq-b-search-1')));
    expect(admitted('kq-d-search-1')).toBeGreaterThanOrEqual(admitted('kq-c-search-1'));
    const searchStart = (n: string) =>
      Date.parse(pods.get(n)!.find((p) => p.metadata.name === `${n}-search-1`).status.containerStatuses[0].state.terminated.startedAt);
    // The search without queueName did not wait for the queue: it started while kq-d was still held.
    expect(freeStart).toBeLessThan(searchStart('kq-d'));

    for (const s of finished) {
      const mine = pods.get(s.metadata.name)!;
      // GPU time is the containers' run time times their GPUs.
      expect(s.status.cost.gpuSeconds, s.metadata.name).toBeCloseTo(podGPUSeconds(mine), 0);
      if (!['kq-c', 'kq-d'].includes(s.metadata.name)) continue;
      // A queued search waited before its first container started; none of that is charged.
      const searchPod = mine.find((p) => p.metadata.name.endsWith('-search-1'));
      const waited = (searchStart(s.metadata.name) - Date.parse(searchPod.metadata.creationTimestamp)) / 1000;
      expect(waited).toBeGreaterThan(2);
      const wall = (Date.parse(s.status.completionTime) - Date.parse(s.metadata.creationTimestamp)) / 1000;
      expect(s.status.cost.gpuSeconds).toBeLessThan(wall - waited + 1);
    }
  }, 1_500_000);

  it('takes a pod Kueue stops (its Workload deleted) as a disruption: the search resumes from its checkpoint and succeeds', async () => {
    const c = env.cluster.client;
    const n = 'kq-evicted';
    await c.create(iacsPath(ns), tinySearch(n, ns, { searchEpochs: 600, spec: { queueName: queue } }));
    const pod = await waitFor(
      `${n}'s search pod running`,
      async () => {
        const p = (await searchPods(env.cluster, ns, n)).find((x) => x.metadata.name === `${n}-search-1`);
        return p?.status?.phase === 'Running' ? p : undefined;
      },
      120_000,
      500,
    );
    // Past the operator's grace for a pod missing from its cache, so that a pod gone before
    // the operator saw it fail is recorded as vanished, not created again under its name.
    await sleep(Math.max(0, Date.parse(pod.metadata.creationTimestamp) + 32_000 - Date.now()));
    const now = (await searchPods(env.cluster, ns, n)).find((x) => x.metadata.name === `${n}-search-1`);
    expect(now?.status?.phase, 'the search phase still runs when its Workload is deleted').toBe('Running');
    const workloads = await c.get(`${KUEUE_API}/namespaces/${ns}/workloads?labelSelector=${encodeURIComponent(`kueue.x-k8s.io/job-uid=${pod.metadata.uid}`)}`);
    expect(workloads.items).toHaveLength(1);
    await c.delete(`${KUEUE_API}/namespaces/${ns}/workloads/${workloads.items[0].metadata.name}`);

    const done = await waitForSearch(env.cluster, ns, n, 'finished', (s) => ['Succeeded', 'Failed'].includes(s.status?.phase), 600_000);
    expect(done.status.phase, JSON.stringify(done.status.phases?.search)).toBe('Succeeded');
    const search = done.status.phases.search;
    expect(search.failures).toBe(0);
    expect(search.preemptions).toBeGreaterThanOrEqual(1);
    const first = search.history.find((h: KubeJSON) => h.pod === `${n}-search-1`);
    expect(first.outcome).toBe('Disrupted');
    expect(['WorkloadDeleted', 'PodVanished']).toContain(first.reason);
    expect(search.history.at(-1)).toMatchObject({ outcome: 'Succeeded' });
    // The stopped attempt's container time is charged (a vanished pod's could not be read);
    // the pods still there are charged their own run time.
    if (first.reason === 'WorkloadDeleted') expect(first.gpuSeconds).toBeGreaterThan(20);
    expect(done.status.cost.gpuSeconds).toBeCloseTo(podGPUSeconds(await searchPods(env.cluster, ns, n)) + first.gpuSeconds, 0);
  }, 900_000);
});
