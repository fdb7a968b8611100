// The four trainer phases in a row on the built-in phantom with the real model,
// and retrain killed with SIGKILL and started again.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { trainerMain } from '../cli.ts';
import { PhaseResult, ProgressEvent } from '../../../contract/src/index.ts';
import { readHistory } from '../training/history.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const base = {
  seed: 2,
  dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
  backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 2 },
  search: { maxEpochs: 4, warmupEpochs: 1, batchSize: 4, stepsPerEpoch: 3, nodes: 1, operations: ['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3'] },
  retrain: { epochs: 3, batchSize: 4, stepsPerEpoch: 3 },
  evaluate: { metrics: ['dice', 'hd95'] },
};

async function phase(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await trainerMain(argv, { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) }, env: {} });
  const lines = out
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  return { code, lines, result: PhaseResult.parse(lines.at(-1)), stderr: err.join('') };
}

const cfg = JSON.stringify(base);

describeEachBackend('search, prune, retrain, evaluate', (backend) => {
  let workdir: string;
  beforeAll(async () => {
    // The phases run in this process and start the backend chosen here.
    process.env.IACNAS_BACKEND = backend;
    await initBackend({ backend, quiet: true });
    workdir = mkdtempSync(join(tmpdir(), 'pipeline-'));
  });

  it("runs every phase and leaves each phase's artifacts", async () => {
    const s = await phase(['search', '--workdir', workdir, '--config-json', cfg]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.lines.slice(0, -1).every((l) => ProgressEvent.safeParse(l).success)).toBe(true);
    expect(s.result).toMatchObject({ ok: true, phase: 'search' });
    expect(s.result.backboneSeconds).toBeGreaterThan(0);
    expect(s.stderr).toMatch(/search epoch 1\/4 \| loss [\d.]+ \| val Dice [\d.]+ .*\| ops \d+\/\d+ \| stable \d+\/\d+ .*ETA/);
    expect(existsSync(join(workdir, 'backbone', 'meta.json'))).toBe(true);

    const p = await phase(['prune', '--workdir', workdir, '--config-json', cfg]);
    expect(p.code, p.stderr).toBe(0);
    const genotype = JSON.parse(readFileSync(join(workdir, 'genotype.json'), 'utf8'));
    expect(p.result.genotype).toEqual(s.result.genotype);
    expect(p.result.stableEdges).toBe(s.result.stableEdges);
    expect(p.result.activeOperations).toBe(s.result.activeOperations);
    expect(genotype.genotype.cells).toHaveLength(1);
    const d = await phase(['derive', '--workdir', workdir, '--config-json', cfg, '--history', join(workdir, 'search', 'history.jsonl')]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.result.genotype).toEqual(s.result.genotype);
    expect(d.result.stableEdges).toBe(s.result.stableEdges);
    const c = await phase(['derive', '--workdir', workdir, '--config-json', cfg, '--checkpoint', join(workdir, 'search', 'checkpoint')]);
    expect(c.code, c.stderr).toBe(0);
    expect(c.result.genotype).toEqual(s.result.genotype);
    const wrong = await phase(['prune', '--workdir', workdir, '--config-json', JSON.stringify({ ...base, search: { ...base.search, nodes: 2 } })]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('do not match search.operations');

    const r = await phase(['retrain', '--workdir', workdir, '--config-json', cfg]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({ ok: true, phase: 'retrain', epochs: 3 });
    expect(r.lines.filter((l) => l.type === 'progress').map((l) => l.epoch)).toEqual([1, 2, 3]);
    expect(existsSync(join(workdir, 'retrain', 'model'))).toBe(true);

    const e = await phase(['evaluate', '--workdir', workdir, '--config-json', cfg]);
    expect(e.code, e.stderr).toBe(0);
    expect(e.result.meanDice).toBeGreaterThanOrEqual(0);
    expect(existsSync(join(workdir, 'results.json'))).toBe(true);

    // Search started again after it finished: nothing is redone, the result is the same.
    const again = await phase(['search', '--workdir', workdir, '--config-json', cfg]);
    expect(again.code).toBe(0);
    expect(again.lines.filter((l) => l.type === 'progress')).toHaveLength(0);
    expect(again.result.genotype).toEqual(s.result.genotype);
  });

  it('resumes retrain after kill -9 without redoing epochs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'retrain-kill-'));
    cpSync(workdir, dir, { recursive: true });
    rmSync(join(dir, 'retrain'), { recursive: true, force: true });
    const config = JSON.stringify({ ...base, retrain: { epochs: 6, batchSize: 4, stepsPerEpoch: 4, earlyStoppingPatience: 100 } });
    const run = () => {
      const child = spawn(process.execPath, [join(root, 'bin', 'iacnas.ts'), 'trainer', 'retrain', '--workdir', dir, '--config-json', config], {
        env: { ...process.env, IACNAS_BACKEND: backend, IACNAS_RESULT_FILE: join(dir, 'result.json') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      return {
        child,
        done: new Promise<{ code: number | null; stdout: string; stderr: string }>((res) => child.on('close', (code) => res({ code, stdout, stderr }))),
      };
    };
    const epochOf = () => {
      try {
        return JSON.parse(readFileSync(join(dir, 'retrain', 'checkpoint', 'state.json'), 'utf8')).state.epoch as number;
      } catch {
        return 0;
      }
    };
    const first = run();
    let atKill = 0;
    while (!atKill) {
      await new Promise((r) => setTimeout(r, 20));
      if (epochOf() >= 1) {
        first.child.kill('SIGKILL');
        atKill = -1;
      }
      if (first.child.exitCode !== null) throw new Error(`retrain ended before it could be killed:\n${(await first.done).stderr}`);
    }
    expect((await first.done).code).toBeNull();
    atKill = epochOf();
    expect(atKill).toBeLessThan(6);
    const second = await run().done;
    expect(second.code, second.stderr).toBe(0);
    const lines = second.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.type === 'progress').map((l) => l.epoch)).toEqual(Array.from({ length: 6 - atKill }, (_, i) => atKill + 1 + i));
    expect(lines.at(-1)).toMatchObject({ type: 'result', ok: true, epochs: 6 });
    expect(readHistory(join(dir, 'retrain', 'history.jsonl')).map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(existsSync(join(dir, 'retrain', 'model'))).toBe(true);
  });

  it("refuses a configuration that cannot fit in memory, with the model's advice", async () => {
    const saved = process.env.IACNAS_MEMORY_LIMIT_MB;
    process.env.IACNAS_MEMORY_LIMIT_MB = '1';
    try {
      const dir = mkdtempSync(join(tmpdir(), 'memory-'));
      const s = await phase(['search', '--workdir', dir, '--config-json', JSON.stringify({ ...base, search: { ...base.search, batchSize: 64 } })]);
      expect(s.code).toBe(2);
      expect(s.result.ok).toBe(false);
      expect(s.result.message).toMatch(/a training step needs about .* lower search.batchSize/);
      expect(existsSync(join(dir, 'backbone', 'meta.json'))).toBe(false); // refused before any training
    } finally {
      if (saved === undefined) delete process.env.IACNAS_MEMORY_LIMIT_MB;
      else process.env.IACNAS_MEMORY_LIMIT_MB = saved;
    }
  });
});
