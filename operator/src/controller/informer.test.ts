import { describe, expect, it } from 'vitest';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import { PodType } from '../k8s/resources.ts';
import type { KubeObject } from '../k8s/types.ts';
import { Informer } from './informer.ts';
import { silentLogger } from './log.ts';

const pod = (ns: string, name: string, labels: Record<string, string> = { 'iac.dev/search': 's' }): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels },
});

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('Informer', () => {
  it('lists, syncs and follows watch events with the label selector', async () => {
    const api = new FakeKubeApi();
    api.seed(pod('a', 'p1'));
    api.seed(pod('a', 'other', { app: 'x' }));
    const inf = new Informer(api, PodType, { labelSelector: 'iac.dev/search' });
    const events: string[] = [];
    inf.on((e, o) => events.push(`${e}:${o.metadata.name}`));
    inf.start();
    await until(() => inf.hasSynced());
    expect(inf.list().map((p) => p.metadata.name)).toEqual(['p1']);
    await until(() => api.openWatches() === 1);
    await api.create(pod('a', 'p2'));
    await until(() => inf.get('a', 'p2') !== undefined);
    await api.delete(PodType, 'a', 'p1');
    await until(() => inf.get('a', 'p1') === undefined);
    expect(events).toEqual(['add:p1', 'add:p2', 'delete:p1']);
    inf.stop();
  });

  it('freezes cached objects so that nobody mutates the shared cache', async () => {
    const api = new FakeKubeApi();
    api.seed(pod('a', 'p1'));
    const inf = new Informer(api, PodType);
    inf.start();
    await until(() => inf.hasSynced());
    const cached = inf.get('a', 'p1')!;
    expect(() => {
      (cached.metadata as { name: string }).name = 'changed';
    }).toThrow(TypeError);
    inf.stop();
  });

  it('restarts with backoff after a watch error and catches up on what it missed', async () => {
    const api = new FakeKubeApi();
    const restarts: string[] = [];
    const inf = new Informer(api, PodType, { initialBackoffMs: 10, onRestart: (r) => restarts.push(r) });
    inf.start();
    await until(() => inf.hasSynced() && api.openWatches() === 1);
    api.failNext('list', new Error('apiserver down'), { times: 2 });
    api.breakWatches(new Error('connection reset'));
    await api.create(pod('a', 'missed'));
    await until(() => inf.get('a', 'missed') !== undefined);
    expect(restarts.length).toBe(3); // the broken watch and two failed lists
    inf.stop();
  });

  it('is not current from a failed watch until it has listed again, and starts the next backoff from the first delay', async () => {
    const api = new FakeKubeApi();
    const restartedAt: number[] = [];
    const backoffs: unknown[] = [];
    const log = { ...silentLogger, warn: (_msg: string, fields?: Record<string, unknown>) => backoffs.push(fields?.backoffMs) };
    const inf = new Informer(api, PodType, { initialBackoffMs: 20, maxBackoffMs: 10_000, log, onRestart: () => restartedAt.push(Date.now()) });
    inf.start();
    await until(() => inf.hasSynced() && api.openWatches() === 1);
    expect(inf.isCurrent()).toBe(true);
    // An outage: the watch breaks, four lists fail (backoff 20, 40, 80, 160 ms).
    api.failNext('list', new Error('apiserver down'), { times: 4 });
    api.breakWatches(new Error('connection reset'));
    await until(() => restartedAt.length === 1);
    expect(inf.isCurrent()).toBe(false);
    await until(() => inf.isCurrent() && api.openWatches() === 1, 5000);
    expect(backoffs).toEqual([20, 40, 80, 160, 320]);
    // A second outage right after: it starts again from the first delay.
    api.failNext('list', new Error('apiserver down'), { times: 1 });
    api.breakWatches(new Error('connection reset'));
    await until(() => restartedAt.length === 7 && inf.isCurrent(), 5000);
    expect(backoffs.slice(5)).toEqual([20, 40]);
    inf.stop();
  });

  it('with several namespaces, is not current only where a watch failed', async () => {
    const api = new FakeKubeApi();
    const inf = new Informer(api, PodType, { namespaces: ['a', 'b'], initialBackoffMs: 10 });
    const watch = api.watch.bind(api);
    let breakB: ((err: unknown) => void) | undefined;
    api.watch = (type, opts, onEvent, onClose) => {
      if (opts.namespace === 'b') breakB = onClose;
      return watch(type, opts, onEvent, onClose);
    };
    inf.start();
    await until(() => inf.hasSynced() && api.openWatches() === 2);
    api.failNext('list', new Error('forbidden'), { times: 10_000 });
    breakB!(new Error('connection reset'));
    await until(() => !inf.isCurrent('b'));
    expect(inf.isCurrent('a')).toBe(true);
    expect(inf.isCurrent()).toBe(false);
    inf.stop();
  });

  it('resumes a normally ended watch without relisting, and relists on 410 Gone', async () => {
    const api = new FakeKubeApi();
    const inf = new Informer(api, PodType, { initialBackoffMs: 10 });
    const restarts: unknown[] = [];
    inf.on(() => {});
    inf.start();
    await until(() => inf.hasSynced() && api.openWatches() === 1);
    api.endWatches();
    await api.create(pod('a', 'after-timeout'));
    await until(() => inf.get('a', 'after-timeout') !== undefined);
    await until(() => api.openWatches() === 1);
    // the history is compacted while the watch is down: the next watch gets 410 and relists
    api.endWatches();
    await api.create(pod('a', 'after-compaction'));
    api.compact();
    await until(() => inf.get('a', 'after-compaction') !== undefined);
    expect(restarts).toEqual([]);
    inf.stop();
  });

  it('treats a watch ERROR event other than 410 as an error: restart with backoff', async () => {
    const api = new FakeKubeApi();
    const restarts: string[] = [];
    const inf = new Informer(api, PodType, { initialBackoffMs: 5, onRestart: (r) => restarts.push(r) });
    const realWatch = api.watch.bind(api);
    let first = true;
    api.watch = async (type, opts, onEvent, onClose) => {
      const handle = await realWatch(type, opts, onEvent, onClose);
      if (first) {
        first = false;
        queueMicrotask(() => onEvent('ERROR', { apiVersion: 'v1', kind: 'Status', metadata: { name: '' }, code: 500, message: 'internal error' }));
      }
      return handle;
    };
    inf.start();
    await until(() => restarts.length === 1 && api.openWatches() >= 1);
    await api.create(pod('a', 'after'));
    await until(() => inf.get('a', 'after') !== undefined);
    expect(restarts).toEqual(['pods']);
    inf.stop();
  });

  it('watches only the given namespaces', async () => {
    const api = new FakeKubeApi();
    api.seed(pod('a', 'p'));
    api.seed(pod('b', 'p'));
    api.seed(pod('c', 'p'));
    const inf = new Informer(api, PodType, { namespaces: ['a', 'c'] });
    inf.start();
    await until(() => inf.hasSynced());
    expect(
      inf
        .list()
        .map((p) => p.metadata.namespace)
        .sort(),
    ).toEqual(['a', 'c']);
    inf.stop();
  });

  it("caches objects without managedFields or kubectl's last-applied copy, reduced by its transform", async () => {
    const api = new FakeKubeApi();
    api.seed({
      ...pod('a', 'p1'),
      metadata: {
        name: 'p1',
        namespace: 'a',
        labels: { 'iac.dev/search': 's' },
        annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":1}', keep: 'me' },
        managedFields: [{ manager: 'kubectl' }],
      } as KubeObject['metadata'],
      spec: { containers: [{ name: 'c' }], volumes: [{ name: 'v' }] },
    });
    const inf = new Informer(api, PodType, { transform: (o) => ({ ...o, spec: { containers: (o.spec as { containers: unknown }).containers } }) });
    inf.start();
    await until(() => inf.hasSynced());
    const cached = inf.get('a', 'p1')!;
    expect(cached.metadata).not.toHaveProperty('managedFields');
    expect(cached.metadata.annotations).toEqual({ keep: 'me' });
    expect(cached.metadata.labels).toEqual({ 'iac.dev/search': 's' });
    expect(cached.spec).toEqual({ containers: [{ name: 'c' }] });
    expect(Object.isFrozen(cached.spec)).toBe(true);
    inf.stop();
  });

  it('keeps its index in step with adds, label changes and deletes', async () => {
    const api = new FakeKubeApi();
    api.seed(pod('a', 'p1', { 'iac.dev/search': 's1' }));
    api.seed(pod('a', 'p2', { 'iac.dev/search': 's1' }));
    api.seed(pod('b', 'p1', { 'iac.dev/search': 's1' }));
    const inf = new Informer(api, PodType, {
      indexBy: (o) => (o.metadata.labels?.['iac.dev/search'] ? `${o.metadata.namespace}/${o.metadata.labels['iac.dev/search']}` : undefined),
    });
    inf.start();
    await until(() => inf.hasSynced());
    const names = (key: string) =>
      inf
        .byIndex(key)
        .map((o) => `${o.metadata.namespace}/${o.metadata.name}`)
        .sort();
    expect(names('a/s1')).toEqual(['a/p1', 'a/p2']);
    expect(names('b/s1')).toEqual(['b/p1']);
    await until(() => api.openWatches() === 1);
    await api.mergePatch(PodType, 'a', 'p2', { metadata: { labels: { 'iac.dev/search': 's2' } } });
    await until(() => names('a/s2').length === 1);
    expect(names('a/s1')).toEqual(['a/p1']);
    await api.mergePatch(PodType, 'a', 'p1', { metadata: { labels: { 'iac.dev/search': null } } });
    await until(() => names('a/s1').length === 0);
    await api.delete(PodType, 'a', 'p2');
    await until(() => names('a/s2').length === 0);
    expect(names('b/s1')).toEqual(['b/p1']);
    inf.stop();
  });
});
