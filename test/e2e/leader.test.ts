// Two operator replicas with leader election on a real Lease: only the holder
// reconciles, and killing it (no graceful release) hands the work over within the
// lease duration; the search still finishes with each phase run once.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../cluster/control-plane.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import {
  createNamespace,
  iacsPath,
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
const ns = 'leader';
const LEASE = '/apis/coordination.k8s.io/v1/namespaces/default/leases/iac-operator-leader';
const LEASE_SECONDS = 6;
const electionArgs = [`--lease-duration=${LEASE_SECONDS}s`, '--renew-deadline=4s', '--retry-period=1s'];

/** Lines of an operator's JSON log that record objects it created. */
const creations = (op: OperatorHandle) =>
  readFileSync(op.logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"msg":"created"'))
    .map((l) => JSON.parse(l) as { object: string; kind: string });

describe.skipIf(availability.skip)('leader election between two operator replicas', () => {
  let env: E2EEnv;
  let a: OperatorHandle;
  let b: OperatorHandle;

  beforeAll(async () => {
    env = await startE2E({ kubelet: { nodes: [{ name: 'gpu-node-1', cpu: '8', memory: '32Gi', gpus: 2 }] } });
    await createNamespace(env.cluster, ns);
    a = await startOperator(env.cluster, { name: 'replica-a', leaderElect: true, args: electionArgs });
    await waitFor('replica-a holds the lease', async () => (await env.cluster.client.find(LEASE))?.spec?.holderIdentity === 'replica-a', 60_000);
    b = await startOperator(env.cluster, { name: 'replica-b', leaderElect: true, args: electionArgs });
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('lets only the lease holder reconcile, and hands over within the lease time when it dies', async () => {
    await env.cluster.client.create(iacsPath(ns), tinySearch('handover', ns, { searchEpochs: 40 }));
    await waitForLog(env.kubelet!, ns, 'handover-search-1', 'search epoch 2/');
    expect(creations(a).map((c) => c.object)).toContain('handover-search-1');
    expect(creations(b)).toEqual([]);
    expect((await env.cluster.client.get(LEASE)).spec.holderIdentity).toBe('replica-a');

    const killedAt = Date.now();
    await a.kill();
    const lease = await waitFor(
      'replica-b holds the lease',
      async () => {
        const l = await env.cluster.client.get(LEASE);
        return l.spec.holderIdentity === 'replica-b' ? l : undefined;
      },
      60_000,
      200,
    );
    const handover = (Date.now() - killedAt) / 1000;
    // The old lease must expire first (LEASE_SECONDS), then one retry period.
    expect(handover).toBeLessThan(LEASE_SECONDS + 5);
    expect(lease.spec.leaseTransitions).toBeGreaterThanOrEqual(1);

    const s = await waitForSearch(env.cluster, ns, 'handover', 'finished', (x) => ['Succeeded', 'Failed'].includes(x.status?.phase), 300_000);
    expect(s.status.phase).toBe('Succeeded');
    const pods = (await searchPods(env.cluster, ns, 'handover')).map((p) => p.metadata.name);
    expect(pods).toEqual(['handover-evaluate-1', 'handover-prune-1', 'handover-retrain-1', 'handover-search-1']);
    // The later phases were started by the new leader.
    expect(creations(b).map((c) => c.object)).toEqual(expect.arrayContaining(['handover-prune-1', 'handover-retrain-1', 'handover-evaluate-1']));
  }, 400_000);
});
