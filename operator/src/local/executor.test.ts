import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseIACSearch } from '../api/index.ts';
import { buildPod } from '../reconcile/children.ts';
import { observePod } from '../reconcile/observe.ts';
import { searchObject } from '../../testing/world.ts';
import { LocalExecutor } from './executor.ts';

const fake = [process.execPath, join(import.meta.dirname, '../../testing/fake-trainer.ts')];
let runDir: string;
beforeEach(() => {
  runDir = mkdtempSync(join(tmpdir(), 'iacnas-exec-'));
});
afterEach(() => rmSync(runDir, { recursive: true, force: true }));

function pod(stage: 'search' | 'prune' = 'search', attempt = 1) {
  const r = parseIACSearch(searchObject());
  if (!r.ok) throw new Error(r.message);
  return buildPod(r.search, stage, attempt, { defaultImage: 'local' });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, ms = 10_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('local executor', () => {
  it('maps the pod command and /artifacts to this machine', () => {
    const ex = new LocalExecutor({ runDir, command: fake });
    const line = ex.commandLine(pod(), '/r.json');
    expect(line.slice(0, 6)).toEqual([...fake, 'trainer', 'search', '--workdir', runDir]);
    expect(line.slice(-2)).toEqual(['--result-file', '/r.json']);
  });

  it('reports a child as a pod: running, then succeeded with its result as the termination message', async () => {
    const ex = new LocalExecutor({ runDir, command: fake, env: { FAKE_TRAINER_EPOCHS: '2' } });
    await ex.apply({ type: 'create', object: pod() });
    await ex.apply({ type: 'create', object: pod() }); // AlreadyExists: not a second child
    expect(ex.pods()).toHaveLength(1);
    expect(observePod(ex.pods()[0])!.state).toBe('Running');
    await until(() => observePod(ex.pods()[0])!.state !== 'Running');
    const a = observePod(ex.pods()[0])!;
    expect(a).toMatchObject({ state: 'Succeeded', exitCode: 0, gpus: 1 });
    expect(a.result).toMatchObject({ phase: 'search', ok: true, epochs: 2 });
    // a later executor on the same directory still sees the finished pod
    expect(observePod(new LocalExecutor({ runDir, command: fake }).pods()[0])!.state).toBe('Succeeded');
    expect(readFileSync(join(runDir, 'invocations.log'), 'utf8')).toMatch(/^search /);
  });

  it('stops the child of a run that was killed outright before starting anew', async () => {
    const crashed = new LocalExecutor({ runDir, command: fake, env: { FAKE_TRAINER_EPOCHS: '1000', FAKE_TRAINER_EPOCH_MS: '50' } });
    await crashed.apply({ type: 'create', object: pod() });
    const pidFile = join(runDir, 'attempts', 'demo-search-1.pid');
    await until(() => existsSync(pidFile));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await until(() => existsSync(join(runDir, 'search.epoch')));
    expect(alive(pid)).toBe(true);
    const next = new LocalExecutor({ runDir, command: fake });
    await until(() => !alive(pid));
    expect(next.pods()).toEqual([]); // the orphan's pod is gone: the state machine will see it vanished
    await crashed.stopAll();
  });
});
