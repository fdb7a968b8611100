import { afterEach, describe, expect, it } from 'vitest';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import { reconcileSet } from '../fleet/index.ts';
import { IACSearchSetType, IACSearchType } from '../k8s/resources.ts';
import type { KubeObject } from '../k8s/types.ts';
import { Informer } from './informer.ts';
import { setIndex } from './cache.ts';
import { SetController } from './set-controller.ts';

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const set: KubeObject = {
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearchSet',
  metadata: { name: 'fleet', namespace: 'lab' },
  spec: { template: { dataset: { format: 'phantom' } }, matrix: { seeds: [1, 2, 3] }, maxParallel: 2 },
};

describe('SetController', () => {
  let stop: (() => Promise<unknown>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });

  function start(api: FakeKubeApi) {
    const searches = new Informer(api, IACSearchType, { indexBy: setIndex });
    const controller = new SetController({ api, reconcile: reconcileSet, searches });
    searches.start();
    controller.startInformers();
    controller.startWorkers();
    stop = async () => {
      await controller.shutdown(1000);
      searches.stop();
    };
    return controller;
  }

  it('creates the children from the cache, writes the status, and releases a held child when one finishes', async () => {
    const api = new FakeKubeApi();
    await api.create(set);
    start(api);
    const children = () => api.objects('IACSearch', 'lab');
    await until(() => children().length === 3);
    const stored = api.objects('IACSearchSet', 'lab')[0];
    for (const c of children()) expect(c.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'IACSearchSet', name: 'fleet', uid: stored.metadata.uid });
    const suspended = () =>
      children()
        .filter((c) => (c.spec as { suspend?: boolean }).suspend)
        .map((c) => c.metadata.name);
    expect(suspended()).toEqual(['fleet-s3']);
    await until(() => (api.objects('IACSearchSet', 'lab')[0].status as { running?: number } | undefined)?.running === 2);

    // A child finishes: its status change reaches the set, which releases the held one.
    await api.mergePatchStatus(IACSearchType, 'lab', 'fleet-s1', { status: { phase: 'Succeeded', results: { meanDice: 0.8 } } });
    await until(() => suspended().length === 0);
    await until(() => (api.objects('IACSearchSet', 'lab')[0].status as { succeeded?: number } | undefined)?.succeeded === 1);
    expect((api.objects('IACSearchSet', 'lab')[0].status as { bestChild?: unknown }).bestChild).toEqual({ name: 'fleet-s1', testDice: 0.8 });

    // The matrix loses seed 3: its child is deleted (removedChildren Delete, the default).
    await api.mergePatch(IACSearchSetType, 'lab', 'fleet', { spec: { matrix: { seeds: [1, 2] } } });
    await until(() => children().length === 2);
    expect(children().map((c) => c.metadata.name)).toEqual(['fleet-s1', 'fleet-s2']);
  });

  it('leaves alone a labelled search that the set does not control', async () => {
    const api = new FakeKubeApi();
    await api.create({
      apiVersion: 'nas.iac.dev/v1alpha1',
      kind: 'IACSearch',
      metadata: { name: 'fleet-s9', namespace: 'lab', labels: { 'iac.dev/search-set': 'fleet' } },
      spec: {},
    });
    await api.create(set);
    start(api);
    await until(() => api.objects('IACSearch', 'lab').length === 4);
    await until(() => (api.objects('IACSearchSet', 'lab')[0].status as { children?: number } | undefined)?.children === 3);
    expect(api.objects('IACSearch', 'lab').map((c) => c.metadata.name)).toContain('fleet-s9');
  });
});
