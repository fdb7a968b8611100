// Faults against a real control plane with the real trainer in every pod: the operator
// killed mid-search, a preempted pod, a phase that always fails, bad input, suspend and
// resume, both budget actions, deletion through the garbage collector, and node loss.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep, waitFor } from '../cluster/control-plane.ts';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import {
  boundClaim,
  condition,
  createNamespace,
  iacsPath,
  isPhase,
  podGPUSeconds,
  searchPods,
  startE2E,
  startOperator,
  tinySearch,
  waitForLog,
  waitForSearch,
  type E2EEnv,
  type OperatorHandle,
} from './env.ts';

const availability = clusterAvailability();
const ns = 'faults';
const done = (s: KubeJSON) => ['Succeeded', 'Failed'].includes(s.status?.phase);

describe.skipIf(availability.skip)('faults', () => {
  let env: E2EEnv;
  let operator: OperatorHandle;
  const kubelet = () => env.kubelet!;
  const create = (obj: KubeJSON) => env.cluster.client.create(iacsPath(ns), obj);
  const patch = (name: string, spec: KubeJSON) => env.cluster.client.mergePatch(iacsPath(ns, name), { spec });
  const podNames = async (name: string) => (await searchPods(env.cluster, ns, name)).map((p) => p.metadata.name);

  beforeAll(async () => {
    env = await startE2E({ cluster: { persistentVolumes: 10 }, kubelet: { nodes: [{ name: 'gpu-node-1', cpu: '16', memory: '64Gi', gpus: 4 }] } });
    await createNamespace(env.cluster, ns);
    operator = await startOperator(env.cluster);
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('survives the operator being killed mid-search: no duplicate pod, GPU-seconds counted once', async () => {
    await create(tinySearch('restart', ns, { searchEpochs: 30 }));
    await waitForLog(kubelet(), ns, 'restart-search-1', 'search epoch 2/');
    await operator.kill();
    // The search keeps running without an operator.
    await waitForLog(kubelet(), ns, 'restart-search-1', 'search epoch 4/');
    operator = await startOperator(env.cluster);

    const s = await waitForSearch(env.cluster, ns, 'restart', 'finished', done, 300_000);
    expect(s.status.phase, JSON.stringify(s.status.phases)).toBe('Succeeded');
    expect(await podNames('restart')).toEqual(['restart-evaluate-1', 'restart-prune-1', 'restart-retrain-1', 'restart-search-1']);
    for (const stage of ['search', 'prune', 'retrain', 'evaluate']) expect(s.status.phases[stage].attempts, stage).toBe(1);
    const pods = await searchPods(env.cluster, ns, 'restart');
    expect(s.status.cost.gpuSeconds).toBeGreaterThan(0);
    expect(s.status.cost.gpuSeconds).toBeCloseTo(podGPUSeconds(pods), 0);
  }, 400_000);

  it('retries a preempted pod from its checkpoint without counting it against backoffLimit', async () => {
    await create(tinySearch('preempt', ns, { searchEpochs: 60, spec: { backoffLimit: 0 } }));
    await waitForLog(kubelet(), ns, 'preempt-search-1', 'search epoch 3/');
    await kubelet().evict(ns, 'preempt-search-1', {
      reason: 'Preempted',
      conditionReason: 'PreemptionByScheduler',
      message: 'preempted by a higher-priority pod',
    });

    await waitForLog(kubelet(), ns, 'preempt-search-2', /resuming after epoch [1-9]/, 180_000);
    const s = await waitForSearch(env.cluster, ns, 'preempt', 'finished', done, 300_000);
    expect(s.status.phase, JSON.stringify(s.status.phases.search)).toBe('Succeeded');
    const search = s.status.phases.search;
    expect(search.preemptions).toBe(1);
    expect(search.failures).toBe(0);
    expect(search.attempts).toBe(2);
    expect(search.history[0]).toMatchObject({ pod: 'preempt-search-1', outcome: 'Disrupted' });
    const pods = await searchPods(env.cluster, ns, 'preempt');
    expect(s.status.cost.gpuSeconds).toBeCloseTo(podGPUSeconds(pods), 0);
  }, 400_000);

  it('fails a phase that always fails after backoffLimit retries, with the reason', async () => {
    // The trainer cannot create its search checkpoint directory: a file is in the way.
    const dir = await boundClaim(env.cluster, ns, 'broken-artifacts');
    writeFileSync(path.join(dir, 'search'), 'a file where the search checkpoints belong\n');
    // An existing artifacts claim must be labelled for the search that writes to it (docs/pod-policy.md).
    await env.cluster.client.mergePatch(`/api/v1/namespaces/${ns}/persistentvolumeclaims/broken-artifacts`, {
      metadata: { labels: { 'iac.dev/search': 'broken' } },
    });
    await create(tinySearch('broken', ns, { spec: { backoffLimit: 1, artifacts: { claimName: 'broken-artifacts' } } }));

    const s = await waitForSearch(env.cluster, ns, 'broken', 'Failed', isPhase('Failed'), 240_000);
    expect(s.status.phases.search.failures).toBe(2);
    expect(s.status.phases.search.attempts).toBe(2);
    expect(await podNames('broken')).toEqual(['broken-search-1', 'broken-search-2']);
    const ready = condition(s, 'Ready');
    expect(ready.status).toBe('False');
    expect(ready.reason).toBe('BackoffLimitExceeded');
    expect(ready.message).toContain('EEXIST');
    expect(condition(s, 'Stalled')?.status).toBe('True');
  }, 300_000);

  it('fails at once on bad input (exit status 2), naming the field', async () => {
    await create(tinySearch('badinput', ns, { spec: { backbone: { pretrained: '/artifacts/no-such-weights' } } }));
    const s = await waitForSearch(env.cluster, ns, 'badinput', 'Failed', isPhase('Failed'), 120_000);
    expect(s.status.phases.search.attempts).toBe(1);
    expect(JSON.stringify(s.status.conditions)).toContain('backbone.pretrained');
  }, 180_000);

  it('suspends (the pod goes, GPU time stops) and resumes from the checkpoint', async () => {
    await create(tinySearch('pause', ns, { searchEpochs: 100 }));
    await waitForLog(kubelet(), ns, 'pause-search-1', 'search epoch 3/');
    await patch('pause', { suspend: true });
    const suspended = await waitForSearch(env.cluster, ns, 'pause', 'Suspended', isPhase('Suspended'), 60_000);
    await waitFor('pause-search-1 gone', async () => !(await podNames('pause')).includes('pause-search-1'), 60_000);
    const before = (await env.cluster.client.get(iacsPath(ns, 'pause'))).status.cost.gpuSeconds;
    expect(before).toBeGreaterThan(0);
    await sleep(4000);
    const still = await env.cluster.client.get(iacsPath(ns, 'pause'));
    expect(still.status.phase).toBe('Suspended');
    expect(still.status.cost.gpuSeconds).toBe(before);
    expect(suspended.status.phases.search.failures).toBe(0);

    await patch('pause', { suspend: false });
    await waitForLog(kubelet(), ns, 'pause-search-2', /resuming after epoch [1-9]/, 120_000);
    const s = await waitForSearch(env.cluster, ns, 'pause', 'finished', done, 300_000);
    expect(s.status.phase).toBe('Succeeded');
    expect(s.status.phases.search.failures).toBe(0);
    expect(s.status.phases.search.history[0]).toMatchObject({ pod: 'pause-search-1', outcome: 'Stopped' });
  }, 400_000);

  it('suspends a search over its GPU budget and resumes it when the budget is raised', async () => {
    // 0.002 GPU-hours = 7.2 GPU-seconds; the search phase would run for minutes. The
    // operator looks at a running phase at least once a minute (and at every progress event).
    await create(tinySearch('budget-suspend', ns, { searchEpochs: 3000, spec: { budget: { maxGPUHours: 0.002, action: 'Suspend' } } }));
    const s = await waitForSearch(env.cluster, ns, 'budget-suspend', 'Suspended', isPhase('Suspended'), 150_000);
    expect(s.status.phases.search.succeeded).toBeFalsy();
    expect(condition(s, 'BudgetExceeded')?.status).toBe('True');
    expect(s.status.cost.gpuSeconds).toBeGreaterThanOrEqual(7.2);
    await waitFor(
      'budget-suspend pods stopped',
      async () => (await searchPods(env.cluster, ns, 'budget-suspend')).every((p) => p.status.phase !== 'Running' || p.metadata.deletionTimestamp),
      60_000,
    );

    await patch('budget-suspend', { budget: { maxGPUHours: 10 } });
    const resumed = await waitForSearch(
      env.cluster,
      ns,
      'budget-suspend',
      'running again',
      (x) => x.status?.phase === 'Searching' && condition(x, 'BudgetExceeded')?.status === 'False',
      60_000,
    );
    expect(resumed.status.phases.search.failures).toBe(0);
    await waitForLog(kubelet(), ns, 'budget-suspend-search-2', /resuming after epoch/, 120_000);
    await env.cluster.client.delete(iacsPath(ns, 'budget-suspend'));
  }, 300_000);

  it('fails a search over its budget when the budget action is Fail', async () => {
    await create(tinySearch('budget-fail', ns, { searchEpochs: 3000, spec: { budget: { maxGPUHours: 0.002, action: 'Fail' } } }));
    const s = await waitForSearch(env.cluster, ns, 'budget-fail', 'Failed', isPhase('Failed'), 150_000);
    expect(s.status.phases.search.succeeded).toBeFalsy();
    expect(condition(s, 'BudgetExceeded')?.status).toBe('True');
    expect(condition(s, 'Ready')?.reason).toBe('BudgetExceeded');
    await waitFor(
      'budget-fail pods stopped',
      async () => (await searchPods(env.cluster, ns, 'budget-fail')).every((p) => p.status.phase !== 'Running'),
      60_000,
    );
  }, 240_000);

  it('deleting a search removes its pods, Secret and claim through the garbage collector', async () => {
    const owned = async () => {
      const sel = `labelSelector=${encodeURIComponent('iac.dev/search=restart')}`;
      const [pods, secrets, claims] = await Promise.all(
        ['pods', 'secrets', 'persistentvolumeclaims'].map((r) => env.cluster.client.get(`/api/v1/namespaces/${ns}/${r}?${sel}`)),
      );
      return { pods: pods.items.length, secrets: secrets.items.length, claims: claims.items.length };
    };
    expect(await owned()).toEqual({ pods: 4, secrets: 1, claims: 1 });
    await env.cluster.kubectl(['delete', 'iacs', 'restart', '-n', ns, '--wait=false']);
    await waitFor(
      'owned objects collected',
      async () => {
        const o = await owned();
        return o.pods + o.secrets + o.claims === 0;
      },
      120_000,
    );
    expect(await env.cluster.client.find(iacsPath(ns, 'restart'))).toBeUndefined();
  }, 180_000);

  // Last: it takes a node away.
  it('moves a search off a node that vanished, from its checkpoint, without counting a failure', async () => {
    await kubelet().addNode({ name: 'gpu-node-2', cpu: '16', memory: '64Gi', gpus: 4 });
    await create(tinySearch('nodeloss', ns, { searchEpochs: 3000, spec: { backoffLimit: 0 } }));
    await waitForLog(kubelet(), ns, 'nodeloss-search-1', 'search epoch 3/');
    const first = await env.cluster.client.get(`/api/v1/namespaces/${ns}/pods/nodeloss-search-1`);
    const lost: string = first.spec.nodeName;
    await kubelet().vanishNode(lost);

    // The pod garbage collector removes the orphaned pod (after its 40 s quarantine); the
    // operator starts the next attempt, which the scheduler places on the remaining node.
    await waitForLog(kubelet(), ns, 'nodeloss-search-2', /resuming after epoch [1-9]/, 240_000);
    const second = await env.cluster.client.get(`/api/v1/namespaces/${ns}/pods/nodeloss-search-2`);
    expect(second.spec.nodeName).not.toBe(lost);
    const s = await env.cluster.client.get(iacsPath(ns, 'nodeloss'));
    expect(s.status.phase).toBe('Searching');
    expect(s.status.phases.search.preemptions).toBe(1);
    expect(s.status.phases.search.failures).toBe(0);
    await env.cluster.client.delete(iacsPath(ns, 'nodeloss'));
  }, 300_000);
});
