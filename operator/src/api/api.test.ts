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

  it('names the offending field of a bad spec', () => {
    const bad = parseIACSearch(object({ search: { stability: { threshold: -1 } }, resources: { memory: 'lots' } }));
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.message).toMatch(/spec\.search\.stability\.threshold/);
    expect(bad.message).toMatch(/spec\.resources\.memory: must be a resource quantity/);
    expect(bad.fields).toContain('spec.resources.memory');
  });

  it('reports the trainer\'s cross-field checks under spec', () => {
    const bad = parseIACSearch(object({ dataset: { format: 'nnunet' } }));
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.message).toMatch(/^spec\.dataset\.path: required/);
    const split = parseIACSearch(object({ dataset: { split: { train: 0.5, val: 0.2, test: 0.2 } } }));
    expect(split.ok).toBe(false);
  });

  it('refuses up front what could never run: a name over 63 characters, no spec, bad pod fields, prune GPUs, the trainer\'s cross-field checks', () => {
    const bad = (obj: unknown) => {
      const r = parseIACSearch(obj);
      if (r.ok) throw new Error(`accepted: ${JSON.stringify(obj)}`);
      return r.message;
    };
    expect(bad({ ...object({}), metadata: { name: 'x'.repeat(64) } })).toMatch(/^metadata\.name: at most 63 characters/);
    expect(parseIACSearch({ ...object({}), metadata: { name: 'x'.repeat(63) } }).ok).toBe(true);
    expect(bad({ apiVersion: API_VERSION, kind: KIND, metadata: { name: 'demo' } })).toMatch(/^spec: required/);
    expect(bad(object({ resources: { nodeSelector: { 'a b': 'x' } } }))).toMatch(/^spec\.resources\.nodeSelector: 'a b' is not a label key/);
    expect(bad(object({ resources: { nodeSelector: { ['p'.repeat(254) + '/k']: 'x' } } }))).toMatch(/prefix before '\/' is longer than 253/);
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
