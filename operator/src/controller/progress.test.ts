import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { describe, expect, it, vi } from 'vitest';
import { appFor } from '../../testing/app.ts';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import { SecretType } from '../k8s/resources.ts';
import type { KubeApi, KubeObject, ListResult, ResourceType } from '../k8s/types.ts';
import { Controller } from './controller.ts';

/** Waits for a condition, event by event (the test's own timeout bounds it). */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

const searchObject = (namespace: string, name: string, spec: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name, namespace },
  spec: { dataset: { format: 'phantom' }, search: { maxEpochs: 20 }, ...spec },
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A progress Secret as the operator creates it: label and controller owner reference. */
const operatorSecret = (search: KubeObject, token: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: {
    name: `${search.metadata.name}-progress`,
    namespace: search.metadata.namespace,
    labels: { 'iac.dev/search': search.metadata.name },
    ownerReferences: [
      { apiVersion: search.apiVersion, kind: 'IACSearch', name: search.metadata.name, uid: search.metadata.uid!, controller: true, blockOwnerDeletion: true },
    ],
  },
  type: 'Opaque',
  data: { token: b64(token) },
});

/** A Secret anybody who may create Secrets can make: the right name and label, no owner. */
const handMadeSecret = (namespace: string, search: string, token: string, extra: Partial<KubeObject['metadata']> = {}): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: `${search}-progress`, namespace, labels: { 'iac.dev/search': search }, ...extra },
  data: { token: b64(token) },
});

function controllerOn(api: KubeApi): Controller {
  return new Controller({
    api,
    reconcile: () => {
      throw new Error('no reconcile in these tests');
    },
    settings: { defaultImage: 'trainer:test' },
  });
}

async function synced(api: KubeApi): Promise<Controller> {
  const c = controllerOn(api);
  c.startInformers();
  await until(() => c.hasSynced());
  return c;
}

const appOn = (controller: Controller) => appFor(controller);

describe('progress tokens', () => {
  // Attack 6: a Secret a user made by hand with the right name and label was a valid token.
  it('count only in the Secret the operator created for the named search (controller owner reference with its uid)', async () => {
    const api = new FakeKubeApi();
    const acdc = await api.create(searchObject('lab', 'acdc'));
    await api.create(operatorSecret(acdc, 'token-acdc'));
    const brats = await api.create(searchObject('lab', 'brats'));
    await api.create(handMadeSecret('lab', 'brats', 'guessed')); // by hand: no owner reference
    await api.create(handMadeSecret('lab', 'ghost', 'ghost-token')); // for no search at all
    const kits = await api.create(searchObject('lab', 'kits'));
    // an owner reference to the right name but another uid (a deleted search of the same name)
    await api.create(
      handMadeSecret('lab', 'kits', 'stale', {
        ownerReferences: [{ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', name: 'kits', uid: 'not-its-uid', controller: true }],
      }),
    );
    const amos = await api.create(searchObject('lab', 'amos'));
    // the right uid, but not as the controller
    await api.create(
      handMadeSecret('lab', 'amos', 'not-controller', {
        ownerReferences: [{ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', name: 'amos', uid: amos.metadata.uid!, controller: false }],
      }),
    );
    const c = await synced(api);
    await until(() => c.secrets.list().length === 5 && c.searches.list().length === 4);

    expect(c.checkProgressToken('lab', 'acdc', 'token-acdc')).toBe('ok');
    expect(c.checkProgressToken('lab', 'acdc', 'token-acdc-')).toBe('unauthorized');
    expect(c.checkProgressToken('lab', 'acdc', '')).toBe('unauthorized');
    expect(c.checkProgressToken('lab', 'brats', 'guessed')).toBe('unauthorized');
    expect(c.checkProgressToken('lab', 'ghost', 'ghost-token')).toBe('unauthorized');
    expect(c.checkProgressToken('lab', 'kits', 'stale')).toBe('unauthorized');
    expect(c.checkProgressToken('lab', 'amos', 'not-controller')).toBe('unauthorized');
    // a search's token is good for that search only
    expect(c.checkProgressToken('lab', 'brats', 'token-acdc')).toBe('unauthorized');
    expect(c.checkProgressToken('prod', 'acdc', 'token-acdc')).toBe('unauthorized');
    void brats;
    void kits;

    // through HTTP: the hand-made Secret's token is refused, the operator's accepted
    const app = appOn(c);
    const post = (search: string, token: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/progress',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-iacsearch': search },
        payload: { type: 'progress', phase: 'search', epoch: 2, maxEpochs: 20 },
      });
    expect((await post('lab/brats', 'guessed')).statusCode).toBe(401);
    expect((await post('lab/acdc', 'token-acdc')).statusCode).toBe(202);
    await c.shutdown();
  });

  it('are looked up by the search the request names, never by scanning every Secret', async () => {
    const api = new FakeKubeApi();
    const acdc = await api.create(searchObject('lab', 'acdc'));
    await api.create(operatorSecret(acdc, 'token-acdc'));
    for (let i = 0; i < 50; i++) await api.create(handMadeSecret(`t${i}`, `s${i}`, `tok${i}`));
    const c = await synced(api);
    await until(() => c.secrets.list().length === 51);
    const list = vi.spyOn(c.secrets, 'list');
    const get = vi.spyOn(c.secrets, 'get');
    expect(c.checkProgressToken('lab', 'acdc', 'wrong')).toBe('unauthorized');
    expect(c.checkProgressToken('lab', 'acdc', 'token-acdc')).toBe('ok');
    expect(list).not.toHaveBeenCalled();
    expect(get.mock.calls).toEqual([
      ['lab', 'acdc-progress'],
      ['lab', 'acdc-progress'],
    ]);
    await c.shutdown();
  });

  // Attack 6: 200 labelled Secrets of 0.9 MB kept 180 MB in the informer cache.
  it('keep only a hash of the token in the Secret cache: 200 labelled Secrets of 0.9 MB do not stay in memory', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const count = 200;
    const size = 900_000;
    // An API whose list makes the Secrets afresh (nothing but the cache can keep them).
    const listed: ResourceType[] = [];
    const api: KubeApi = {
      list: async (type): Promise<ListResult> => {
        listed.push(type);
        if (type.kind !== 'Secret') return { items: [], resourceVersion: '1' };
        const items = Array.from({ length: count }, (_, i): KubeObject => {
          const s = handMadeSecret(`t${i % 20}`, `big${i}`, 'x');
          // a flat string of its own ('x'.repeat() would share its parts and take no room)
          return { ...s, data: { token: b64(`tok${i}`), blob: Buffer.alloc(size, 65 + (i % 26)).toString('latin1') } };
        });
        return { items, resourceVersion: '1' };
      },
      watch: async () => ({ stop: () => undefined }),
      get: async () => undefined,
      create: async (o) => o,
      replace: async (o) => o,
      delete: async () => true,
      mergePatch: async () => ({}) as KubeObject,
      mergePatchStatus: async () => ({}) as KubeObject,
    };
    gc();
    const before = process.memoryUsage().heapUsed;
    const c = await synced(api);
    await until(() => c.secrets.list().length === count);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    console.log(`secret cache: ${count} Secrets of ${size / 1e6} MB -> heap grew by ${(grown / 1e6).toFixed(1)} MB`);
    expect(listed.map((t) => t.kind)).toContain(SecretType.kind);
    expect(grown).toBeLessThan(20e6); // 180 MB when the cache keeps the Secrets whole
    for (const s of c.secrets.list()) {
      expect(s).not.toHaveProperty('data');
      expect(JSON.stringify(s).length).toBeLessThan(1024);
    }
    await c.shutdown();
  });
});

describe("progress events against the search's spec", () => {
  // Attack 9: an epoch beyond the search's budget was stored (and the epoch counter kept it).
  it('are refused with 400 naming the field when they do not fit the spec, and nothing is kept', async () => {
    const api = new FakeKubeApi();
    const acdc = await api.create(searchObject('lab', 'acdc', { retrain: { epochs: 5 } }));
    await api.create(operatorSecret(acdc, 'token-acdc'));
    const c = await synced(api);
    await until(() => c.checkProgressToken('lab', 'acdc', 'token-acdc') === 'ok');
    const app = appOn(c);
    const post = (event: Record<string, unknown>) =>
      app.inject({
        method: 'POST',
        url: '/v1/progress',
        headers: { 'content-type': 'application/json', authorization: 'Bearer token-acdc', 'x-iacsearch': 'lab/acdc' },
        payload: { type: 'progress', ...event },
      });
    const over = await post({ phase: 'search', epoch: 150, maxEpochs: 150 });
    expect(over.statusCode).toBe(400);
    expect(over.json().issues.map((i: { field: string }) => i.field)).toEqual(expect.arrayContaining(['maxEpochs', 'epoch']));
    expect(over.json().error).toMatch(/spec\.search\.maxEpochs \(20\)/);
    const retrain = await post({ phase: 'retrain', epoch: 6, maxEpochs: 6 });
    expect(retrain.statusCode).toBe(400);
    expect(retrain.json().error).toMatch(/spec\.retrain\.epochs \(5\)/);
    expect(c.progress.get('lab/acdc')).toBeUndefined();

    expect((await post({ phase: 'search', epoch: 20, maxEpochs: 20, stableEdges: 3, totalEdges: 14 })).statusCode).toBe(202);
    expect(c.progress.get('lab/acdc')).toMatchObject({ epoch: 20, stableEdges: 3 });
    expect((await post({ phase: 'retrain', epoch: 5, maxEpochs: 5 })).statusCode).toBe(202);
    await c.shutdown();
  });
});
