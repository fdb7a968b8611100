import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildSetCRD, renderSetCRD, SET_CRD_FILE } from './set-crd.ts';

const root = join(import.meta.dirname, '..', '..', '..');
// biome-ignore lint/suspicious/noExplicitAny: the test walks a generated JSON schema document by path; its shape is what the assertions check
type Schema = Record<string, any>;
const crd = buildSetCRD() as Schema;
const openAPI = crd.spec.versions[0].schema.openAPIV3Schema as Schema;

function* walk(node: Schema, path = ''): Generator<[string, Schema]> {
  yield [path, node];
  for (const [k, v] of Object.entries(node.properties ?? {})) yield* walk(v as Schema, `${path}.${k}`);
  if (node.items) yield* walk(node.items, `${path}[]`);
  if (node.additionalProperties && typeof node.additionalProperties === 'object') yield* walk(node.additionalProperties, `${path}.*`);
}

describe('IACSearchSet CRD', () => {
  it('is current: crds/ holds what `npm run gen:crds` generates', () => {
    expect(readFileSync(join(root, SET_CRD_FILE), 'utf8'), 'run `npm run gen:crds` and commit crds/').toBe(renderSetCRD());
  });

  it('names the kind iacsearchsets, short name iacss, category nas', () => {
    expect(crd.metadata.name).toBe('iacsearchsets.nas.iac.dev');
    expect(crd.spec.names).toMatchObject({ kind: 'IACSearchSet', plural: 'iacsearchsets', shortNames: ['iacss'], categories: ['nas'] });
  });

  it('is structural, bounds every status string and array, and keeps the template without defaults', () => {
    for (const [path, node] of walk(openAPI)) {
      expect(node.type ?? node['x-kubernetes-preserve-unknown-fields'], path).toBeTruthy();
      for (const k of ['$schema', '$ref', 'anyOf', 'oneOf', 'allOf', 'const']) expect(node, path).not.toHaveProperty(k);
      if (path.startsWith('.status') && node.type === 'string' && !node.enum) expect(node.maxLength, path).toBeTypeOf('number');
      if (path.startsWith('.status') && node.type === 'array') expect(node.maxItems, path).toBeTypeOf('number');
      if (path.startsWith('.spec')) expect(node, path).not.toHaveProperty('default');
    }
    expect(openAPI.properties.spec.properties.matrix.properties.seeds.maxItems).toBe(64);
  });
});
