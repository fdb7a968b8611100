// GPU bin-packing by the real scheduler: a node with 2 GPUs and four 1-GPU searches.
// Two run, two wait with a condition saying why, the waiting ones start when GPUs are
// freed, and the waiting time is not charged as GPU time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { condition, createNamespace, iacsPath, podGPUSeconds, searchPods, startE2E, startOperator, tinySearch, waitForSearch, type E2EEnv } from './env.ts';
import { waitFor } from '../cluster/control-plane.ts';

const availability = clusterAvailability();
const ns = 'sched';
const names = ['queue-a', 'queue-b', 'queue-c', 'queue-d'];

describe.skipIf(availability.skip)('GPU scheduling of several searches', () => {
  let env: E2EEnv;

  beforeAll(async () => {
    env = await startE2E({ cluster: { persistentVolumes: 6 }, kubelet: { nodes: [{ name: 'gpu-pair', cpu: '16', memory: '64Gi', gpus: 2 }] } });
    await createNamespace(env.cluster, ns);
    await startOperator(env.cluster);
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('runs two of four 1-GPU searches on a 2-GPU node, queues the others with a reason, and charges only run time', async () => {
    for (const n of names) await env.cluster.client.create(iacsPath(ns, undefined), tinySearch(n, ns, { searchEpochs: 60 }));

    // Two search pods run; the other two are Unschedulable and their searches say why.
    const waiting = await waitFor(
      'two running and two waiting for GPUs',
      async () => {
        const searches: KubeJSON[] = await Promise.all(names.map((n) => env.cluster.client.get(iacsPath(ns, n))));
        const pods: KubeJSON[] = (await Promise.all(names.map((n) => searchPods(env.cluster, ns, n)))).flat();
        const running = pods.filter((p) => p.status?.phase === 'Running');
        // The scheduler may first report the claim still binding; wait until the GPUs are the reason.
        const queued = searches.filter(
          (s) => condition(s, 'Reconciling')?.reason === 'WaitingForResources' && String(condition(s, 'Reconciling').message).includes('nvidia.com/gpu'),
        );
        return running.length === 2 && queued.length === 2 ? queued : undefined;
      },
      180_000,
      500,
    );
    for (const s of waiting) {
      const msg: string = condition(s, 'Reconciling').message;
      expect(msg).toContain('nvidia.com/gpu');
      expect(s.status.cost?.gpuSeconds ?? 0).toBe(0);
    }
    const queuedNames = waiting.map((s) => s.metadata.name);

    // Every search finishes: the queued ones start once GPUs are freed.
    const finished: KubeJSON[] = [];
    for (const n of names)
      finished.push(await waitForSearch(env.cluster, ns, n, 'finished', (s) => ['Succeeded', 'Failed'].includes(s.status?.phase), 600_000));
    for (const s of finished) expect(s.status.phase, `${s.metadata.name}: ${JSON.stringify(s.status.phases)}`).toBe('Succeeded');

    for (const s of finished) {
      const pods = await searchPods(env.cluster, ns, s.metadata.name);
      // GPU time is the containers' run time only.
      expect(s.status.cost.gpuSeconds).toBeCloseTo(podGPUSeconds(pods), 0);
      if (!queuedNames.includes(s.metadata.name)) continue;
      // A queued search waited before its first container started; none of that is charged.
      const searchPod = pods.find((p) => p.metadata.name.endsWith('-search-1'));
      const started = Date.parse(searchPod.status.containerStatuses[0].state.terminated.startedAt);
      const waited = (started - Date.parse(searchPod.metadata.creationTimestamp)) / 1000;
      expect(waited).toBeGreaterThan(2);
      const wall = (Date.parse(s.status.completionTime) - Date.parse(s.metadata.creationTimestamp)) / 1000;
      expect(s.status.cost.gpuSeconds).toBeLessThan(wall - waited + 1);
    }
  }, 900_000);
});
