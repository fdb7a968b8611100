import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseRunArgs, runSearch, type RunIO } from './cli.ts';

const fakeTrainer = [process.execPath, join(import.meta.dirname, '../../testing/fake-trainer.ts')];

class Capture {
  text = '';
  write(t: string) {
    this.text += t;
    return true;
  }
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'iacnas-run-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function searchFile(spec: Record<string, unknown> = {}, name = 'tiny') {
  const file = join(dir, 'search.yaml');
  writeFileSync(
    file,
    `# a comment\napiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: ${name}\nspec: ${JSON.stringify({ search: { maxEpochs: 10, warmupEpochs: 2 }, ...spec })}\n`,
  );
  return file;
}

function run(file: string, io: RunIO = {}, extra: { data?: string } = {}) {
  const stdout = new Capture();
  const stderr = new Capture();
  const code = runSearch({ file, out: join(dir, 'runs'), ...extra }, { stdout, stderr, trainerCommand: fakeTrainer, pollMs: 200, ...io });
  return code.then((c) => ({ code: c, stdout: stdout.text, stderr: stderr.text }));
}

const statusOf = (name = 'tiny') => parse(readFileSync(join(dir, 'runs', name, 'status.yaml'), 'utf8')).status;

describe('iacnas run with a fake trainer', () => {
  it('runs the four phases as child processes and ends with the status as kubectl would show it', async () => {
    const r = await run(searchFile({ cost: { gpuHourlyUSD: 2 } }));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const status = statusOf();
    expect(status.phase).toBe('Succeeded');
    expect(status.results).toMatchObject({ meanDice: 0.75, hd95: 3.2, bestValDice: 0.8 });
    expect(status.genotype.cells).toHaveLength(1);
    for (const stage of ['search', 'prune', 'retrain', 'evaluate']) {
      expect(status.phases[stage]).toMatchObject({ succeeded: true, attempts: 1, pod: `tiny-${stage}-1` });
    }
    expect(status.cost.savedGPUSeconds).toBeCloseTo(7 * 0.01, 5); // 10-epoch budget, 3 run, 10 ms each
    expect(status.cost.gpuSeconds).toBeGreaterThan(0);
    // the trainer ran in runs/<name> (the pods' /artifacts) and left its outputs there
    const runDir = join(dir, 'runs', 'tiny');
    expect(readFileSync(join(runDir, 'invocations.log'), 'utf8').trim().split('\n')).toEqual([
      'search tiny -',
      'prune tiny -',
      'retrain tiny -',
      'evaluate tiny -',
    ]);
    expect(existsSync(join(runDir, 'results.json'))).toBe(true);
    const printed = parse(r.stdout.slice(r.stdout.indexOf('apiVersion:')).split('\ntiny succeeded')[0]);
    expect(printed).toMatchObject({ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name: 'tiny' }, status: { phase: 'Succeeded' } });
    expect(r.stdout).toMatch(/tiny succeeded: test mean Dice 0\.7500/);
    expect(r.stdout).toMatch(/\[search\] search epoch 3\/3\n/);
    expect(r.stdout).toMatch(/\[evaluate\] evaluate epoch 1\/1\n/);
    // every phase's start and end is a line of its own
    for (const stage of ['search', 'prune', 'retrain', 'evaluate']) {
      expect(r.stdout).toMatch(new RegExp(`${stage} phase started: ${stage} attempt 1 created`));
      expect(r.stdout).toMatch(new RegExp(`${stage} finished \\(pod tiny-${stage}-1\\)`));
    }

    // Running it again does not run it again.
    const again = await run(searchFile({ cost: { gpuHourlyUSD: 2 } }));
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/already succeeded/);
    expect(readFileSync(join(runDir, 'invocations.log'), 'utf8').trim().split('\n')).toHaveLength(4);
  });

  it('suspends on interrupt and resumes from the checkpoint when run again', async () => {
    let interrupt!: () => void;
    const interrupted = new Promise<void>((r) => (interrupt = r));
    const file = searchFile();
    const env = { FAKE_TRAINER_EPOCHS: '20', FAKE_TRAINER_EPOCH_MS: '100' };
    const first = run(file, { env, interrupt: interrupted });
    // interrupt once the search has made some progress
    const runDir = join(dir, 'runs', 'tiny');
    while (!existsSync(join(runDir, 'search.epoch')) || Number(readFileSync(join(runDir, 'search.epoch'), 'utf8')) < 2) {
      await new Promise((r) => setTimeout(r, 50));
    }
    interrupt();
    const r1 = await first;
    expect(r1.code).toBe(130);
    const suspended = statusOf();
    expect(suspended.phase).toBe('Suspended');
    expect(suspended.phases.search.failures).toBe(0);
    expect(suspended.phases.search.history[0]).toMatchObject({ pod: 'tiny-search-1', outcome: 'Stopped' });
    const stoppedAt = Number(readFileSync(join(runDir, 'search.epoch'), 'utf8'));
    expect(stoppedAt).toBeLessThan(20);

    const r2 = await run(file, { env: { ...env, FAKE_TRAINER_EPOCH_MS: '5' } });
    expect(r2.code).toBe(0);
    expect(r2.stdout).toMatch(/resuming tiny \(Suspended\)/);
    const done = statusOf();
    expect(done.phase).toBe('Succeeded');
    expect(done.phases.search).toMatchObject({ attempts: 2, failures: 0, pod: 'tiny-search-2' });
    expect(readFileSync(join(runDir, 'attempts', 'tiny-search-2.log'), 'utf8')).toMatch(new RegExp(`resumed from epoch ${stoppedAt}`));
  });

  it("fails at once on bad input (exit 2), shows the trainer's message, and retries when run again", async () => {
    const file = searchFile();
    const r = await run(file, { env: { FAKE_TRAINER_FAIL: 'retrain' } });
    expect(r.code).toBe(1);
    expect(statusOf().phase).toBe('Failed');
    expect(r.stderr).toMatch(/retrain rejected its configuration or data/);
    expect(r.stdout).toMatch(/\[retrain\] retrain: dataset.path: no dataset.json here/);
    const again = await run(file);
    expect(again.code).toBe(0);
    expect(statusOf().phases.retrain).toMatchObject({ attempts: 2, succeeded: true });
    expect(statusOf().phases.search.attempts).toBe(1);
  });
});

describe('iacnas run input', () => {
  it('rejects an invalid search naming the field', async () => {
    const r = await run(searchFile({ search: { maxEpochs: -5 } }));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/spec\.search\.maxEpochs/);
  });

  it('refuses a misspelt field instead of running its default', async () => {
    const r = await run(searchFile({ search: { maxEpochs: 10, warmupEpoch: 2 } }));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/spec\.search\.warmupEpoch: unknown key; did you mean warmupEpochs\?/);
  });

  it('refuses --parallel for a single search', async () => {
    const stdout = new Capture();
    const stderr = new Capture();
    const code = await runSearch({ file: searchFile(), out: join(dir, 'runs'), parallel: 2 }, { stdout, stderr, trainerCommand: fakeTrainer });
    expect(code).toBe(2);
    expect(stderr.text).toMatch(/--parallel is for an IACSearchSet; .* holds an IACSearch/);
  });

  it('refuses to reuse a run directory for a changed search definition', async () => {
    expect((await run(searchFile())).code).toBe(0);
    const r = await run(searchFile({ search: { maxEpochs: 11, warmupEpochs: 2 } }));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/differs from the one/);
  });

  it('finds the dataset relative to the YAML file or at --data', async () => {
    const data = join(dir, 'data');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(data);
    const file = searchFile({ dataset: { format: 'msd', path: 'data', pvc: { claimName: 'x' } } });
    expect((await run(file)).code).toBe(0);
    expect(readFileSync(join(dir, 'runs', 'tiny', 'invocations.log'), 'utf8')).toContain(`search tiny ${data}`);
    await expect(run(file, {}, { data: join(dir, 'nowhere') })).rejects.toThrow(
      /spec\.dataset\.path: .*nowhere does not exist; give the dataset directory with --data/,
    );
  });

  it('evaluates on external datasets found relative to the YAML file and prints their figures and the gain at the end', async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'site-b'));
    mkdirSync(join(dir, 'site-c'));
    const external = [
      { name: 'site-b', format: 'msd', path: 'site-b', pvc: { claimName: 'scans' } },
      { name: 'site-c', format: 'nnunet', path: join(dir, 'site-c') },
    ];
    const r = await run(searchFile({ evaluate: { baseline: true, external } }));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const runDir = join(dir, 'runs', 'tiny');
    // the trainer got the directories on this machine (no claim here)
    expect(JSON.parse(readFileSync(join(runDir, 'external', 'site-b', 'results.json'), 'utf8')).path).toBe(join(dir, 'site-b'));
    expect(JSON.parse(readFileSync(join(runDir, 'external', 'site-c', 'results.json'), 'utf8')).path).toBe(join(dir, 'site-c'));
    expect(statusOf().results).toMatchObject({
      meanDice: 0.75,
      baselineMeanDice: 0.7,
      diceGain: 0.05,
      external: [
        { name: 'site-b', cases: 4, meanDice: 0.6 },
        { name: 'site-c', meanDice: 0.61 },
      ],
    });
    const end = r.stdout.slice(r.stdout.indexOf('\ntiny succeeded'));
    expect(end).toMatch(/tiny succeeded: test mean Dice 0\.7500\. Report: .*\n/);
    expect(end).toContain('\n  gain of the cells over the U-Net trained with the same budget: +0.0500 (U-Net without cells: test mean Dice 0.7000)\n');
    expect(end).toContain(`\n  external site-b: mean Dice 0.6000 on 4 cases, HD95 4.00 mm; per case: ${join(runDir, 'external', 'site-b')}\n`);
    expect(end).toContain('\n  external site-c: mean Dice 0.6100 on 4 cases');
  });

  it('refuses an external dataset that is not on this machine, naming the field', async () => {
    const file = searchFile({ evaluate: { external: [{ name: 'site-b', format: 'msd', path: 'nowhere' }] } });
    await expect(run(file)).rejects.toThrow(/^spec\.evaluate\.external\[0\]\.path: .*nowhere does not exist; give the directory that holds its dataset\.json/);
  });

  it('parses its command line', () => {
    let stdout = '';
    let stderr = '';
    const io = { stdout: { write: (t: string) => (stdout += t) }, stderr: { write: (t: string) => (stderr += t) } };
    expect(parseRunArgs(['x.yaml', '--out', 'o', '--data=d'], io)).toEqual({ file: 'x.yaml', out: 'o', data: 'd' });
    expect(parseRunArgs(['x.yaml'], io)).toEqual({ file: 'x.yaml', out: 'runs', data: undefined });
    expect(parseRunArgs(['--help'], io)).toBe(0);
    expect(stdout).toMatch(/^usage: iacnas run <IACSearch.yaml \| IACSearchSet.yaml>/);
    expect(parseRunArgs([], io)).toBe(2);
    expect(stderr).toMatch(/^iacnas run: the IACSearch YAML file is missing\n\nusage: iacnas run/);
    stderr = '';
    expect(parseRunArgs(['a.yaml', '--bogus'], io)).toBe(2);
    expect(stderr).toMatch(/^iacnas run: unknown option '--bogus'/i);
    stderr = '';
    expect(parseRunArgs(['a.yaml', '--out'], io)).toBe(2);
    expect(stderr).toMatch(/--out/);
    expect(parseRunArgs(['s.yaml', '--parallel', '2'], io)).toEqual({ file: 's.yaml', out: 'runs', parallel: 2 });
    stderr = '';
    expect(parseRunArgs(['s.yaml', '--parallel', '0'], io)).toBe(2);
    expect(stderr).toMatch(/^iacnas run: --parallel takes a whole number of children, at least 1 \(got '0'\)/);
  });
});
