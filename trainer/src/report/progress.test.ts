import { createServer, type IncomingMessage } from 'node:http';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PhaseResult, ProgressEvent } from '../../../contract/src/index.ts';
import { ProgressReporter, RESULT_LIMIT_BYTES, encodeResult, humanLine, resultFilePath } from './progress.ts';

function sink() {
  const lines: string[] = [];
  return { lines, write: (t: string) => lines.push(...t.split('\n').filter(Boolean)) };
}

const servers: { close(): void }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function server(handler: (req: IncomingMessage, body: string) => number | 'hang') {
  const seen: { headers: IncomingMessage['headers']; body: string }[] = [];
  const s = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      const code = handler(req, body);
      if (code !== 'hang') res.writeHead(code).end();
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push({
    close: () => {
      s.closeAllConnections();
      s.close();
    },
  });
  const { port } = s.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/v1/progress`, seen };
}

describe('ProgressReporter', () => {
  it('prints a ProgressEvent JSON line on stdout and a human line on stderr', () => {
    const out = sink();
    const err = sink();
    const r = new ProgressReporter({ phase: 'search', stdout: out, stderr: err, env: {} });
    r.progress({
      epoch: 3,
      maxEpochs: 20,
      trainLoss: 0.51234,
      valDice: 0.8,
      activeOperations: 40,
      totalOperations: 126,
      stableEdges: 5,
      totalEdges: 14,
      etaSeconds: 125,
    });
    expect(out.lines).toHaveLength(1);
    const ev = ProgressEvent.parse(JSON.parse(out.lines[0]));
    expect(ev).toMatchObject({ type: 'progress', phase: 'search', epoch: 3, stableEdges: 5 });
    expect(err.lines[0]).toBe('search epoch 3/20 | loss 0.5123 | val Dice 0.8000 | ops 40/126 | stable 5/14 | ETA 2m');
  });

  it('POSTs events with the bearer token and the search name', async () => {
    const srv = await server(() => 204);
    const r = new ProgressReporter({
      phase: 'retrain',
      stdout: sink(),
      stderr: sink(),
      env: { IACNAS_PROGRESS_URL: srv.url, IACNAS_PROGRESS_TOKEN: 's3cret', IACNAS_SEARCH: 'ns/demo' },
      postTimeoutMs: 20_000, // a loaded machine, not the behaviour under test
    });
    r.progress({ epoch: 1, maxEpochs: 2 });
    await r.flush();
    expect(srv.seen).toHaveLength(1);
    expect(srv.seen[0].headers.authorization).toBe('Bearer s3cret');
    expect(srv.seen[0].headers['x-iacsearch']).toBe('ns/demo');
    expect(JSON.parse(srv.seen[0].body)).toMatchObject({ type: 'progress', phase: 'retrain', epoch: 1 });
    expect(r.failedPosts).toBe(0);
  });

  it('never waits on a slow or failing operator', async () => {
    const srv = await server(() => 'hang');
    const r = new ProgressReporter({
      phase: 'search',
      stdout: sink(),
      stderr: sink(),
      env: { IACNAS_PROGRESS_URL: srv.url, IACNAS_PROGRESS_TOKEN: 't' },
      postTimeoutMs: 200,
    });
    const t0 = performance.now();
    for (let i = 1; i <= 6; i++) r.progress({ epoch: i, maxEpochs: 6 });
    expect(performance.now() - t0).toBeLessThan(100);
    await r.flush();
    expect(r.failedPosts).toBe(6); // 4 timed out, 2 dropped while 4 were pending
    const bad = new ProgressReporter({
      phase: 'search',
      stdout: sink(),
      stderr: sink(),
      env: { IACNAS_PROGRESS_URL: 'http://127.0.0.1:1/x', IACNAS_PROGRESS_TOKEN: 't' },
    });
    bad.progress({ epoch: 1, maxEpochs: 1 });
    await bad.flush();
    expect(bad.failedPosts).toBe(1);
  });

  it('gets an event out before the next epoch blocks the event loop, only when settled', async () => {
    const srv = await server(() => 204);
    const env = { IACNAS_PROGRESS_URL: srv.url, IACNAS_PROGRESS_TOKEN: 't', IACNAS_SEARCH: 'ns/demo' };
    const blockFor = (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end); // a training epoch: synchronous kernels, no await
    };
    // Generous bounds: on a loaded machine the first request of a process takes a while.
    const settled = new ProgressReporter({ phase: 'search', stdout: sink(), stderr: sink(), env, postTimeoutMs: 20_000 });
    settled.progress({ epoch: 1, maxEpochs: 2 });
    await settled.settle(20_000);
    expect(srv.seen).toHaveLength(1); // delivered before the epoch below starts
    blockFor(600);
    await settled.flush();
    expect(settled.failedPosts).toBe(0);

    // Without settle the request is still unsent when its timeout fires.
    const unsettled = new ProgressReporter({ phase: 'search', stdout: sink(), stderr: sink(), env, postTimeoutMs: 300 });
    unsettled.progress({ epoch: 2, maxEpochs: 2 });
    blockFor(600);
    await unsettled.flush();
    expect(unsettled.failedPosts).toBe(1);
  });

  it('writes the result to stdout and the result file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'progress-'));
    const file = join(dir, 'result.json');
    const out = sink();
    const r = new ProgressReporter({ phase: 'prune', stdout: out, stderr: sink(), env: {}, resultFile: file });
    await r.result({ ok: true, epochs: 0 });
    const written = PhaseResult.parse(JSON.parse(readFileSync(file, 'utf8')));
    expect(written).toEqual({ type: 'result', phase: 'prune', ok: true, epochs: 0 });
    expect(JSON.parse(out.lines.at(-1)!)).toEqual(written);
  });

  it('says what the ETA counts: the stability criterion against the budget, or the budget as an upper bound', () => {
    expect(humanLine('search', { epoch: 9, maxEpochs: 30, etaSeconds: 240, etaBasis: 'stable', etaMaxSeconds: 2520 })).toContain(
      '| ETA 4m (stability), <= 42m (maxEpochs)',
    );
    expect(humanLine('search', { epoch: 9, maxEpochs: 30, etaSeconds: 120, etaBasis: 'genotype-unchanged', etaMaxSeconds: 2520 })).toContain(
      '| ETA 2m (genotype unchanged), <= 42m (maxEpochs)',
    );
    expect(humanLine('search', { epoch: 9, maxEpochs: 30, etaSeconds: 2520, etaBasis: 'max-epochs' })).toContain('| ETA <= 42m (maxEpochs)');
    expect(humanLine('retrain', { epoch: 2, maxEpochs: 30, etaSeconds: 600, etaBasis: 'max-epochs' })).toContain('| ETA <= 10m (epochs)');
    expect(humanLine('search', { epoch: 12, maxEpochs: 30, etaSeconds: 0, etaBasis: 'stable' })).toMatch(/\| ETA 0s$/);
  });

  it('names the model a retrain epoch trained', () => {
    expect(humanLine('retrain', { epoch: 2, maxEpochs: 30, model: 'cells' })).toBe('retrain (cell model) epoch 2/30');
    expect(humanLine('retrain', { epoch: 2, maxEpochs: 30, model: 'baseline' })).toBe('retrain (U-Net baseline) epoch 2/30');
    expect(ProgressEvent.parse({ type: 'progress', phase: 'retrain', epoch: 1, maxEpochs: 2, model: 'baseline', etaBasis: 'max-epochs' }).model).toBe(
      'baseline',
    );
  });

  it("drops the external datasets' per-class figures, then the list, before the result outgrows the termination message", () => {
    const external = Array.from({ length: 12 }, (_, i) => ({
      name: `set-${i}`,
      cases: 10,
      meanDice: 0.5,
      hd95: 3,
      dicePerClass: Object.fromEntries(Array.from({ length: 12 }, (_, c) => [`a-long-class-name-${c}`, 0.5])),
    }));
    const text = encodeResult({ type: 'result', phase: 'evaluate', ok: true, meanDice: 0.8, baselineMeanDice: 0.75, diceGain: 0.05, external });
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(RESULT_LIMIT_BYTES);
    const r = PhaseResult.parse(JSON.parse(text));
    expect(r).toMatchObject({ meanDice: 0.8, baselineMeanDice: 0.75, diceGain: 0.05 });
    expect(r.external).toHaveLength(12);
    expect(r.external!.every((e) => e.dicePerClass === undefined && e.meanDice === 0.5)).toBe(true);
    // A malformed list reads as none: the rest of the result is kept.
    expect(PhaseResult.parse({ type: 'result', phase: 'evaluate', ok: true, meanDice: 0.8, external: [{ name: 1 }] })).toMatchObject({
      meanDice: 0.8,
      external: undefined,
    });
  });

  it('keeps the result under the termination-message limit', () => {
    const huge = encodeResult({ type: 'result', phase: 'search', ok: false, message: 'x'.repeat(10_000) });
    expect(Buffer.byteLength(huge)).toBeLessThanOrEqual(RESULT_LIMIT_BYTES);
    expect(JSON.parse(huge).ok).toBe(false);
  });

  it('chooses the result file: flag, then environment, then nothing here', () => {
    expect(resultFilePath('/a', { IACNAS_RESULT_FILE: '/b' })).toBe('/a');
    expect(resultFilePath(undefined, { IACNAS_RESULT_FILE: '/b' })).toBe('/b');
    expect(humanLine('search', { epoch: 1, maxEpochs: 2, etaSeconds: 7200 })).toContain('ETA 2.0h');
  });
});
