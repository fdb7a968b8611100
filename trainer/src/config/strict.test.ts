// Unknown keys are refused at every level, and an IACSearch manifest is read as its spec.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CLUSTER_SPEC_FIELDS, ConfigError, TrainerConfig, formatIssues, loadTrainerConfig, nearestKey, parseTrainerConfig, unknownKeys } from './index.ts';

const examples = join(import.meta.dirname, '..', '..', '..', 'deploy', 'examples');

function message(input: unknown): string {
  try {
    parseTrainerConfig(input);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('the configuration was accepted');
}

describe('unknown keys', () => {
  it('names each unknown key with its path and the nearest known key', () => {
    const m = message({ serach: {}, search: { maxEpoch: 3, stability: { treshold: 0.1 } }, retrain: { batch_size: 4, epochs: 2 } });
    expect(m).toContain('serach: unknown key; did you mean search?');
    expect(m).toContain('search.maxEpoch: unknown key; did you mean maxEpochs?');
    expect(m).toContain('search.stability.treshold: unknown key; did you mean threshold?');
    expect(m).toContain('retrain.batch_size: unknown key; did you mean batchSize?');
    expect(m.split('\n')).toHaveLength(5); // the heading and one line per key
  });

  it('lists the known keys when none is close', () => {
    expect(message({ backbone: { zzz: 1 } })).toContain(
      'backbone.zzz: unknown key; the keys here are depth, baseFilters, pretrained, pretrainEpochs, learningRate',
    );
  });

  it('looks into arrays of objects', () => {
    const m = message({
      evaluate: {
        external: [
          { name: 'a', format: 'msd', path: '/x' },
          { name: 'b', format: 'msd', path: '/y', pvc: { claimName: 'd' } },
        ],
      },
    });
    expect(m).toContain('evaluate.external.1.pvc: unknown key');
    expect(m).not.toContain('external.0');
  });

  it('reports unknown keys and bad values together', () => {
    const m = message({ search: { maxEpochs: 0, epoch: 3 } });
    expect(m).toContain('search.epoch: unknown key; did you mean maxEpochs?');
    expect(m).toContain('search.maxEpochs:');
  });

  it('accepts its own output, as the operator passes it (defaults filled in)', () => {
    const full = parseTrainerConfig({ dataset: { format: 'phantom', cases: 6 }, search: { nodes: 1 } });
    expect(parseTrainerConfig(JSON.parse(JSON.stringify(full)))).toEqual(full);
    expect(unknownKeys(TrainerConfig, full)).toEqual([]);
  });

  it('suggests by spelling, by case and separators, and by a part of the name', () => {
    expect(nearestKey('maxEpoch', ['maxEpochs', 'operations'])).toBe('maxEpochs');
    expect(nearestKey('epochs', ['maxEpochs', 'operations'])).toBe('maxEpochs');
    expect(nearestKey('learning-rate', ['learningRate', 'momentum'])).toBe('learningRate');
    expect(nearestKey('nodse', ['nodes', 'operations'])).toBe('nodes');
    expect(nearestKey('colour', ['depth', 'baseFilters'])).toBeUndefined();
  });

  it("formats a strict schema's unrecognised keys one line per key, with the nearest key when given the schema", () => {
    const S = z.object({ inner: z.strictObject({ maxEpochs: z.int() }) });
    const r = S.safeParse({ inner: { maxEpochs: 1, maxEpoch: 2, zzz: 3 } });
    expect(r.success).toBe(false);
    expect(formatIssues(r.error!, 'spec').split('\n')).toEqual(['spec.inner.maxEpoch: unknown key', 'spec.inner.zzz: unknown key']);
    expect(formatIssues(r.error!, '', S).split('\n')).toEqual([
      'inner.maxEpoch: unknown key; did you mean maxEpochs?',
      'inner.zzz: unknown key; the keys here are maxEpochs',
    ]);
  });
});

describe('an IACSearch manifest as the trainer configuration', () => {
  // IACSearchSets are no trainer configuration: the operator makes IACSearches of them
  // (operator/src/local/examples.test.ts checks each child).
  const files = readdirSync(examples).filter((f) => f.endsWith('.yaml') && parseYaml(readFileSync(join(examples, f), 'utf8')).kind === 'IACSearch');

  it.each(files)('%s is read as its spec, with metadata.name as the name', (file) => {
    const manifest = parseYaml(readFileSync(join(examples, file), 'utf8'));
    const notes: string[] = [];
    const config = parseTrainerConfig(manifest, { log: (l) => notes.push(l) });
    const { resources: _r, cost: _c, budget: _b, backoffLimit: _l, ttlSecondsAfterFinished: _t, ...trainerSpec } = manifest.spec;
    expect(config).toEqual(parseTrainerConfig({ name: manifest.metadata.name, ...trainerSpec }));
    expect(config.name).toBe(manifest.metadata.name);
    expect(notes.join('\n')).toContain('spec.resources');
  });

  it('names fields as spec.<field>, with the nearest known key', () => {
    const m = message({
      apiVersion: 'nas.iac.dev/v1alpha1',
      kind: 'IACSearch',
      metadata: { name: 'x' },
      spec: { search: { maxEpoch: 3, nodes: 0 }, retrian: {} },
    });
    expect(m).toContain('spec.search.maxEpoch: unknown key; did you mean maxEpochs?');
    expect(m).toContain('spec.retrian: unknown key; did you mean retrain?');
    expect(m).toContain('spec.search.nodes:');
  });

  it('leaves out the claims, saying so', () => {
    const notes: string[] = [];
    const config = parseTrainerConfig(
      {
        apiVersion: 'nas.iac.dev/v1alpha1',
        kind: 'IACSearch',
        metadata: { name: 'claims' },
        spec: {
          dataset: { format: 'msd', path: 'Task04', pvc: { claimName: 'datasets' } },
          evaluate: { baseline: true, external: [{ name: 'other', format: 'msd', path: 'Other', pvc: { claimName: 'more' } }] },
          resources: { gpus: 1 },
          image: 'trainer:1',
        },
      },
      { log: (l) => notes.push(l) },
    );
    expect(config.dataset.path).toBe('Task04');
    expect(config.evaluate.external).toEqual([{ name: 'other', format: 'msd', path: 'Other' }]);
    expect(notes).toHaveLength(3);
    expect(notes[0]).toContain('spec.resources, spec.image only say how a cluster runs it');
    expect(notes[1]).toContain('spec.dataset.pvc is a cluster claim and is not used here: spec.dataset.path (Task04) is read as a path on this machine');
    expect(notes[2]).toContain('spec.evaluate.external.0.pvc');
    expect(CLUSTER_SPEC_FIELDS).toContain('ttlSecondsAfterFinished');
  });

  it('refuses other objects, other API versions, a missing spec and unknown top-level keys, saying what to give', () => {
    expect(message({ apiVersion: 'apps/v1', kind: 'Deployment', spec: {} })).toContain('a Kubernetes object of kind "Deployment"');
    expect(message({ apiVersion: 'nas.iac.dev/v2', kind: 'IACSearch', spec: {} })).toContain(
      'apiVersion: nas.iac.dev/v2 is not served; use nas.iac.dev/v1alpha1',
    );
    expect(message({ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name: 'x' } })).toContain('spec: required');
    expect(message({ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', spec: {}, specs: {} })).toContain('specs: unknown key; did you mean spec?');
  });

  it('is read from a YAML file; an empty file or no configuration at all is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'config-'));
    const file = join(dir, 'search.yaml');
    writeFileSync(file, 'apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata: {name: from-file}\nspec:\n  search: {maxEpochs: 7}\n');
    expect(loadTrainerConfig({ file })).toMatchObject({ name: 'from-file', search: { maxEpochs: 7 } });
    writeFileSync(file, '');
    expect(() => loadTrainerConfig({ file })).toThrow(/is empty; write the configuration into it, or give \{\} for the built-in defaults/);
    expect(() => loadTrainerConfig({})).toThrow(/give --config <file> or --config-json <json>/);
  });
});
