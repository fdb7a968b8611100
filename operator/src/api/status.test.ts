import { describe, expect, it } from 'vitest';
import { statusSchema } from './crd.ts';
import { IACSearchStatus } from './status.ts';

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
});
