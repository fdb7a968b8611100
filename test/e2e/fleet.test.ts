// IACSearchSet end to end: one set of three tiny seeds, two at a time, on a real API
// server with the real trainer as processes. Its children are named, owned and labelled
// as docs/fleets.md says, never more than two run at once, all three succeed, and the
// set's table and best child are the children's own figures; a matrix edit orphans or
// deletes the children of removed seeds and creates the new ones; a budget over all
// children suspends them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../cluster/control-plane.ts';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { condition, createNamespace, iacsPath, searchPods, setsPath, startE2E, startOperator, tinySearch, type E2EEnv } from './env.ts';

const availability = clusterAvailability();
const ns = 'fleet';
const LABEL = 'iac.dev/search-set';

async function children(env: E2EEnv, set: string): Promise<KubeJSON[]> {
  const list = await env.cluster.client.get(`${iacsPath(ns)}?labelSelector=${encodeURIComponent(`${LABEL}=${set}`)}`);
  return (list.items as KubeJSON[]).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

async function waitForSet(env: E2EEnv, name: string, what: string, check: (s: KubeJSON) => boolean, timeoutMs = 300_000): Promise<KubeJSON> {
  let last: KubeJSON;
  try {
    return await waitFor(
      `${ns}/${name}: ${what}`,
      async () => {
        last = await env.cluster.client.find(setsPath(ns, name));
        return last && check(last) ? last : undefined;
      },
      timeoutMs,
      500,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\nlast status: ${JSON.stringify(last?.status ?? null, null, 1).slice(0, 6000)}`);
  }
}

const fleet = (name: string, spec: Record<string, unknown>, searchEpochs?: number): KubeJSON => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearchSet',
  metadata: { name, namespace: ns },
  spec: { template: tinySearch('template', ns, { searchEpochs }).spec, ...spec },
});

describe.skipIf(availability.skip)('IACSearchSet', () => {
  let env: E2EEnv;

  beforeAll(async () => {
    env = await startE2E({ cluster: { persistentVolumes: 10 }, kubelet: { nodes: [{ name: 'gpu-node', cpu: '16', memory: '64Gi', gpus: 6 }] } });
    await createNamespace(env.cluster, ns);
    await startOperator(env.cluster);
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('runs three seeds two at a time, tables their results, and follows a matrix edit', async () => {
    const created = await env.cluster.client.create(
      setsPath(ns),
      fleet('seeds', { matrix: { seeds: [1, 2, 3] }, maxParallel: 2, removedChildren: 'Orphan', budget: { maxGPUHours: 1 } }),
    );

    // Children: stable names, the set's label, the set as controller.
    const first = await waitFor('three children', async () => ((await children(env, 'seeds')).length === 3 ? children(env, 'seeds') : undefined), 60_000);
    expect(first.map((c) => c.metadata.name)).toEqual(['seeds-s1', 'seeds-s2', 'seeds-s3']);
    for (const c of first) {
      expect(c.metadata.ownerReferences).toEqual([
        { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearchSet', name: 'seeds', uid: created.metadata.uid, controller: true, blockOwnerDeletion: true },
      ]);
      expect(c.spec.seed).toBe(Number(c.metadata.name.slice('seeds-s'.length)));
    }
    expect(first.filter((c) => c.spec.suspend).length).toBe(1);

    // Until all three finish: never more than two with a live pod.
    let most = 0;
    const finished = await waitFor(
      'all three children finished',
      async () => {
        const now = await children(env, 'seeds');
        const pods = (await Promise.all(now.map((c) => searchPods(env.cluster, ns, c.metadata.name)))).map((ps) =>
          ps.some((p) => p.status?.phase === 'Pending' || p.status?.phase === 'Running'),
        );
        most = Math.max(most, pods.filter(Boolean).length);
        return now.every((c) => ['Succeeded', 'Failed'].includes(c.status?.phase)) ? now : undefined;
      },
      600_000,
      300,
    );
    // The first two are released together and run for seconds side by side.
    expect(most).toBe(2);
    for (const c of finished) expect(c.status.phase, `${c.metadata.name}: ${JSON.stringify(c.status.phases)}`).toBe('Succeeded');

    // The set's table is the children's own statuses; the best child has the highest Dice.
    const set = await waitForSet(env, 'seeds', 'Succeeded', (s) => s.status?.phase === 'Succeeded');
    expect(set.status.ready).toBe('3/3');
    expect(condition(set, 'Ready')?.status).toBe('True');
    expect(set.status.table.map((r: KubeJSON) => r.name)).toEqual(['seeds-s1', 'seeds-s2', 'seeds-s3']);
    for (const c of finished) {
      const row = set.status.table.find((r: KubeJSON) => r.name === c.metadata.name);
      expect(row).toMatchObject({ seed: c.spec.seed, phase: 'Succeeded', searchEpochs: c.status.searchResult.epochs, testDice: c.status.results.meanDice });
      expect(row.costUSD).toBe(c.status.cost.estimatedUSD);
    }
    const best = [...finished].sort((a, b) => b.status.results.meanDice - a.status.results.meanDice)[0];
    expect(set.status.bestChild).toEqual({ name: best.metadata.name, testDice: best.status.results.meanDice });
    const usd = finished.reduce((sum, c) => sum + c.status.cost.estimatedUSD, 0);
    expect(set.status.estimatedUSD).toBeCloseTo(usd, 3);
    // All three ran to the end within the set's budget of one GPU-hour.
    expect(set.status.gpuHours).toBeLessThan(1);
    expect(condition(set, 'BudgetExceeded')?.status ?? 'False').toBe('False');
    // kubectl get iacss: the columns at a glance.
    const [header, line] = (await env.cluster.kubectl(['get', 'iacss', '-n', ns, 'seeds'])).stdout.trimEnd().split('\n');
    expect(header.split(/\s+/)).toEqual(['NAME', 'READY', 'RUNNING', 'FAILED', 'BEST-DICE', 'GPU-HOURS', 'COST', 'AGE']);
    expect(line.split(/\s+/).slice(0, 5)).toEqual(['seeds', '3/3', '0', '0', String(best.status.results.meanDice)]);

    // Seed 3 leaves the matrix (Orphan: it stays, without the set's label and owner); seed 4 comes.
    await env.cluster.client.mergePatch(setsPath(ns, 'seeds'), { spec: { matrix: { seeds: [1, 2, 4] } } });
    const orphan = await waitFor(
      'seeds-s3 orphaned',
      async () => {
        const s3 = await env.cluster.client.get(iacsPath(ns, 'seeds-s3'));
        return !s3.metadata.labels?.[LABEL] && !(s3.metadata.ownerReferences ?? []).length ? s3 : undefined;
      },
      60_000,
    );
    expect(orphan.status.phase).toBe('Succeeded');
    const s4 = await waitFor('seeds-s4', () => env.cluster.client.find(iacsPath(ns, 'seeds-s4')), 60_000);
    expect(s4.metadata.labels[LABEL]).toBe('seeds');
    // The children of seeds 1 and 2 are the same objects as before: never changed by the set.
    for (const name of ['seeds-s1', 'seeds-s2']) {
      const c = await env.cluster.client.get(iacsPath(ns, name));
      expect(c.metadata.uid).toBe(first.find((f) => f.metadata.name === name)!.metadata.uid);
    }

    // Seed 2 leaves too, with the Delete policy: its child is deleted.
    await env.cluster.client.mergePatch(setsPath(ns, 'seeds'), { spec: { matrix: { seeds: [1, 4] }, removedChildren: 'Delete' } });
    await waitFor('seeds-s2 deleted', async () => !(await env.cluster.client.find(iacsPath(ns, 'seeds-s2'))), 60_000);
    const edited = await waitForSet(env, 'seeds', 'two children', (s) => s.status?.children === 2);
    expect(edited.status.table.map((r: KubeJSON) => r.name)).toEqual(['seeds-s1', 'seeds-s4']);
    expect(await env.cluster.client.find(iacsPath(ns, 'seeds-s3'))).toBeTruthy();
  }, 900_000);

  it('suspends every running child once all of them together are over the budget', async () => {
    await env.cluster.client.create(setsPath(ns), fleet('budget', { matrix: { seeds: [1, 2] }, budget: { maxGPUHours: 0.002 } }, 200));
    const set = await waitForSet(env, 'budget', 'Suspended by the budget', (s) => s.status?.phase === 'Suspended');
    expect(condition(set, 'BudgetExceeded')?.status).toBe('True');
    expect(set.status.gpuHours).toBeGreaterThanOrEqual(0.002);
    const held = await waitFor(
      'both children suspended',
      async () => {
        const cs = await children(env, 'budget');
        return cs.length === 2 && cs.every((c) => c.spec.suspend && c.status?.phase === 'Suspended') ? cs : undefined;
      },
      120_000,
    );
    for (const c of held) expect(c.metadata.annotations['iac.dev/search-set-hold']).toBe('Budget');
    // No pod runs any more.
    await waitFor(
      'no live pod',
      async () => {
        const pods = (await Promise.all(held.map((c) => searchPods(env.cluster, ns, c.metadata.name)))).flat();
        return pods.every((p) => !['Pending', 'Running'].includes(p.status?.phase));
      },
      60_000,
    );
  }, 600_000);
});
