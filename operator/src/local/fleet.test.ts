// `iacnas run <IACSearchSet.yaml>` with the fake trainer: the children of the matrix run
// one at a time or in parallel, each in runs/<set>/<child>/ as a single run; a re-run
// keeps what succeeded; the set's budget stops the fleet; the table is the children's.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runSearch, type RunIO } from './cli.ts';
import { fleetParallelism } from './fleet.ts';

const fakeTrainer = [process.execPath, join(import.meta.dirname, '../../testing/fake-trainer.ts')];

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'iacnas-fleet-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function setFile(spec: Record<string, unknown> = {}, name = 'fl') {
  const file = join(dir, 'set.yaml');
  const template = { dataset: { format: 'phantom' }, search: { maxEpochs: 10, warmupEpochs: 2 } };
  writeFileSync(
    file,
    `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearchSet\nmetadata:\n  name: ${name}\nspec: ${JSON.stringify({ template, matrix: { seeds: [1, 2, 3] }, ...spec })}\n`,
  );
  return file;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(file: string, io: RunIO = {}, parallel?: number): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await runSearch(
    { file, out: join(dir, 'runs'), ...(parallel !== undefined && { parallel }) },
    {
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
      trainerCommand: fakeTrainer,
      pollMs: 100,
      cpus: 4,
      ...io,
      env: { FAKE_TRAINER_DICE_BY_SEED: '1', ...io.env },
    },
  );
  return { code, stdout, stderr };
}

const childDir = (child: string) => join(dir, 'runs', 'fl', child);
const childStatus = (child: string) => parse(readFileSync(join(childDir(child), 'status.yaml'), 'utf8')).status;
const invocations = (child: string) =>
  existsSync(join(childDir(child), 'invocations.log'))
    ? readFileSync(join(childDir(child), 'invocations.log'), 'utf8')
        .trim()
        .split('\n')
    : [];
const CHILDREN = ['fl-s1', 'fl-s2', 'fl-s3'];

/** When a child's first attempt started and its last one ended. */
function interval(child: string): [number, number] {
  const history = Object.values(childStatus(child).phases as Record<string, { history: Array<{ startTime: string; endTime: string }> }>).flatMap(
    (p) => p.history,
  );
  return [Math.min(...history.map((h) => Date.parse(h.startTime))), Math.max(...history.map((h) => Date.parse(h.endTime)))];
}
const overlap = (a: [number, number], b: [number, number]) => a[0] < b[1] && b[0] < a[1];

describe('iacnas run <IACSearchSet.yaml> with a fake trainer', () => {
  it('runs every child of the matrix, one at a time, and tables them as their statuses say', async () => {
    const r = await run(setFile({ maxParallel: 2 }));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    for (const child of CHILDREN) {
      expect(childStatus(child).phase).toBe('Succeeded');
      // each child is a single run in runs/<set>/<child>/: its own phases, its own seed
      expect(invocations(child)).toEqual(['search', 'prune', 'retrain', 'evaluate'].map((p) => `${p} ${child} -`));
      expect(readFileSync(join(childDir(child), 'threads'), 'utf8')).toBe('4');
    }
    // one at a time by default, whatever maxParallel allows
    expect(overlap(interval('fl-s1'), interval('fl-s2'))).toBe(false);
    expect(overlap(interval('fl-s2'), interval('fl-s3'))).toBe(false);
    expect(r.stdout).toMatch(/\[fl\] 3 children, 1 at a time; each trainer may use 4 threads/);
    expect(r.stdout).toMatch(/\[s2\] \[search\] search epoch 3\/3\n/);

    // The table: one row per child, from its status; the best child by test Dice.
    const fleet = JSON.parse(readFileSync(join(dir, 'runs', 'fl', 'fleet.json'), 'utf8'));
    expect(fleet).toMatchObject({ set: 'fl', phase: 'Succeeded', ready: '3/3' });
    expect(fleet.children.map((c: { name: string }) => c.name)).toEqual(CHILDREN);
    for (const [i, row] of fleet.children.entries()) {
      const st = childStatus(CHILDREN[i]);
      expect(row).toMatchObject({
        name: CHILDREN[i],
        seed: i + 1,
        phase: st.phase,
        searchEpochs: st.searchResult.epochs,
        speedup: st.cost.speedup,
        testDice: st.results.meanDice,
        costUSD: st.cost.estimatedUSD,
        runDir: CHILDREN[i],
        report: `${CHILDREN[i]}/report.html`,
      });
      expect(row.testDice).toBeCloseTo(0.7 + (i + 1) / 100, 6);
    }
    expect(fleet.bestChild).toMatchObject({ name: 'fl-s3', report: 'fl-s3/report.html' });
    // the set's status is the one the cluster shows (the same reconcile)
    const setStatus = parse(readFileSync(join(dir, 'runs', 'fl', 'status.yaml'), 'utf8')).status;
    expect(setStatus.table).toEqual(fleet.children.map(({ runDir: _d, report: _r, reportExists: _e, ...row }: Record<string, unknown>) => row));
    expect(setStatus.bestChild.name).toBe('fl-s3');
    const table = r.stdout.slice(r.stdout.lastIndexOf('\nchild '));
    expect(table).toMatch(/\nchild\s+dataset\s+seed\s+phase\s+search epochs\s+speedup\s+test Dice\s+cost USD\n/);
    expect(table).toMatch(/\nfl-s3\s+-\s+3\s+Succeeded\s+3\s+3\.3x\s+0\.7300\s+0\.00\n/);
    expect(table).toMatch(/\nbest child: fl-s3 \(test mean Dice 0\.7300\)\n/);
    const md = readFileSync(join(dir, 'runs', 'fl', 'fleet.md'), 'utf8');
    expect(md).toContain('Best child: [fl-s3](fl-s3/report.html)');
    expect(md).toMatch(/\| fl-s1 \| - \| 1 \| - \| Succeeded \| 3 \| 3\.3x \| 0\.7100 \| 0\.00 \|/);

    // Again: nothing runs again.
    const again = await run(setFile({ maxParallel: 2 }));
    expect(again.code).toBe(0);
    for (const child of CHILDREN) expect(invocations(child)).toHaveLength(4);
    expect(again.stdout).not.toMatch(/starting|resuming fl-/);
  });

  it('runs two children at once with --parallel 2, each trainer with half the CPUs', async () => {
    const r = await run(setFile(), { env: { FAKE_TRAINER_EPOCH_MS: '150' } }, 2);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/3 children, 2 at a time; each trainer may use 2 threads/);
    expect(overlap(interval('fl-s1'), interval('fl-s2'))).toBe(true);
    // the third waits for a slot
    expect(interval('fl-s3')[0]).toBeGreaterThanOrEqual(Math.min(interval('fl-s1')[1], interval('fl-s2')[1]));
    for (const child of CHILDREN) expect(readFileSync(join(childDir(child), 'threads'), 'utf8')).toBe('2');
  });

  it("keeps to the set's maxParallel and to the machine", async () => {
    const r = await run(setFile({ maxParallel: 1 }), {}, 3);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/3 children, 1 at a time \(the set's maxParallel is 1\)/);
    await expect(run(setFile(), {}, 5)).rejects.toThrow(/--parallel 5: this machine has 4 CPUs.*give --parallel 4 or less/);
    expect(fleetParallelism(undefined, 2, undefined, 3)).toEqual({ parallel: 1, threads: 2 });
    expect(fleetParallelism(2, 16, 4, 3)).toEqual({ parallel: 2, threads: 8 });
    expect(fleetParallelism(8, 16, undefined, 3)).toEqual({ parallel: 3, threads: 5 });
  });

  it('a re-run after Ctrl-C keeps the children that succeeded and resumes the others from their checkpoints', async () => {
    let interrupt!: () => void;
    const interrupted = new Promise<void>((r) => (interrupt = r));
    const file = setFile();
    const env = { FAKE_TRAINER_EPOCHS: '20', FAKE_TRAINER_EPOCH_MS: '40' };
    const first = run(file, { env, interrupt: interrupted });
    // interrupt once s1 has succeeded and s2 has made some progress
    const epochFile = join(childDir('fl-s2'), 'search.epoch');
    while (!existsSync(epochFile) || Number(readFileSync(epochFile, 'utf8')) < 2) await new Promise((r) => setTimeout(r, 30));
    interrupt();
    const r1 = await first;
    expect(r1.code).toBe(130);
    expect(childStatus('fl-s1').phase).toBe('Succeeded');
    expect(childStatus('fl-s2').phase).toBe('Suspended');
    expect(existsSync(childDir('fl-s3'))).toBe(false);
    expect(r1.stdout).toMatch(/fl-s2\s+-\s+2\s+Suspended/);
    const stoppedAt = Number(readFileSync(epochFile, 'utf8'));

    const r2 = await run(file, { env: { ...env, FAKE_TRAINER_EPOCH_MS: '2' } });
    expect(r2.code).toBe(0);
    expect(invocations('fl-s1')).toHaveLength(4); // not run again
    expect(r2.stdout).toMatch(/\[fl\] resuming from .*: 1\/3 succeeded before/);
    expect(r2.stdout).toMatch(/\[s2\] resuming fl-s2 \(Suspended\)/);
    expect(childStatus('fl-s2').phases.search).toMatchObject({ attempts: 2, failures: 0 });
    expect(readFileSync(join(childDir('fl-s2'), 'attempts', 'fl-s2-search-2.log'), 'utf8')).toMatch(new RegExp(`resumed from epoch ${stoppedAt}`));
    expect(childStatus('fl-s3').phase).toBe('Succeeded');
  });

  it("stops the fleet on the set's budget, keeping the checkpoints; a raised budget resumes it", async () => {
    // one GPU at 3600 USD an hour: a dollar a second of the trainer's run time
    const spend = {
      template: { dataset: { format: 'phantom' }, search: { maxEpochs: 10, warmupEpochs: 2 }, resources: { gpus: 1 }, cost: { gpuHourlyUSD: 3600 } },
    };
    const env = { FAKE_TRAINER_EPOCHS: '30', FAKE_TRAINER_EPOCH_MS: '100' };
    const r = await run(setFile({ ...spend, budget: { maxCostUSD: 4, action: 'Suspend' } }), { env }, 2);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warning: the children cost an estimated .* USD of spec\.budget\.maxCostUSD 4; running children are suspended/);
    expect(r.stdout).toMatch(/fl-s1: suspending \(Budget\); its checkpoints stay/);
    expect(r.stderr).toMatch(/iacnas run: fl suspended: .*raise spec\.budget to resume/);
    const set = parse(readFileSync(join(dir, 'runs', 'fl', 'status.yaml'), 'utf8')).status;
    expect(set.phase).toBe('Suspended');
    for (const child of ['fl-s1', 'fl-s2']) {
      expect(childStatus(child).phase).toBe('Suspended');
      expect(Number(readFileSync(join(childDir(child), 'search.epoch'), 'utf8'))).toBeLessThan(30);
    }
    expect(existsSync(childDir('fl-s3'))).toBe(false); // never started
    expect(set.table.map((row: { held?: string }) => row.held)).toEqual(['Budget', 'Budget', 'Queued']);

    // The same budget: nothing runs.
    const same = await run(setFile({ ...spend, budget: { maxCostUSD: 4, action: 'Suspend' } }), { env }, 2);
    expect(same.code).toBe(1);
    expect(same.stdout).not.toMatch(/resuming fl-s/);

    // Action Fail: the set fails, its children stay suspended.
    const failed = await run(setFile({ ...spend, budget: { maxCostUSD: 4, action: 'Fail' } }), { env }, 2);
    expect(failed.code).toBe(1);
    expect(parse(readFileSync(join(dir, 'runs', 'fl', 'status.yaml'), 'utf8')).status.phase).toBe('Failed');

    // Raised: the children resume from their checkpoints and the fleet finishes.
    const raised = await run(setFile({ ...spend, budget: { maxCostUSD: 10000, action: 'Suspend' } }), { env: { ...env, FAKE_TRAINER_EPOCH_MS: '1' } }, 2);
    expect(raised.stderr).toBe('');
    expect(raised.code).toBe(0);
    expect(readFileSync(join(childDir('fl-s1'), 'attempts', 'fl-s1-search-2.log'), 'utf8')).toMatch(/resumed from epoch/);
    for (const child of CHILDREN) expect(childStatus(child).phase).toBe('Succeeded');
  });

  it('refuses an invalid set or child before running anything', async () => {
    const bad = await run(setFile({ template: { search: { maxEpochs: 20, warmupEpoch: 2 } } }));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/child s1 \(spec\.template with its matrix items\): spec\.search\.warmupEpoch: unknown key/);
    const badSet = await run(setFile({ maxParallel: 0 }));
    expect(badSet.code).toBe(2);
    expect(badSet.stderr).toMatch(/is not a valid IACSearchSet:\nspec\.maxParallel/);
    expect(existsSync(join(dir, 'runs'))).toBe(false);
  });
});
