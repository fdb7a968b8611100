// The real `iacnas trainer search` command on the built-in phantom: killed with
// SIGKILL after a checkpoint exists and started again, it finishes with the same
// epochs and the same architecture as a run that was never interrupted, and does
// not redo finished epochs.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { describeEachBackend } from '../../testing/backend.ts';
import { readHistory } from '../training/history.ts';

const root = join(import.meta.dirname, '..', '..', '..');
const config = JSON.stringify({
  seed: 5,
  dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
  backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1 },
  search: {
    maxEpochs: 10,
    warmupEpochs: 1,
    batchSize: 4,
    stepsPerEpoch: 4,
    nodes: 1,
    operations: ['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3', 'max_pool_3x3'],
    architecture: { learningRate: 0.05 },
    // Edges are pruned to 3 operations and then to 1 during the run.
    stability: { window: 2, threshold: 0.002, patience: 20 },
  },
});

function start(workdir: string, backend: string): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(
    process.execPath,
    [join(root, 'bin', 'iacnas.ts'), 'trainer', 'search', '--workdir', workdir, '--config-json', config, '--result-file', join(workdir, 'result.json')],
    {
      env: { ...process.env, IACNAS_BACKEND: backend, IACNAS_PROGRESS_URL: '', IACNAS_RESULT_FILE: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done };
}

function checkpointEpoch(workdir: string): number {
  const f = join(workdir, 'search', 'checkpoint', 'state.json');
  if (!existsSync(f)) return 0;
  try {
    return (JSON.parse(readFileSync(f, 'utf8')) as { state: { epoch: number } }).state.epoch;
  } catch {
    return 0;
  }
}

const events = (stdout: string) =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; epoch?: number; epochs?: number; stoppedBy?: string; genotype?: unknown });

describeEachBackend('iacnas trainer search, killed and started again', (backend) => {
  it('resumes from the last checkpoint and ends as the uninterrupted run', async () => {
    const reference = mkdtempSync(join(tmpdir(), 'search-ref-'));
    const ref = await start(reference, backend).done;
    expect(ref.code, ref.stderr).toBe(0);
    const refResult = events(ref.stdout).at(-1)!;
    expect(refResult.type).toBe('result');
    expect(refResult.epochs).toBeGreaterThanOrEqual(4);

    const workdir = mkdtempSync(join(tmpdir(), 'search-kill-'));
    const first = start(workdir, backend);
    let killedAfter = 0;
    while (killedAfter === 0) {
      await new Promise((r) => setTimeout(r, 20));
      const epoch = checkpointEpoch(workdir);
      if (epoch >= 2) {
        first.child.kill('SIGKILL');
        killedAfter = epoch;
      }
      if (first.child.exitCode !== null) throw new Error(`the search ended before it could be killed:\n${(await first.done).stderr}`);
    }
    const killed = await first.done;
    expect(killed.code).toBeNull(); // died by the signal
    const atKill = checkpointEpoch(workdir);
    expect(atKill).toBeLessThan(refResult.epochs!);

    const second = await start(workdir, backend).done;
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('reusing the trained backbone');
    expect(second.stderr).toContain(`resuming after epoch ${atKill}`);
    const progress = events(second.stdout).filter((e) => e.type === 'progress');
    expect(progress[0].epoch).toBe(atKill + 1); // finished epochs are not redone
    const result = events(second.stdout).at(-1)!;
    expect(result.epochs).toBe(refResult.epochs);
    expect(result.stoppedBy).toBe(refResult.stoppedBy);
    expect(result.genotype).toEqual(refResult.genotype);
    expect(JSON.parse(readFileSync(join(workdir, 'result.json'), 'utf8'))).toMatchObject({ type: 'result', ok: true, epochs: refResult.epochs });

    const history = readHistory<{ epoch: number; alphas: number[][][] }>(join(workdir, 'search', 'history.jsonl'));
    const refHistory = readHistory<{ epoch: number; alphas: number[][][] }>(join(reference, 'search', 'history.jsonl'));
    expect(history.map((h) => h.epoch)).toEqual(refHistory.map((h) => h.epoch));
    expect(history.at(-1)!.alphas).toEqual(refHistory.at(-1)!.alphas); // exact resume
  });
});
