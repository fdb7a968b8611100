import { describe, expect, it, vi } from 'vitest';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import { EventRecorder } from '../k8s/events.ts';
import { reconcile } from '../reconcile/index.ts';
import { IACSearchType, PodType } from '../k8s/resources.ts';
import { ApiError, type KubeObject } from '../k8s/types.ts';
import { OperatorMetrics } from '../metrics/registry.ts';
import type { ReconcileInput, ReconcileResult } from '../reconcile/types.ts';
import { Controller, type ReconcileFn } from './controller.ts';

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const searchObj = (name = 's', ns = 'lab'): KubeObject => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name, namespace: ns },
  spec: { search: { maxEpochs: 10 } },
});

/** A small stand-in for the phase state machine: a Secret, one pod, status from the pod. */
const stubReconcile: ReconcileFn = (input: ReconcileInput): ReconcileResult => {
  const { name, namespace } = input.search.metadata;
  const actions: ReconcileResult['actions'] = [];
  if (!input.secrets.some((s) => s.metadata.name === `${name}-progress`)) {
    actions.push({
      type: 'create',
      object: {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: `${name}-progress`, namespace },
        data: { token: Buffer.from(input.newToken).toString('base64') },
      },
    });
  }
  const pod = input.pods.find((p) => p.metadata.name === `${name}-search-1`);
  if (!pod) {
    actions.push({ type: 'create', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: `${name}-search-1`, namespace }, spec: {} } });
    actions.push({ type: 'event', eventType: 'Normal', reason: 'PodCreated', message: `created ${name}-search-1` });
  }
  const podPhase = (pod?.status as { phase?: string } | undefined)?.phase;
  const status: Record<string, unknown> = {
    phase: podPhase === 'Succeeded' ? 'Succeeded' : 'Searching',
    conditions: [{ type: 'Ready', status: podPhase === 'Succeeded' ? 'True' : 'False', reason: 'R', message: '', lastTransitionTime: 't' }],
  };
  if (input.progress) status.progress = { epoch: input.progress.epoch };
  return { actions, status };
};

function setup(opts: { reconcile?: ReconcileFn; api?: FakeKubeApi; progressIntervalMs?: number; events?: EventRecorder } = {}) {
  const api = opts.api ?? new FakeKubeApi();
  const calls: ReconcileInput[] = [];
  const reconcile: ReconcileFn = (input) => {
    calls.push(input);
    return (opts.reconcile ?? stubReconcile)(input);
  };
  let ctl!: Controller;
  const metrics = new OperatorMetrics({
    searches: () => ctl.searches.list(),
    exportsSearchMetrics: () => true,
    queueDepth: () => ctl.queueDepth(),
  });
  ctl = new Controller({
    api,
    reconcile,
    settings: { defaultImage: 'trainer:1', progressURL: 'http://op/v1/progress' },
    workers: 2,
    metrics,
    events: opts.events ?? new EventRecorder(api, { instance: 'op-0' }),
    progressIntervalMs: opts.progressIntervalMs ?? 100,
    informerBackoffMs: 10,
  });
  return { api, ctl, calls, metrics };
}

const statusPatches = (api: FakeKubeApi) => api.callsOf('patchStatus', 'IACSearch');

describe('Controller', () => {
  it('writes events in the background: a slow event delays neither children nor status, and shutdown waits for it', async () => {
    const api = new FakeKubeApi();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const recorded: string[] = [];
    const slow = new EventRecorder(api, { instance: 'op-0' });
    slow.record = async (_obj, _type, reason) => {
      await gate;
      recorded.push(reason);
      return reason;
    };
    const { ctl } = setup({ api, events: slow });
    await api.create(searchObj());
    ctl.startInformers();
    await until(() => ctl.hasSynced());
    ctl.startWorkers();
    await until(() => api.objects('IACSearch')[0].status !== undefined && api.objects('Pod').length === 1);
    expect(recorded).toEqual([]);
    let down = false;
    const stopping = ctl.shutdown(5000).then(() => (down = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(down).toBe(false);
    release();
    await stopping;
    expect(recorded).toEqual(['PodCreated']);
  });

  it('creates the children with owner reference and label, records the event and writes the status once', async () => {
    const { api, ctl, calls } = setup();
    const created = await api.create(searchObj());
    ctl.startInformers();
    await until(() => ctl.hasSynced());
    ctl.startWorkers();
    await until(() => api.objects('IACSearch')[0].status !== undefined && api.objects('Pod').length === 1);
    const [pod] = api.objects('Pod', 'lab');
    expect(pod.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: 'IACSearch', name: 's', uid: created.metadata.uid, controller: true })]);
    expect(pod.metadata.labels).toMatchObject({ 'iac.dev/search': 's' });
    const [secret] = api.objects('Secret', 'lab');
    const token = Buffer.from((secret.data as { token: string }).token, 'base64').toString();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/); // 32 random bytes, base64url
    expect(api.objects('Event', 'lab').map((e) => e.reason)).toEqual(['PodCreated']);
    expect(api.objects('IACSearch')[0].status).toMatchObject({ phase: 'Searching' });
    // the children's events reconcile again; an unchanged status is not written again
    await sleep(100);
    expect(calls.length).toBeGreaterThan(1);
    expect(statusPatches(api)).toHaveLength(1);
    const patch = statusPatches(api)[0].body as { metadata: { resourceVersion: string }; status: { conditions: unknown[] } };
    expect(patch.metadata.resourceVersion).toBe(created.metadata.resourceVersion);
    expect(patch.status.conditions).toHaveLength(1); // the whole list in one patch
    await ctl.shutdown();
  });

  it('reconciles the owner again when an owned pod changes', async () => {
    const { api, ctl } = setup();
    await api.create(searchObj());
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => api.objects('Pod').length === 1);
    const pod = api.objects('Pod')[0];
    await api.mergePatchStatus(PodType, 'lab', pod.metadata.name, { status: { phase: 'Succeeded' } });
    await until(() => (api.objects('IACSearch')[0].status as { phase?: string } | undefined)?.phase === 'Succeeded');
    const conds = (api.objects('IACSearch')[0].status as { conditions: Array<{ status: string }> }).conditions;
    expect(conds[0].status).toBe('True');
    await ctl.shutdown();
  });

  it('treats 409 on create as "it exists" and reads it', async () => {
    const api = new FakeKubeApi();
    const { ctl, calls } = setup({ api });
    const search = await api.create(searchObj());
    // The pod exists but the cache has not seen it yet: create answers 409.
    api.failNext('create', new ApiError(409, 'pods "s-search-1" already exists', 'AlreadyExists'), { kind: 'Pod' });
    ctl.startInformers();
    await until(() => ctl.hasSynced());
    expect(search.metadata.uid).toBeDefined();
    await ctl.sync('lab/s');
    expect(calls).toHaveLength(1);
    expect(api.calls.some((c) => c.verb === 'create' && c.kind === 'Pod')).toBe(true);
    expect(statusPatches(api)).toHaveLength(1); // the reconcile went on after the 409
    await ctl.shutdown();
  });

  it('retries a failed reconcile with backoff and counts the retry', async () => {
    const { api, ctl, metrics } = setup();
    await api.create(searchObj());
    api.failNext('create', new ApiError(500, 'etcd timeout'), { kind: 'Pod', times: 2 });
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => api.objects('Pod').length === 1);
    const text = await metrics.metrics();
    expect(text).toMatch(/iac_operator_workqueue_retries_total 2/);
    expect(text).toMatch(/iac_operator_reconcile_total\{result="error"\} 2/);
    await ctl.shutdown();
  });

  it('honours requeueAfter', async () => {
    let n = 0;
    const { api, ctl, calls } = setup({
      reconcile: () => ({ actions: [], status: { phase: 'Pending' }, requeueAfterMs: ++n < 3 ? 30 : undefined }),
    });
    await api.create(searchObj());
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => calls.length >= 3);
    await sleep(80);
    expect(calls).toHaveLength(3);
    await ctl.shutdown();
  });

  it('retries a status write that conflicts with a newer version', async () => {
    const { api, ctl } = setup();
    await api.create(searchObj());
    api.failNext('patchStatus', new ApiError(409, 'the object has been modified', 'Conflict'));
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => api.objects('IACSearch')[0].status !== undefined);
    expect(statusPatches(api).length).toBe(2);
    await ctl.shutdown();
  });

  it('feeds accepted progress to reconcile and coalesces status updates per search', async () => {
    const { api, ctl, calls } = setup({ progressIntervalMs: 150 });
    await api.create(searchObj());
    ctl.startInformers();
    ctl.startWorkers();
    // Settled: the last reconcile saw the Secret, the pod and its own status (the
    // informers have delivered every event of the set-up) and nothing is queued.
    // Counting from earlier let a late set-up reconcile land in the count under load.
    await until(() => {
      const last = calls.at(-1);
      return !!last && last.pods.length === 1 && last.secrets.length === 1 && last.search.status !== undefined && ctl.queueDepth() === 0;
    });
    const before = statusPatches(api).length;
    const callsBefore = calls.length;
    for (let epoch = 1; epoch <= 5; epoch++) {
      ctl.acceptProgress('lab', 's', { type: 'progress', phase: 'search', epoch, maxEpochs: 10 });
    }
    await until(() => (api.objects('IACSearch')[0].status as { progress?: { epoch: number } }).progress?.epoch === 5);
    await sleep(200);
    expect(statusPatches(api).length - before).toBe(1);
    // Fewer reconciles than messages. How many depends on timing, not on coalescing:
    // one for the five messages, one more when the write waits out the progress
    // interval since the set-up's write (a slow set-up leaves less of it), one for the
    // informer's event of the write.
    expect(calls.length - callsBefore).toBeLessThan(5);
    expect(calls.at(-1)!.progress?.epoch).toBe(5);
    await ctl.shutdown();
  });

  it('writes a transition at once and news (messages, running totals) at most once per progress interval', async () => {
    let phase = 'Searching';
    let message = 0;
    const { api, ctl } = setup({
      progressIntervalMs: 300,
      reconcile: () => ({ actions: [], status: { phase, conditions: [{ type: 'Ready', status: 'False', reason: phase, message: `m${message}` }] } }),
    });
    await api.create(searchObj());
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => statusPatches(api).length === 1);
    const written = () => api.objects('IACSearch')[0].status as { phase: string; conditions: Array<{ message: string }> };
    // News right after a write waits for the interval, then goes out once with the latest.
    const t0 = Date.now();
    for (message = 1; message <= 3; message++) {
      ctl.enqueue('lab/s');
      await sleep(20);
    }
    message = 3;
    ctl.enqueue('lab/s');
    await until(() => written().conditions[0].message === 'm3');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(statusPatches(api)).toHaveLength(2);
    // A transition goes out at once, even right after a write.
    phase = 'Pruning';
    const t1 = Date.now();
    ctl.enqueue('lab/s');
    await until(() => written().phase === 'Pruning');
    expect(statusPatches(api)).toHaveLength(3);
    expect(Date.now() - t1).toBeLessThan(250);
    await ctl.shutdown();
  });

  it("sends a new search's Secret and claim together, and its pod only after both exist", async () => {
    const api = new FakeKubeApi();
    const create = api.create.bind(api);
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    api.create = async (o) => {
      order.push(`start ${o.kind}`);
      if (o.kind === 'Secret') await gate; // a slow create: the claim does not wait for it
      const out = await create(o);
      order.push(`done ${o.kind}`);
      return out;
    };
    const { ctl } = setup({ api, reconcile });
    await create({ ...searchObj(), spec: { dataset: { format: 'phantom' } } });
    ctl.startInformers();
    await until(() => ctl.hasSynced());
    ctl.startWorkers();
    await until(() => order.includes('done PersistentVolumeClaim'));
    expect(order).not.toContain('start Pod');
    release();
    await until(() => api.objects('Pod').length === 1);
    expect(order.indexOf('start Pod')).toBeGreaterThan(order.indexOf('done Secret'));
    await ctl.shutdown();
  });

  it('stops writing the moment it stops leading', async () => {
    const api = new FakeKubeApi();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // a slow API: the first create waits until the test lets it go
    const slowCreate = api.create.bind(api);
    let first = true;
    api.create = async (o) => {
      if (first && o.kind === 'Secret') {
        first = false;
        await gate;
      }
      return slowCreate(o);
    };
    const { ctl } = setup({ api });
    await api.create(searchObj());
    ctl.startInformers();
    await until(() => ctl.hasSynced());
    ctl.startWorkers();
    await until(() => !first);
    const stopped = ctl.stopWorkers(1000);
    release();
    expect(await stopped).toBe(true);
    await sleep(30);
    expect(api.objects('Pod')).toHaveLength(0); // the action after the lost term was not applied
    expect(statusPatches(api)).toHaveLength(0);
    expect(ctl.isRunning()).toBe(false);
    // a new term picks the search up again
    ctl.startWorkers();
    await until(() => api.objects('Pod').length === 1);
    await ctl.shutdown();
  });

  it('reconciles nothing before every informer has synced', async () => {
    const api = new FakeKubeApi();
    await api.create(searchObj());
    api.failNext('list', new ApiError(500, 'pods are slow'), { kind: 'Pod', times: 3 });
    const { ctl, calls } = setup({ api });
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => ctl.searches.hasSynced());
    expect(ctl.pods.hasSynced()).toBe(false);
    await sleep(20);
    expect(calls).toHaveLength(0);
    await until(() => ctl.hasSynced());
    await until(() => calls.length > 0);
    await ctl.shutdown();
  });

  it('waits for its own status write to reach the cache instead of reconciling from the old status', async () => {
    let n = 0;
    const api = new FakeKubeApi();
    // the cache lags: watch events are held back (the watches stay open)
    let lagging = false;
    const held: Array<() => void> = [];
    const watch = api.watch.bind(api);
    api.watch = (type, opts, onEvent, onClose) => watch(type, opts, (t, o) => (lagging ? held.push(() => onEvent(t, o)) : onEvent(t, o)), onClose);
    const { ctl, calls } = setup({ api, reconcile: () => ({ actions: [], status: { phase: 'Pending', n: ++n } }) });
    await api.create(searchObj());
    ctl.startInformers();
    await until(() => ctl.hasSynced() && api.openWatches() === 4);
    lagging = true;
    expect(await ctl.sync('lab/s')).toBeUndefined();
    expect(statusPatches(api)).toHaveLength(1);
    expect(await ctl.sync('lab/s')).toBe(2000); // deferred until the write's watch event (or 2 s): the cache still holds the version we replaced
    expect(calls).toHaveLength(1);
    expect(statusPatches(api)).toHaveLength(1);
    // the write's watch event arrives: the key is enqueued at once, not after the 2 s fallback
    const enqueued = vi.spyOn(ctl, 'enqueue');
    lagging = false;
    for (const deliver of held.splice(0)) deliver();
    expect(enqueued).toHaveBeenCalledWith('lab/s');
    await ctl.shutdown();
  });

  it('does not reconcile while an informer relists after a failed watch (its cache may miss a child)', async () => {
    const { api, ctl, calls } = setup();
    await api.create(searchObj());
    ctl.startInformers();
    await until(() => ctl.hasSynced() && api.openWatches() === 4);
    api.failNext('list', new ApiError(503, 'down'), { times: 10_000 });
    api.breakWatches();
    await until(() => !ctl.pods.isCurrent());
    expect(await ctl.sync('lab/s')).toBe(500);
    expect(calls).toHaveLength(0);
    expect(statusPatches(api)).toHaveLength(0);
    await ctl.shutdown();
  });

  it('hands reconcile the frozen cached objects: a reconcile that writes into them fails and the cache stays as it was', async () => {
    const { api, ctl } = setup({
      reconcile: (input) => {
        (input.search.metadata as { name: string }).name = 'mutated';
        return { actions: [], status: { phase: 'Pending' } };
      },
    });
    await api.create(searchObj());
    ctl.startInformers();
    await until(() => ctl.hasSynced());
    await expect(ctl.sync('lab/s')).rejects.toThrow(TypeError);
    expect(ctl.searches.get('lab', 's')!.metadata.name).toBe('s');
    await ctl.shutdown();
  });

  it('watches only the configured namespaces', async () => {
    const api = new FakeKubeApi();
    const calls: string[] = [];
    const ctl = new Controller({
      api,
      namespaces: ['a'],
      settings: { defaultImage: 'x' },
      reconcile: (input) => {
        calls.push(input.search.metadata.namespace!);
        return { actions: [], status: {} };
      },
    });
    await api.create(searchObj('s', 'a'));
    await api.create(searchObj('s', 'b'));
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => calls.length >= 1);
    await sleep(50);
    expect(calls).toEqual(['a']);
    await ctl.shutdown();
  });

  it('forgets a deleted search; its children go with it through their owner references', async () => {
    const { api, ctl } = setup();
    await api.create(searchObj());
    ctl.startInformers();
    ctl.startWorkers();
    await until(() => api.objects('Pod').length === 1);
    ctl.acceptProgress('lab', 's', { type: 'progress', phase: 'search', epoch: 1, maxEpochs: 10 });
    await api.delete(IACSearchType, 'lab', 's');
    await until(() => ctl.progress.size() === 0);
    expect(api.objects('Pod')).toHaveLength(0);
    expect(api.objects('Secret')).toHaveLength(0);
    await ctl.shutdown();
  });
});
