// `iacnas run` end to end through the real trainer (`node bin/iacnas.ts trainer ...`)
// on a tiny phantom: every phase as a child process, a Ctrl-C in the middle of the
// search, and the resumed run finishing from the checkpoint.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runSearch } from './cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'iacnas-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = {
  dataset: { format: 'phantom', cases: 5, sliceSize: 16 },
  backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1 },
  // Enough epochs that the Ctrl-C after the first lands well before the last, however fast
  // an epoch is (a run whose search finished before the interrupt would have nothing to resume).
  search: { maxEpochs: 30, nodes: 1, operations: ['skip_connect', 'conv_3x3'], batchSize: 4, stepsPerEpoch: 1, warmupEpochs: 0, stability: { enabled: false } },
  retrain: { epochs: 1, batchSize: 4, stepsPerEpoch: 1 },
  resources: { gpus: 1 },
  cost: { gpuHourlyUSD: 3600 },
};

describe('iacnas run through the real trainer', () => {
  it('runs a tiny phantom search to the end, surviving a Ctrl-C in the middle of the search', async () => {
    const file = join(dir, 'tiny.yaml');
    writeFileSync(file, `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: tiny\nspec: ${JSON.stringify(spec)}\n`);
    const env = { IACNAS_BACKEND: 'cpu' };

    // First run: interrupted once the first search epoch is done.
    let out = '';
    let interrupt!: () => void;
    const interrupted = new Promise<void>((r) => (interrupt = r));
    const stdout = {
      write(t: string) {
        out += t;
        if (/\[search\] search epoch 1\//.test(out)) interrupt();
        return true;
      },
    };
    const stderr = {
      write(t: string) {
        out += t;
        return true;
      },
    };
    const first = await runSearch({ file, out: join(dir, 'runs') }, { stdout, stderr, env, interrupt: interrupted, pollMs: 200 });
    expect(first, out).toBe(130);
    const runDir = join(dir, 'runs', 'tiny');
    expect(parse(readFileSync(join(runDir, 'status.yaml'), 'utf8')).status.phase).toBe('Suspended');

    // Second run: resumes the search from its checkpoint and finishes.
    let out2 = '';
    const sink = {
      write(t: string) {
        out2 += t;
        return true;
      },
    };
    const second = await runSearch({ file, out: join(dir, 'runs') }, { stdout: sink, stderr: sink, env, pollMs: 200 });
    expect(second, out2).toBe(0);
    const resumedAfter = Number(/\[search\] search: resuming after epoch (\d+) /.exec(out2)?.[1]);
    expect(resumedAfter, out2).toBeGreaterThanOrEqual(1);
    expect(resumedAfter).toBeLessThan(30);

    const status = parse(readFileSync(join(runDir, 'status.yaml'), 'utf8')).status;
    expect(status.phase).toBe('Succeeded');
    expect(status.phases.search).toMatchObject({ attempts: 2, failures: 0, succeeded: true });
    expect(status.phases.search.history.map((h: { outcome: string }) => h.outcome)).toEqual(['Stopped', 'Succeeded']);
    for (const stage of ['prune', 'retrain', 'evaluate']) expect(status.phases[stage]).toMatchObject({ attempts: 1, succeeded: true });
    expect(status.searchResult).toMatchObject({ epochs: 30, stoppedBy: 'max-epochs' });
    expect(status.genotype.cells.length).toBe(1);
    expect(status.results.meanDice).toBeGreaterThanOrEqual(0);
    expect(status.results.meanDice).toBeLessThanOrEqual(1);
    expect(Object.keys(status.results.dicePerClass)).toEqual(['LV', 'MYO', 'RV']);
    // GPU-seconds as a pod requesting one GPU would be billed: wall time of each attempt, prune excluded.
    expect(status.cost.gpuSeconds).toBeGreaterThan(0);
    expect(status.cost.estimatedUSD).toBeCloseTo(status.cost.gpuSeconds, 1);
    expect(status.phases.prune.gpuSeconds).toBe(0);

    const results = JSON.parse(readFileSync(join(runDir, 'results.json'), 'utf8'));
    expect(results.model.meanDice).toBeCloseTo(status.results.meanDice, 10);
    for (const f of ['report.html', 'genotype.json', 'patients.csv']) expect(existsSync(join(runDir, f)), f).toBe(true);
  });

  it('evaluates the fair baseline and an external dataset, and reports both in the status and at the end (MSD hippocampus, 6 + 2 cases)', async () => {
    const data = resolve(import.meta.dirname, '..', '..', '..', '..', 'shared', 'data', 'msd-hippocampus');
    const hippo = {
      dataset: { format: 'msd', path: data, cases: 6, sliceSize: 16, split: { train: 0.5, val: 0.17, test: 0.33 } },
      backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1 },
      search: {
        maxEpochs: 2,
        nodes: 1,
        operations: ['skip_connect', 'conv_3x3'],
        batchSize: 4,
        stepsPerEpoch: 1,
        warmupEpochs: 0,
        stability: { enabled: false },
      },
      retrain: { epochs: 1, batchSize: 4, stepsPerEpoch: 1 },
      // in a cluster the claim is mounted in the evaluate pod; here it is a directory on this machine
      evaluate: { baseline: true, external: [{ name: 'hippo-first', format: 'msd', path: data, cases: 2, pvc: { claimName: 'scans' } }] },
      resources: { gpus: 0 },
    };
    const file = join(dir, 'hippo.yaml');
    writeFileSync(file, `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: hippo\nspec: ${JSON.stringify(hippo)}\n`);
    let out = '';
    const sink = {
      write(t: string) {
        out += t;
        return true;
      },
    };
    const code = await runSearch({ file, out: join(dir, 'runs') }, { stdout: sink, stderr: sink, env: { IACNAS_BACKEND: 'cpu' }, pollMs: 200 });
    expect(code, out).toBe(0);

    const runDir = join(dir, 'runs', 'hippo');
    const status = parse(readFileSync(join(runDir, 'status.yaml'), 'utf8')).status;
    const results = JSON.parse(readFileSync(join(runDir, 'results.json'), 'utf8'));
    // the status holds what the evaluate phase wrote into results.json
    expect(status.results.meanDice).toBeCloseTo(results.model.meanDice, 10);
    expect(status.results.baselineMeanDice).toBeCloseTo(results.baseline.meanDice, 10);
    expect(status.results.diceGain).toBeCloseTo(results.model.meanDice - results.baseline.meanDice, 10);
    expect(status.results.external).toHaveLength(1);
    const [external] = status.results.external;
    expect(external).toMatchObject({ name: 'hippo-first', cases: 2 });
    expect(Object.keys(external.dicePerClass)).toEqual(['Anterior', 'Posterior']);
    expect(external.meanDice).toBeCloseTo(results.external[0].model.meanDice, 10);
    expect(existsSync(join(runDir, 'external', 'hippo-first', 'results.json'))).toBe(true);
    // and `iacnas run` ends with them
    expect(out).toMatch(
      /\n {2}gain of the cells over the U-Net trained with the same budget: [+-]\d\.\d{4} \(U-Net without cells: test mean Dice \d\.\d{4}\)\n/,
    );
    expect(out).toContain(`\n  external hippo-first: mean Dice ${external.meanDice.toFixed(4)} on 2 cases`);
  }, 600_000); // three trainings and two evaluations on a shared CPU
});
