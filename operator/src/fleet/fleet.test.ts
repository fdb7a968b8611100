import { describe, expect, it } from 'vitest';
import { LABEL_SEARCH_SET } from '../../../contract/src/index.ts';
import type { KubeObject } from '../reconcile/types.ts';
import {
  childName,
  combinations,
  COMBINATION_ANNOTATION,
  deepMerge,
  HOLD_ANNOTATION,
  reconcileSet,
  type SetAction,
  type SetReconcileResult,
  shortHash,
} from './index.ts';

const now = new Date('2026-01-01T00:00:00Z');
const template = { dataset: { format: 'phantom', cases: 6, sliceSize: 16 }, search: { maxEpochs: 3, warmupEpochs: 1 }, cost: { gpuHourlyUSD: 3.6 } };

function makeSet(spec: Record<string, unknown>, status?: Record<string, unknown>): KubeObject {
  return {
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearchSet',
    metadata: { name: 'fleet', namespace: 'ns', uid: 'set-uid', generation: 1 },
    spec: { template, ...spec },
    ...(status && { status }),
  };
}

/** The children a pass created, as the API server would hold them, with a status. */
function created(result: SetReconcileResult): KubeObject[] {
  return result.actions.flatMap((a) => (a.type === 'create' ? [structuredClone(a.object)] : []));
}

function withStatus(child: KubeObject, status: Record<string, unknown>, suspend?: boolean): KubeObject {
  const spec = { ...(child.spec as object), ...(suspend !== undefined && { suspend }) };
  return { ...child, spec, status };
}

const of = <T extends SetAction['type']>(r: SetReconcileResult, type: T) => r.actions.filter((a): a is Extract<SetAction, { type: T }> => a.type === type);

function applyPatches(children: KubeObject[], r: SetReconcileResult): KubeObject[] {
  return children.map((c) => {
    const p = of(r, 'patch').find((a) => a.name === c.metadata.name);
    if (!p) return c;
    const patch = p.patch as { metadata?: { annotations?: Record<string, string | null> }; spec?: Record<string, unknown> };
    const annotations = { ...c.metadata.annotations };
    for (const [k, v] of Object.entries(patch.metadata?.annotations ?? {})) {
      if (v === null) delete annotations[k];
      else annotations[k] = v;
    }
    return { ...c, metadata: { ...c.metadata, annotations }, spec: { ...(c.spec as object), ...patch.spec } };
  });
}

describe('matrix', () => {
  it('takes the product of the axes given, datasets outermost, and merges each combination onto the template', () => {
    const matrix = {
      datasets: [
        { name: 'a', cases: 8 },
        { name: 'b', sliceSize: 32 },
      ],
      seeds: [1, 2],
      search: [{ name: 'full', stability: { enabled: false } }],
    };
    const cs = combinations(matrix);
    expect(cs.map((c) => childName('fleet', c))).toEqual(['fleet-a-s1-full', 'fleet-a-s2-full', 'fleet-b-s1-full', 'fleet-b-s2-full']);
    expect(combinations({})).toHaveLength(1);
    expect(childName('fleet', combinations({})[0])).toBe('fleet-base');
    expect(deepMerge({ a: { b: 1, c: [1] }, d: 1 }, { a: { c: [2] } })).toEqual({ a: { b: 1, c: [2] }, d: 1 });
  });

  it('names a child <set>-<hash> when the readable name is too long, the same hash every time', () => {
    const set = 'x'.repeat(50);
    const [c] = combinations({ datasets: [{ name: 'a-long-dataset-name' }], seeds: [12345] });
    const name = childName(set, c);
    expect(name).toBe(`${set}-${shortHash({ dataset: 'a-long-dataset-name', seed: 12345 })}`);
    expect(name.length).toBeLessThanOrEqual(63);
    expect(childName(set, combinations({ datasets: [{ name: 'a-long-dataset-name' }], seeds: [12345] })[0])).toBe(name);
  });
});

describe('reconcileSet', () => {
  it('creates one labelled, owned child per combination, the ones over maxParallel suspended and queued', () => {
    const r = reconcileSet({ set: makeSet({ matrix: { seeds: [1, 2, 3] }, maxParallel: 2 }), children: [], now });
    const children = created(r);
    expect(children.map((c) => c.metadata.name)).toEqual(['fleet-s1', 'fleet-s2', 'fleet-s3']);
    for (const c of children) {
      expect(c.metadata.labels?.[LABEL_SEARCH_SET]).toBe('fleet');
      expect(c.metadata.ownerReferences).toEqual([
        { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearchSet', name: 'fleet', uid: 'set-uid', controller: true, blockOwnerDeletion: true },
      ]);
      expect(JSON.parse(c.metadata.annotations![COMBINATION_ANNOTATION]).seed).toBe((c.spec as { seed: number }).seed);
      expect((c.spec as { dataset: unknown }).dataset).toEqual(template.dataset);
    }
    expect(children.map((c) => (c.spec as { suspend: boolean }).suspend)).toEqual([false, false, true]);
    expect(children[2].metadata.annotations?.[HOLD_ANNOTATION]).toBe('Queued');
    expect(r.status).toMatchObject({ phase: 'Running', children: 3, running: 2, queued: 1, ready: '0/3' });
  });

  it('releases a queued child when a running one finishes, and the pass is idempotent', () => {
    const set = makeSet({ matrix: { seeds: [1, 2, 3] }, maxParallel: 2 });
    const [a, b, c] = created(reconcileSet({ set, children: [], now }));
    const children = [withStatus(a, { phase: 'Succeeded' }), withStatus(b, { phase: 'Searching' }), withStatus(c, { phase: 'Suspended' })];
    const r = reconcileSet({ set, children, now });
    expect(of(r, 'create')).toEqual([]);
    expect(of(r, 'patch')).toEqual([
      { type: 'patch', name: 'fleet-s3', patch: { metadata: { annotations: { [HOLD_ANNOTATION]: null } }, spec: { suspend: false } } },
    ]);
    const again = reconcileSet({ set, children: applyPatches(children, r), now });
    expect(of(again, 'patch')).toEqual([]);
    // Still running: nothing is released over the limit.
    const busy = reconcileSet({ set, children: [withStatus(a, { phase: 'Searching' }), ...children.slice(1)], now });
    expect(of(busy, 'patch')).toEqual([]);
  });

  it('fills the table from the children and names the best succeeded child', () => {
    const set = makeSet({ matrix: { seeds: [1, 2, 3] } });
    const [a, b, c] = created(reconcileSet({ set, children: [], now }));
    const done = (dice: number, usd: number) => ({
      phase: 'Succeeded',
      searchResult: { epochs: 3 },
      results: { meanDice: dice },
      cost: { gpuSeconds: usd * 1000, gpuHours: (usd * 1000) / 3600, estimatedUSD: usd, speedup: 2, savedGPUSeconds: 36 },
    });
    const children = [withStatus(a, done(0.7, 0.1)), withStatus(b, done(0.9, 0.2)), withStatus(c, { ...done(0.95, 0.3), phase: 'Failed' })];
    const r = reconcileSet({ set, children, now });
    const status = r.status as { table: Array<Record<string, unknown>>; bestChild: unknown; phase: string; estimatedUSD: number; savedGPUHours: number };
    expect(status.table[1]).toEqual({
      name: 'fleet-s2',
      seed: 2,
      phase: 'Succeeded',
      searchEpochs: 3,
      speedup: 2,
      testDice: 0.9,
      gpuHours: 200 / 3600,
      costUSD: 0.2,
    });
    expect(status.bestChild).toEqual({ name: 'fleet-s2', testDice: 0.9 });
    expect(status.phase).toBe('Failed');
    expect(status.estimatedUSD).toBeCloseTo(0.6);
    expect(status.savedGPUHours).toBeCloseTo(0.03);
    expect(of(r, 'event').map((e) => e.reason)).toEqual(['ChildFailed']);
    // Every child succeeded: Ready.
    const ok = reconcileSet({ set, children: children.slice(0, 2).concat(withStatus(c, done(0.5, 0.3))), now });
    expect(ok.status.phase).toBe('Succeeded');
    expect((ok.status.conditions as Array<{ type: string; status: string }>).find((x) => x.type === 'Ready')?.status).toBe('True');
  });

  it('budget Suspend: suspends the running children across the set, and resumes them in order when it is raised', () => {
    const spec = { matrix: { seeds: [1, 2, 3] }, maxParallel: 2, budget: { maxCostUSD: 1 } };
    const [a, b, c] = created(reconcileSet({ set: makeSet(spec), children: [], now }));
    const children = [
      withStatus(a, { phase: 'Searching', cost: { estimatedUSD: 0.6 } }),
      withStatus(b, { phase: 'Retraining', cost: { estimatedUSD: 0.5 } }),
      c,
    ];
    const r = reconcileSet({ set: makeSet(spec), children, now });
    expect(of(r, 'patch').map((p) => [p.name, p.patch])).toEqual([
      ['fleet-s1', { metadata: { annotations: { [HOLD_ANNOTATION]: 'Budget' } }, spec: { suspend: true } }],
      ['fleet-s2', { metadata: { annotations: { [HOLD_ANNOTATION]: 'Budget' } }, spec: { suspend: true } }],
    ]);
    expect(r.status.phase).toBe('Suspended');
    expect(of(r, 'event').map((e) => e.reason)).toEqual(['BudgetExceeded']);
    const held = applyPatches(children, r);
    const raised = reconcileSet({ set: makeSet({ ...spec, budget: { maxCostUSD: 5 } }, r.status), children: held, now });
    expect(of(raised, 'patch').map((p) => [p.name, (p.patch.spec as { suspend: boolean }).suspend])).toEqual([
      ['fleet-s1', false],
      ['fleet-s2', false],
    ]);
    expect(raised.status.phase).toBe('Running');
  });

  it('budget Fail: the set fails for good, its running children are suspended and keep their records', () => {
    const spec = { matrix: { seeds: [1, 2] }, budget: { maxGPUHours: 0.01, action: 'Fail' } };
    const [a, b] = created(reconcileSet({ set: makeSet(spec), children: [], now }));
    const children = [withStatus(a, { phase: 'Searching', cost: { gpuSeconds: 40 } }), withStatus(b, { phase: 'Succeeded', cost: { gpuSeconds: 10 } })];
    const r = reconcileSet({ set: makeSet(spec), children, now });
    expect(of(r, 'patch').map((p) => p.name)).toEqual(['fleet-s1']);
    expect(of(r, 'delete')).toEqual([]);
    expect(r.status.phase).toBe('Failed');
    const stalled = (r.status.conditions as Array<{ type: string; status: string; reason: string }>).find((x) => x.type === 'Stalled');
    expect(stalled).toMatchObject({ status: 'True', reason: 'BudgetExceeded' });
    // Raising the budget does not undo the failure, and a new seed gets no child.
    const later = reconcileSet({
      set: makeSet({ ...spec, matrix: { seeds: [1, 2, 3] }, budget: { maxGPUHours: 10, action: 'Fail' } }, r.status),
      children: applyPatches(children, r),
      now,
    });
    expect(later.status.phase).toBe('Failed');
    expect(of(later, 'create')).toEqual([]);
    expect(of(later, 'patch')).toEqual([]);
  });

  it('a matrix edit: removed combinations are deleted (Delete) or orphaned (Orphan), new ones created, existing ones untouched', () => {
    const first = makeSet({ matrix: { seeds: [1, 2] } });
    const children = created(reconcileSet({ set: first, children: [], now })).map((c) => withStatus(c, { phase: 'Searching' }));
    const edited = { matrix: { seeds: [2, 3] }, template: { ...template, search: { maxEpochs: 4, warmupEpochs: 1 } } };
    const del = reconcileSet({ set: makeSet(edited), children, now });
    expect(of(del, 'delete')).toEqual([{ type: 'delete', name: 'fleet-s1' }]);
    expect(of(del, 'create').map((a) => [a.object.metadata.name, (a.object.spec as { search: unknown }).search])).toEqual([
      ['fleet-s3', { maxEpochs: 4, warmupEpochs: 1 }],
    ]);
    expect(of(del, 'patch')).toEqual([]);
    expect((del.status.table as Array<{ name: string; outdated?: boolean }>).map((r) => [r.name, r.outdated ?? false])).toEqual([
      ['fleet-s2', true],
      ['fleet-s3', false],
    ]);

    const orphan = reconcileSet({ set: makeSet({ ...edited, removedChildren: 'Orphan' }), children, now });
    expect(of(orphan, 'delete')).toEqual([]);
    expect(of(orphan, 'patch')).toEqual([
      {
        type: 'patch',
        name: 'fleet-s1',
        patch: { metadata: { labels: { [LABEL_SEARCH_SET]: null }, annotations: { [HOLD_ANNOTATION]: null }, ownerReferences: [] } },
      },
    ]);
    expect(of(orphan, 'event').map((e) => e.reason)).toEqual(['ChildrenOrphaned']);
  });

  it("puts the set's queueName on every child, and refuses a queue named both there and in the template", () => {
    const r = reconcileSet({ set: makeSet({ matrix: { seeds: [1, 2] }, queueName: 'team-gpus' }), children: [], now });
    expect(created(r).map((c) => (c.spec as { queueName?: string }).queueName)).toEqual(['team-gpus', 'team-gpus']);
    const plain = reconcileSet({ set: makeSet({ matrix: { seeds: [1] } }), children: [], now });
    expect((created(plain)[0].spec as { queueName?: string }).queueName).toBeUndefined();

    const both = reconcileSet({ set: makeSet({ template: { ...template, queueName: 'a' }, queueName: 'b', matrix: { seeds: [1] } }), children: [], now });
    expect(created(both)).toEqual([]);
    const stalled = (both.status.conditions as Array<{ type: string; status: string; message: string }>).find((x) => x.type === 'Stalled');
    expect(stalled?.status).toBe('True');
    expect(stalled?.message).toContain('spec.queueName: b, and spec.template.queueName: a');
  });

  it('an invalid spec stalls the set with the field named, and creates nothing', () => {
    const bad = reconcileSet({
      set: makeSet({ template: { ...template, search: { maxEpochs: 3, warmupEpochs: 5 } }, matrix: { seeds: [1] } }),
      children: [],
      now,
    });
    expect(bad.actions.filter((a) => a.type !== 'event')).toEqual([]);
    const stalled = (bad.status.conditions as Array<{ type: string; status: string; reason: string; message: string }>).find((x) => x.type === 'Stalled');
    expect(stalled).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(stalled?.message).toContain('spec.search.warmupEpochs');

    const typo = reconcileSet({ set: makeSet({ matrix: { seeds: ['one'] } }), children: [], now });
    expect(JSON.stringify(typo.status)).toContain('spec.matrix.seeds[0]');

    const huge = reconcileSet({
      set: makeSet({ matrix: { seeds: Array.from({ length: 10 }, (_, i) => i), search: Array.from({ length: 7 }, (_, i) => ({ name: `v${i}` })) } }),
      children: [],
      now,
    });
    expect(JSON.stringify(huge.status)).toContain('70 combinations, over the limit of 64');
  });
});
