// The reference pages name everything the code declares, so that adding an operation, a
// phase or a metric in code and forgetting its documentation fails here (docs/DESIGN.md,
// "Where to change what").
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { PHASES } from '../../contract/src/index.ts';
import { OperatorMetrics } from '../../operator/src/metrics/registry.ts';
import { OPERATIONS } from '../../trainer/src/config/search.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const doc = (name: string) => readFileSync(path.join(repo, 'docs', name), 'utf8');

describe('the reference pages', () => {
  it('docs/metrics.md has a row for every metric the operator registers, with its type', async () => {
    const metrics = new OperatorMetrics({ searches: () => [], exportsSearchMetrics: () => true, queueDepth: () => 0 });
    const registered = (await metrics.registry.getMetricsAsJSON()).map((m) => ({ name: m.name, type: String(m.type) }));
    expect(registered.length).toBeGreaterThan(20);
    const rows = new Map([...doc('metrics.md').matchAll(/^\| `([a-z0-9_]+)` \| ([a-z]+)/gm)].map((m) => [m[1], m[2]]));
    const missing = registered
      .filter((m) => rows.get(m.name) !== m.type)
      .map((m) => `${m.name} (${m.type}): ${rows.has(m.name) ? `documented as ${rows.get(m.name)}` : 'no row'}`);
    expect(missing).toEqual([]);
  });

  it('docs/model.md names every candidate operation', () => {
    const model = doc('model.md');
    expect(OPERATIONS.filter((op) => !model.includes(`\`${op}\``))).toEqual([]);
  });

  it('docs/trainer-phases.md has a row for every phase', () => {
    const rows = [...doc('trainer-phases.md').matchAll(/^\| `([a-z]+)` +\|/gm)].map((m) => m[1]);
    expect(rows).toEqual([...PHASES]);
  });
});
