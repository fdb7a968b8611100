import { describe, expect, it } from 'vitest';
import { statusSchema } from './crd.ts';
import { IACSearchStatus } from './status.ts';

// biome-ignore lint/suspicious/noExplicitAny: the test walks a generated JSON schema document by path; its shape is what the assertions check
type Schema = Record<string, any>;

function* walk(node: Schema, path = ''): Generator<[string, Schema]> {
  yield [path, node];
  for (const [k, v] of Object.entries(node.properties ?? {})) yield* walk(v as Schema, `${path}.${k}`);
  if (node.items) yield* walk(node.items, `${path}[]`);
  if (node.additionalProperties && typeof node.additionalProperties === 'object') yield* walk(node.additionalProperties, `${path}.*`);
}

describe('IACSearch status schema', () => {
  // Attack 9: a 60 KB `time` of a progress event went into status.progress.updateTime.
  it('gives every status string a maxLength in the CRD', () => {
    const strings = [...walk(statusSchema() as Schema, 'status')].filter(([, n]) => n.type === 'string');
    expect(strings.length).toBeGreaterThan(10);
    for (const [path, node] of strings) {
      if (!node.enum) expect(node.maxLength, path).toBeTypeOf('number');
    }
  });

  it('refuses an over-long string where it reads a status', () => {
    const progress = { phase: 'search', epoch: 3, updateTime: 'x'.repeat(60_000) };
    const r = IACSearchStatus.safeParse({ progress });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0].path).toEqual(['progress', 'updateTime']);
    expect(IACSearchStatus.safeParse({ progress: { ...progress, updateTime: new Date().toISOString() } }).success).toBe(true);
  });

  it('bounds the evaluate figures: at most 32 external datasets, names of at most 63 characters', () => {
    const item = (name: string) => ({ name, cases: 4, meanDice: 0.7, dicePerClass: { Anterior: 0.6, Posterior: 0.8 }, hd95: 3 });
    const results = (external: unknown[]) => IACSearchStatus.safeParse({ results: { meanDice: 0.8, baselineMeanDice: 0.75, diceGain: 0.05, external } });
    expect(results(Array.from({ length: 32 }, (_, i) => item(`d${i}`))).success).toBe(true);
    const many = results(Array.from({ length: 33 }, (_, i) => item(`d${i}`)));
    expect(many.error?.issues[0].path).toEqual(['results', 'external']);
    expect(results([item('x'.repeat(64))]).error?.issues[0].path).toEqual(['results', 'external', 0, 'name']);
    expect(results([{ name: 'no-dice', cases: 4 }]).error?.issues[0].path).toEqual(['results', 'external', 0, 'meanDice']);
    const external = (statusSchema() as Schema).properties.results.properties.external;
    expect(external.maxItems).toBe(32);
    expect(external.items.required).toEqual(['name', 'cases', 'meanDice']);
  });
});
