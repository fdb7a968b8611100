import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { buildCRD, CRD_FILE, renderCRD } from './crd.ts';
import { jsonSchemaOf, type OpenAPISchema, toStructural } from './structural.ts';

const root = join(import.meta.dirname, '..', '..', '..');
// biome-ignore lint/suspicious/noExplicitAny: the test walks a generated JSON schema document by path; its shape is what the assertions check
type Schema = Record<string, any>;
const crd = buildCRD() as Schema;
const version = crd.spec.versions[0];
const openAPI = version.schema.openAPIV3Schema as Schema;

/** Every node of a schema with its path. */
function* walk(node: Schema, path = ''): Generator<[string, Schema]> {
  yield [path, node];
  for (const [k, v] of Object.entries(node.properties ?? {})) yield* walk(v as Schema, `${path}.${k}`);
  if (node.items) yield* walk(node.items, `${path}[]`);
  if (node.additionalProperties && typeof node.additionalProperties === 'object') yield* walk(node.additionalProperties, `${path}.*`);
}

describe('IACSearch CRD', () => {
  it('is current: crds/ holds what `npm run gen:crds` generates', () => {
    const committed = readFileSync(join(root, CRD_FILE), 'utf8');
    expect(committed, 'run `npm run gen:crds` and commit crds/').toBe(renderCRD());
  });

  it('is structural: every node typed, no JSON Schema 2020-12 leftovers, no 2^53 bounds', () => {
    for (const [path, node] of walk(openAPI)) {
      expect(node.type ?? node['x-kubernetes-preserve-unknown-fields'], path).toBeTruthy();
      for (const k of ['$schema', '$ref', 'anyOf', 'oneOf', 'allOf', 'propertyNames', 'prefixItems', 'const']) expect(node, path).not.toHaveProperty(k);
      if (typeof node.maximum === 'number') expect(node.maximum, path).toBeLessThan(Number.MAX_SAFE_INTEGER);
      if (typeof node.minimum === 'number') expect(node.minimum, path).toBeGreaterThan(-Number.MAX_SAFE_INTEGER);
      if ('exclusiveMinimum' in node) expect(node.exclusiveMinimum, path).toBe(true);
      if ('additionalProperties' in node) expect(node.additionalProperties, path).toBeTypeOf('object');
    }
  });

  it('bounds every spec string and array so CEL rules have a bounded cost', () => {
    for (const [path, node] of walk(openAPI.properties.spec, 'spec')) {
      if (node.type === 'string') expect(node.maxLength, path).toBeTypeOf('number');
      if (node.type === 'array') expect(node.maxItems, path).toBeTypeOf('number');
    }
  });

  it('carries descriptions, defaults, enums and bounds for kubectl explain', () => {
    const spec = openAPI.properties.spec;
    const stability = spec.properties.search.properties.stability;
    expect(stability.description).toMatch(/stable/);
    expect(stability.default).toEqual({});
    // No default threshold: unset means the automatic test, scaled by autoScale.
    expect(stability.properties.threshold).toMatchObject({ type: 'number', minimum: 0, exclusiveMinimum: true, maximum: 1 });
    expect(stability.properties.threshold).not.toHaveProperty('default');
    expect(stability.properties.autoScale).toMatchObject({ type: 'number', default: 1, minimum: 0, exclusiveMinimum: true, maximum: 100 });
    expect(spec.properties.budget.properties.action).toMatchObject({ enum: ['Suspend', 'Fail'], default: 'Suspend' });
    expect(spec.properties.dataset.properties.pvc.required).toEqual(['claimName']);
    for (const [path, node] of walk(spec, 'spec')) if (!/(\[\]|\.\*)$/.test(path) || node.type === 'object') expect(node.description, path).toBeTruthy();
  });

  it('keeps the search definition immutable and suspend/budget/backoffLimit editable', () => {
    const rules = (openAPI.properties.spec['x-kubernetes-validations'] as Array<{ rule: string }>).map((r) => r.rule).join('\n');
    for (const f of ['dataset', 'backbone', 'search', 'retrain', 'evaluate', 'resources', 'image']) expect(rules).toContain(`self.${f} == oldSelf.${f}`);
    for (const f of ['suspend', 'budget', 'backoffLimit']) expect(rules).not.toContain(`self.${f}`);
  });

  it('refuses at apply time what the operator could never run: a long name, no spec, a bad node selector key, GPUs for prune, warm-up past the budget', () => {
    expect(openAPI.required).toEqual(['spec']);
    expect(openAPI.properties.spec).not.toHaveProperty('default');
    // the name rule holds at creation only (names never change): a search stored before it keeps a writable status
    expect(openAPI['x-kubernetes-validations']).toEqual([
      expect.objectContaining({ rule: 'oldSelf.hasValue() || self.metadata.name.size() <= 63', optionalOldSelf: true }),
    ]);
    const resources = openAPI.properties.spec.properties.resources.properties;
    expect(resources.nodeSelector['x-kubernetes-validations'][0].rule).toMatch(/^self\.all\(k, k\.matches\('\^/);
    expect(resources.nodeSelector.additionalProperties.pattern).toBeTypeOf('string');
    expect(resources.tolerations.items['x-kubernetes-validations']).toHaveLength(4);
    expect(resources.phases.properties.prune.properties.gpus.maximum).toBe(0);
    expect(resources.phases.properties.search.properties.gpus.maximum).toBe(64);
    expect(openAPI.properties.spec.properties.search['x-kubernetes-validations'][0].rule).toContain('self.warmupEpochs < self.maxEpochs');
    // external evaluation datasets: unique names, at most 32, each a DNS label with a path
    const external = openAPI.properties.spec.properties.evaluate.properties.external;
    expect(external).toMatchObject({ type: 'array', default: [], maxItems: 32 });
    expect(external['x-kubernetes-validations']).toEqual([expect.objectContaining({ rule: 'self.all(a, self.exists_one(b, b.name == a.name))' })]);
    expect(external.items.required).toEqual(['name', 'format', 'path']);
    expect(external.items.properties.name.pattern).toBe('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$');
    expect(external.items.properties.pvc).toMatchObject({ required: ['claimName'], properties: { readOnly: { default: true } } });
    expect(external.items.properties.pvc.description).toMatch(/evaluate pod only/);
    // CEL string literals: no backslash escapes that CEL would refuse
    for (const [path, node] of walk(openAPI))
      for (const r of (node['x-kubernetes-validations'] ?? []) as Array<{ rule: string }>) expect(r.rule, path).not.toContain('\\');
  });

  it('has the status subresource, names and printer columns', () => {
    expect(version.subresources).toEqual({ status: {} });
    expect(crd.spec.names).toMatchObject({ kind: 'IACSearch', plural: 'iacsearches', shortNames: ['iacs'], categories: ['nas'] });
    expect(version.additionalPrinterColumns.map((c: Schema) => c.name.toUpperCase())).toEqual([
      'PHASE',
      'EPOCH',
      'STABLE',
      'DICE',
      'GAIN',
      'GPU-HOURS',
      'COST',
      'AGE',
    ]);
    // the gain of the cells over the same-budget U-Net: in `kubectl get -o wide` only
    expect(version.additionalPrinterColumns.filter((c: Schema) => c.priority === 1).map((c: Schema) => c.jsonPath)).toEqual(['.status.results.diceGain']);
    const status = openAPI.properties.status;
    expect(status.properties.genotype['x-kubernetes-preserve-unknown-fields']).toBe(true);
    expect(status.properties.phases.properties.search.properties.attempts).not.toHaveProperty('default');
    // every printer column points at a field the status schema has
    for (const c of (version.additionalPrinterColumns as Schema[]).filter((c) => c.jsonPath.startsWith('.status'))) {
      const parts = c.jsonPath.split('.').slice(1);
      let node: Schema = openAPI;
      for (const p of parts) node = node.properties?.[p] ?? node;
      expect(node.type, c.jsonPath).toBe(c.type);
    }
    expect(parse(renderCRD()).spec.versions[0].name).toBe('v1alpha1');
  });
});

describe('toStructural', () => {
  const convert = (s: z.ZodType) => toStructural(jsonSchemaOf(s), { defaults: true, boundForCEL: false });

  it('turns nullable types and exclusive bounds into OpenAPI 3.0 form', () => {
    expect(convert(z.string().nullable())).toEqual({ type: 'string', nullable: true });
    expect(convert(z.number().gt(1).lt(2))).toEqual({ type: 'number', minimum: 1, exclusiveMinimum: true, maximum: 2, exclusiveMaximum: true });
    expect(convert(z.int())).toEqual({ type: 'integer', format: 'int64' });
    expect(convert(z.literal('x'))).toMatchObject({ type: 'string', enum: ['x'] });
  });

  it('refuses what a structural schema cannot express', () => {
    expect(() => convert(z.union([z.string(), z.number()]))).toThrow(/not structural|anyOf/);
    const unknownRecord: OpenAPISchema = convert(z.record(z.string(), z.unknown()));
    expect(unknownRecord).toEqual({ type: 'object', 'x-kubernetes-preserve-unknown-fields': true });
  });
});
