// The operator against a real kube-apiserver + etcd (+ kube-controller-manager for
// garbage collection), from the cluster harness in test/cluster: the API semantics the
// in-memory fake only imitates (409 on create, resourceVersion preconditions on the
// status subresource, events.k8s.io/v1 validation, Lease conflicts, owner-reference
// garbage collection) and `iacnas operator --kubeconfig` end to end.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, waitFor, type Cluster } from '../../../test/cluster/control-plane.ts';
import { clusterAvailability } from '../../../test/cluster/suite.ts';
import { LeaderElector } from '../controller/leader.ts';
import { silentLogger } from '../controller/log.ts';
import { parseOperatorArgs, startOperator } from '../main.ts';
import { HttpKubeApi, loadKubeConfig } from './client.ts';
import { EventRecorder } from './events.ts';
import { IACSearchType, PodType, SecretType } from './resources.ts';
import { ApiError, type KubeObject } from './types.ts';

const availability = clusterAvailability();
const ns = 'ops';

describe.skipIf(availability.skip)('operator on a real API server', () => {
  let cluster: Cluster;
  let api: HttpKubeApi;

  beforeAll(async () => {
    cluster = await startCluster({ persistentVolumes: 2 });
    await cluster.kubectl(['apply', '-f', path.resolve(import.meta.dirname, '../../../crds/nas.iac.dev_iacsearches.yaml')]);
    // (kubectl wait fails outright when it looks before the CRD has any condition)
    await waitFor(
      'CRD established',
      async () => {
        const crd = await cluster.client.find('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/iacsearches.nas.iac.dev');
        return crd?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Established' && c.status === 'True');
      },
      60_000,
    );
    await cluster.kubectl(['create', 'namespace', ns]);
    await cluster.kubectl(['create', 'namespace', 'iac-system']);
    api = new HttpKubeApi(loadKubeConfig({ kubeconfig: cluster.kubeconfigPath }));
  });

  afterAll(async () => {
    await api?.close();
    await cluster?.stop();
  });

  const search = (name: string): KubeObject => ({
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearch',
    metadata: { name, namespace: ns },
    spec: { dataset: { format: 'phantom' }, search: { maxEpochs: 20 } },
  });

  it('creates once (409 after), reads, and deletes (false when gone)', async () => {
    const secret: KubeObject = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'one', namespace: ns }, stringData: { token: 't' } };
    const created = await api.create(secret);
    expect(created.metadata.uid).toBeTruthy();
    const again = await api.create(secret).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(ApiError);
    expect((again as ApiError).code).toBe(409);
    expect((await api.get(SecretType, ns, 'one'))?.metadata.uid).toBe(created.metadata.uid);
    expect(await api.delete(SecretType, ns, 'one')).toBe(true);
    expect(await api.delete(SecretType, ns, 'one')).toBe(false);
    expect(await api.get(SecretType, ns, 'one')).toBeUndefined();
  });

  it("watches from a list's resource version over TLS with the client certificate", async () => {
    const { resourceVersion } = await api.list(SecretType, { namespace: ns });
    const events: string[] = [];
    let closed: unknown = 'open';
    const handle = await api.watch(
      SecretType,
      { namespace: ns, resourceVersion },
      (t, o) => events.push(`${t}:${o.metadata.name}`),
      (err) => (closed = err),
    );
    await api.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'watched', namespace: ns } });
    await waitFor('ADDED event', () => events.includes('ADDED:watched'), 30_000);
    await api.delete(SecretType, ns, 'watched');
    await waitFor('DELETED event', () => events.includes('DELETED:watched'), 30_000);
    handle.stop();
    expect(closed).toBe('open'); // stop() does not call onClose
  });

  it('patches the status subresource with a resourceVersion precondition', async () => {
    const s = await api.create(search('status-check'));
    const stale = s.metadata.resourceVersion;
    const ok = await api.mergePatchStatus(IACSearchType, ns, 'status-check', { metadata: { resourceVersion: stale }, status: { phase: 'Pending' } });
    expect((ok.status as { phase: string }).phase).toBe('Pending');
    const conflict = await api
      .mergePatchStatus(IACSearchType, ns, 'status-check', { metadata: { resourceVersion: stale }, status: { phase: 'Failed' } })
      .catch((e: unknown) => e);
    expect((conflict as ApiError).code).toBe(409);
    const list = await api.list(IACSearchType, { namespace: ns });
    expect(list.items.find((i) => i.metadata.name === 'status-check')?.status).toMatchObject({ phase: 'Pending' });
    await api.delete(IACSearchType, ns, 'status-check');
  });

  it('writes events.k8s.io/v1 events the API server accepts, and their series', async () => {
    const regarding = await api.create({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'ev', namespace: ns } });
    const rec = new EventRecorder(api, { instance: 'test' });
    const name = await rec.record(regarding, 'Normal', 'Checked', 'a note');
    expect(await rec.record(regarding, 'Normal', 'Checked', 'a note')).toBe(name);
    const ev = await api.get({ apiVersion: 'events.k8s.io/v1', kind: 'Event', plural: 'events', namespaced: true }, ns, name);
    expect(ev?.eventTime).toMatch(/\.\d{6}Z$/);
    expect((ev!.series as { count: number }).count).toBe(2);
  });

  it('elects one leader on a real Lease; a racing candidate gets 409', async () => {
    const opts = { namespace: 'iac-system', name: `race-${randomBytes(3).toString('hex')}` };
    const a = new LeaderElector(api, { ...opts, identity: 'a' });
    const b = new LeaderElector(api, { ...opts, identity: 'b' });
    const results = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
    expect([...results].sort()).toEqual(expect.arrayContaining(['leading']));
    expect(results.filter((r) => r === 'leading')).toHaveLength(1);
    const leader = results[0] === 'leading' ? a : b;
    const other = leader === a ? b : a;
    expect(await other.tryAcquireOrRenew()).toBe('held');
    expect(await leader.tryAcquireOrRenew()).toBe('leading');
  });

  it('iacnas operator --kubeconfig runs a search and garbage collection removes its children with it', async () => {
    const cfg = parseOperatorArgs(
      [
        '--kubeconfig',
        cluster.kubeconfigPath,
        '--host',
        '127.0.0.1',
        '--port',
        '1',
        '--namespaces',
        ns,
        '--leader-elect',
        '--leader-election-namespace',
        'iac-system',
        '--progress-interval',
        '100ms',
      ],
      {},
    );
    if (cfg === 'help') throw new Error('unexpected');
    const op = await startOperator({ ...cfg, port: 0, progressURL: 'http://127.0.0.1:1/v1/progress' }, api, silentLogger);
    try {
      await waitFor('leader', () => op.elector!.isLeader(), 30_000);
      await api.create(search('acdc'));
      const pod = await waitFor('search pod', () => api.get(PodType, ns, 'acdc-search-1'), 30_000);
      expect(pod.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'IACSearch', name: 'acdc', controller: true });
      const s = await waitFor(
        'status',
        async () => {
          const o = await api.get(IACSearchType, ns, 'acdc');
          return (o?.status as { phase?: string } | undefined)?.phase === 'Searching' ? o : undefined;
        },
        30_000,
      );
      expect((s.status as { conditions: unknown[] }).conditions.length).toBeGreaterThan(0);

      // progress from the trainer, with the token of the Secret the operator created
      const secret = await waitFor('progress secret', () => api.get(SecretType, ns, 'acdc-progress'), 30_000);
      const token = Buffer.from((secret.data as { token: string }).token, 'base64').toString();
      await waitFor('token in cache', () => op.controller.checkProgressToken(ns, 'acdc', token) === 'ok', 30_000);
      const res = await fetch(`${op.address}/v1/progress`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-iacsearch': `${ns}/acdc` },
        body: JSON.stringify({ type: 'progress', phase: 'search', epoch: 2, maxEpochs: 20 }),
      });
      expect(res.status).toBe(202);
      await waitFor(
        'progress in status',
        async () => ((await api.get(IACSearchType, ns, 'acdc'))?.status as { progress?: { epoch?: number } })?.progress?.epoch === 2,
        30_000,
      );

      await api.delete(IACSearchType, ns, 'acdc');
      await waitFor(
        'children collected',
        async () => !(await api.get(PodType, ns, 'acdc-search-1')) && !(await api.get(SecretType, ns, 'acdc-progress')),
        120_000,
      );
    } finally {
      await op.stop();
    }
    const lease = await api.get(
      { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', plural: 'leases', namespaced: true },
      'iac-system',
      'iac-operator-leader',
    );
    expect((lease!.spec as { holderIdentity?: string }).holderIdentity ?? '').toBe(''); // released on stop
  });
});
