import { describe, expect, it } from 'vitest';
import { API_VERSION, IACSearchSpec, IACSearchStatus, KIND, parseIACSearch, trainerConfigInput } from './index.ts';

const object = (spec: unknown) => ({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'demo', namespace: 'ml' }, spec });

describe('IACSearch schemas', () => {
  it('fills in defaults for an empty spec', () => {
    const spec = IACSearchSpec.parse({});
    expect(spec.resources).toMatchObject({ gpus: 1, cpu: '2', memory: '8Gi' });
    expect(spec.budget.action).toBe('Suspend');
    expect(spec.backoffLimit).toBe(3);
    expect(spec.suspend).toBe(false);
    expect(spec.search.maxEpochs).toBe(200);
    expect(spec.artifacts.size).toBe('10Gi');
    expect(spec.cost.gpuHourlyUSD).toBe(0);
  });

  it('accepts a dataset on a claim and keeps the claim out of the trainer configuration', () => {
    const r = parseIACSearch(object({ dataset: { format: 'msd', path: 'Task04_Hippocampus', pvc: { claimName: 'datasets' } } }));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.search.spec.dataset.pvc).toEqual({ claimName: 'datasets', readOnly: true });
    const cfg = trainerConfigInput(r.search, '/data/Task04_Hippocampus');
    expect(cfg.dataset).not.toHaveProperty('pvc');
    expect(cfg).toMatchObject({ name: 'demo', dataset: { path: '/data/Task04_Hippocampus' } });
    expect(r.trainerConfig.dataset.format).toBe('msd');
  });

  it('takes external evaluation datasets on claims and keeps the claims out of the trainer configuration', () => {
    const external = [
      { name: 'site-b', format: 'msd', path: 'hippocampus-b', pvc: { claimName: 'site-b-scans' } },
      { name: 'site-c', format: 'nnunet', path: '/opt/site-c', cases: 10 },
    ];
    const r = parseIACSearch(object({ evaluate: { baseline: true, external } }));
    if (!r.ok) throw new Error(r.message);
    expect(r.search.spec.evaluate.external[0].pvc).toEqual({ claimName: 'site-b-scans', readOnly: true });
    expect(r.trainerConfig.evaluate.external.map((e) => e.name)).toEqual(['site-b', 'site-c']);
    const cfg = trainerConfigInput(r.search, undefined, ['/external/site-b-scans/hippocampus-b', '/opt/site-c']) as {
      evaluate: { external: object[]; baseline: boolean };
    };
    expect(cfg.evaluate).toEqual({
      metrics: ['dice', 'hd95'],
      baseline: true,
      external: [
        { name: 'site-b', format: 'msd', path: '/external/site-b-scans/hippocampus-b' },
        { name: 'site-c', format: 'nnunet', path: '/opt/site-c', cases: 10 },
      ],
    });
    // without pod paths the paths stay as written, still without the claims
    expect((trainerConfigInput(r.search) as typeof cfg).evaluate.external[0]).toEqual({ name: 'site-b', format: 'msd', path: 'hippocampus-b' });
    expect(IACSearchSpec.parse({}).evaluate.external).toEqual([]);
  });

  it('names spec.evaluate.external[i].<field> for a bad external dataset', () => {
    const bad = (external: unknown[], dataset?: unknown) => {
      const r = parseIACSearch(object({ ...(dataset !== undefined && { dataset }), evaluate: { external } }));
      if (r.ok) throw new Error(`accepted: ${JSON.stringify(external)}`);
      return r;
    };
    const item = (name: string, extra: Record<string, unknown> = {}) => ({ name, format: 'msd', path: `data/${name}`, ...extra });

    const twice = bad([item('site-b'), item('site-c'), item('site-b')]);
    expect(twice.message).toMatch(
      /^spec\.evaluate\.external\[2\]\.name: 'site-b' is also the name of evaluate\.external\[0\]; every external dataset needs its own name/m,
    );
    expect(twice.fields).toContain('spec.evaluate.external[2].name');

    expect(bad([item('Site_B')]).message).toMatch(/^spec\.evaluate\.external\[0\]\.name: must be a DNS label/m);
    expect(bad([item('a', { path: '' })]).message).toMatch(/^spec\.evaluate\.external\[0\]\.path:/m);
    expect(bad([item('a'), item('b', { format: 'phantom' })]).message).toMatch(/^spec\.evaluate\.external\[1\]\.format:/m);
    expect(bad([item('a', { pvc: { claimName: 'Not A Claim' } })]).message).toMatch(
      /^spec\.evaluate\.external\[0\]\.pvc\.claimName: must be a lowercase DNS name/m,
    );
    expect(bad([{ name: 'a', format: 'msd' }]).message).toMatch(/^spec\.evaluate\.external\[0\]\.path:/m);
    expect(bad(Array.from({ length: 33 }, (_, i) => item(`d${i}`))).message).toMatch(/^spec\.evaluate\.external: .*32/m);

    // one claim is mounted once per pod: read-only and read-write at once is refused
    const mixed = bad([item('a', { pvc: { claimName: 'scans' } }), item('b', { pvc: { claimName: 'scans', readOnly: false } })]);
    expect(mixed.message).toMatch(
      /^spec\.evaluate\.external\[1\]\.pvc\.readOnly: claim 'scans' is mounted with readOnly: true by evaluate\.external\[0\]\.pvc; .*give the same readOnly/m,
    );
    const withDataset = bad([item('a', { pvc: { claimName: 'datasets' } })], {
      format: 'msd',
      path: 'Task04',
      pvc: { claimName: 'datasets', readOnly: false },
    });
    expect(withDataset.message).toMatch(/^spec\.evaluate\.external\[0\]\.pvc\.readOnly: claim 'datasets' is mounted with readOnly: false by dataset\.pvc/m);
    // the same claim the same way is fine
    expect(
      parseIACSearch(object({ evaluate: { external: [item('a', { pvc: { claimName: 'scans' } }), item('b', { pvc: { claimName: 'scans' } })] } })).ok,
    ).toBe(true);
  });

  it('names the offending field of a bad spec', () => {
    const bad = parseIACSearch(object({ search: { stability: { threshold: -1 } }, resources: { memory: 'lots' } }));
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.message).toMatch(/spec\.search\.stability\.threshold/);
    expect(bad.message).toMatch(/spec\.resources\.memory: must be a resource quantity/);
    expect(bad.fields).toContain('spec.resources.memory');
  });

  it('refuses a misspelt field of a file instead of running its default, with the nearest known name', () => {
    const misspelt = object({
      search: { maxEpoch: 5 },
      evaluate: { external: [{ name: 'b', format: 'msd', path: 'x', pvc: { claimName: 'c', claim: 'c' } }] },
    });
    // From the API server (which prunes unknown fields; a newer CRD may have more) the object is read as it comes.
    expect(parseIACSearch(misspelt).ok).toBe(true);
    const bad = parseIACSearch(misspelt, { unknownFields: 'refuse' });
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.message).toMatch(/^spec\.search\.maxEpoch: unknown key; did you mean maxEpochs\?/m);
    expect(bad.message).toMatch(/^spec\.evaluate\.external\[0\]\.pvc\.claim: unknown key; did you mean claimName\?/m);
    expect(bad.fields).toEqual(['spec.search.maxEpoch', 'spec.evaluate.external[0].pvc.claim']);
  });

  it("reports the trainer's cross-field checks under spec", () => {
    const bad = parseIACSearch(object({ dataset: { format: 'nnunet' } }));
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.message).toMatch(/^spec\.dataset\.path: required/);
    const split = parseIACSearch(object({ dataset: { split: { train: 0.5, val: 0.2, test: 0.2 } } }));
    expect(split.ok).toBe(false);
  });

  it("refuses up front what could never run: a name over 63 characters, no spec, bad pod fields, prune GPUs, the trainer's cross-field checks", () => {
    const bad = (obj: unknown) => {
      const r = parseIACSearch(obj);
      if (r.ok) throw new Error(`accepted: ${JSON.stringify(obj)}`);
      return r.message;
    };
    expect(bad({ ...object({}), metadata: { name: 'x'.repeat(64) } })).toMatch(/^metadata\.name: at most 63 characters/);
    expect(parseIACSearch({ ...object({}), metadata: { name: 'x'.repeat(63) } }).ok).toBe(true);
    expect(bad({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'demo' } })).toMatch(/^spec: required/);
    expect(bad(object({ resources: { nodeSelector: { 'a b': 'x' } } }))).toMatch(/^spec\.resources\.nodeSelector: 'a b' is not a label key/);
    expect(bad(object({ resources: { nodeSelector: { [`${'p'.repeat(254)}/k`]: 'x' } } }))).toMatch(/prefix before '\/' is longer than 253/);
    expect(bad(object({ resources: { priorityClassName: 'System_Critical' } }))).toMatch(/spec\.resources\.priorityClassName/);
    expect(parseIACSearch(object({ resources: { priorityClassName: '', nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB' } } })).ok).toBe(true);
    expect(bad(object({ resources: { phases: { prune: { gpus: 1 } } } }))).toMatch(/^spec\.resources\.phases\.prune\.gpus: prune never requests a GPU/);
    expect(bad(object({ search: { maxEpochs: 5 } }))).toMatch(/^spec\.search\.warmupEpochs: 15 is not below search\.maxEpochs 5/);
    expect(bad(object({ backbone: { baseFilters: 6 } }))).toMatch(/^spec\.search\.partialChannels/);
  });

  it('rejects the wrong kind and a missing name', () => {
    expect(parseIACSearch({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } }).ok).toBe(false);
    const r = parseIACSearch({ apiVersion: API_VERSION, kind: KIND, metadata: {} });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/metadata\.name/);
  });

  it('parses a status it wrote', () => {
    const status = IACSearchStatus.parse({
      phase: 'Searching',
      conditions: [{ type: 'Ready', status: 'False', reason: 'Searching', message: 'x', lastTransitionTime: '2026-01-01T00:00:00Z' }],
      phases: { search: { attempts: 1, pod: 'demo-search-1' } },
      genotype: { cells: [[[[0, 'conv_3x3']]]] },
    });
    expect(status.phases?.search?.failures).toBe(0);
  });
});
