// `iacnas run <IACSearchSet.yaml>` through the real trainer (`node bin/iacnas.ts trainer ...`):
// two tiny phantom seeds, two at a time, each child to the end with its report, and the
// table the children's statuses make.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runSearch } from './cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'iacnas-fleet-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const template = {
  dataset: { format: 'phantom', cases: 5, sliceSize: 16 },
  backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1 },
  search: { maxEpochs: 4, nodes: 1, operations: ['skip_connect', 'conv_3x3'], batchSize: 4, stepsPerEpoch: 1, warmupEpochs: 0, stability: { window: 1 } },
  retrain: { epochs: 1, batchSize: 4, stepsPerEpoch: 1 },
  resources: { gpus: 0 },
};

describe('iacnas run <IACSearchSet.yaml> through the real trainer', () => {
  it('runs two tiny phantom seeds two at a time and tables them', async () => {
    const file = join(dir, 'set.yaml');
    writeFileSync(
      file,
      `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearchSet\nmetadata:\n  name: tiny\nspec: ${JSON.stringify({ template, matrix: { seeds: [1, 2] } })}\n`,
    );
    let out = '';
    const sink = {
      write(t: string) {
        out += t;
        return true;
      },
    };
    const code = await runSearch(
      { file, out: join(dir, 'runs'), parallel: 2 },
      { stdout: sink, stderr: sink, env: { IACNAS_BACKEND: 'cpu' }, pollMs: 200, cpus: 2 },
    );
    expect(code, out).toBe(0);
    const setDir = join(dir, 'runs', 'tiny');
    const fleet = JSON.parse(readFileSync(join(setDir, 'fleet.json'), 'utf8'));
    expect(fleet).toMatchObject({ set: 'tiny', phase: 'Succeeded', ready: '2/2' });
    for (const [i, child] of ['tiny-s1', 'tiny-s2'].entries()) {
      const status = parse(readFileSync(join(setDir, child, 'status.yaml'), 'utf8')).status;
      expect(status.phase).toBe('Succeeded');
      expect(existsSync(join(setDir, child, 'report.html'))).toBe(true);
      expect(fleet.children[i]).toMatchObject({
        name: child,
        seed: i + 1,
        phase: 'Succeeded',
        testDice: status.results.meanDice,
        searchEpochs: status.searchResult.epochs,
        reportExists: true,
      });
    }
    const best = fleet.children.reduce((a: { testDice: number }, b: { testDice: number }) => (b.testDice > a.testDice ? b : a));
    expect(fleet.bestChild.name).toBe(best.name);
    expect(readFileSync(join(setDir, 'fleet.md'), 'utf8')).toContain('[report.html](tiny-s1/report.html)');
  }, 120_000);
});
