// The benchmarks are commands, not tests (CI time), but their smallest settings must
// keep running: each runs here end to end and its figures are checked for sense.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './lib.ts';

const run = promisify(execFile);
const bench = (name: string, args: string[]) =>
  run(process.execPath, [path.join(repoRoot, 'test/bench', `${name}.ts`), ...args], { cwd: repoRoot, maxBuffer: 64 << 20 });
const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'iacnas-bench-test-'));

describe('benchmarks at their smallest setting', () => {
  it('nas-cost: a pruned and a full-length search on the same backbone, the ablations and the sensitivity, each retrained and evaluated', async () => {
    const out = path.join(tmp(), 'nas-cost.json');
    await bench('nas-cost', ['--smoke', '--out', out]);
    const r = JSON.parse(readFileSync(out, 'utf8'));
    const [d] = r.datasets;
    expect(d.name).toBe('phantom');
    const [lth] = d.runs.lth;
    const [full] = d.runs.full;
    expect(full.epochs).toBe(4); // the full-length search runs its whole budget
    expect(full.stoppedBy).toBe('max-epochs');
    expect(lth.epochs).toBeGreaterThan(0);
    expect(lth.epochs).toBeLessThanOrEqual(4);
    // Every edge's decision epochs come from the search's history, after the warm-up.
    expect(lth.firstDecisions.length).toBeGreaterThan(0);
    for (const e of [...lth.firstDecisions, ...lth.settledDecisions]) expect(e).toBeGreaterThan(1);
    // (a) stops the full search where IAC-LTH stopped; (b) and (c) search nothing.
    expect(d.runs.early[0].epochs).toBe(lth.epochs);
    expect(d.runs.early[0].cpuSeconds).toBeLessThanOrEqual(full.cpuSeconds);
    expect(d.runs.random[0].cpuSeconds).toBe(0);
    expect(lth.baselineMeanDice).toBeGreaterThanOrEqual(0);
    for (const run of [lth, full, d.runs.early[0], d.runs.random[0], d.runs['lth-x4'][0]]) {
      expect(run.meanDice).toBeGreaterThanOrEqual(0);
      expect(run.meanDice).toBeLessThanOrEqual(1);
    }
    for (const run of [lth, full]) {
      expect(run.searchSeconds).toBeGreaterThan(0);
      expect(run.cpuSeconds).toBeGreaterThan(0);
    }
    expect(d.lthVsFull.cpuSpeedupMedian).toBeCloseTo(full.cpuSeconds / lth.cpuSeconds, 1);
    // The longer budget runs the full search to it.
    expect(d.long.maxEpochs).toBe(6);
    expect(d.long.runs.full[0].epochs).toBe(6);
  }, 600_000);

  it('stability-scale: the same search at other epoch sizes and learning rates, by the automatic test and a fixed threshold', async () => {
    const out = path.join(tmp(), 'stability-scale.json');
    await bench('stability-scale', ['--smoke', '--out', out]);
    const r = JSON.parse(readFileSync(out, 'utf8'));
    expect(r.cases.map((c: { steps: number; learningRate: number; test: string }) => [c.steps, c.learningRate, c.test])).toEqual([
      [2, 6e-3, 'automatic'],
      [2, 6e-3, 'threshold 0.00006'],
      [4, 6e-3, 'automatic'],
      [4, 6e-3, 'threshold 0.00006'],
    ]);
    for (const c of r.cases) {
      expect(c.epochs).toBeGreaterThan(0);
      expect(c.jsdRange[0]).toBeLessThanOrEqual(c.jsdMedian);
      expect(c.jsdMedian).toBeLessThanOrEqual(c.jsdRange[1]);
      // A threshold above every divergence it saw is warned about; the automatic test never is.
      expect(c.warnings.length > 0).toBe(c.test !== 'automatic' && c.jsdRange[1] < 6e-5);
    }
  }, 600_000);

  it('trainer-throughput: search steps of the full supernet, before and after, pruned', async () => {
    const out = path.join(tmp(), 'trainer-throughput.json');
    await bench('trainer-throughput', ['--quick', '--steps', '1', '--warmup', '2', '--out', out]);
    const r = JSON.parse(readFileSync(out, 'utf8'));
    expect(r.figures.length).toBeGreaterThanOrEqual(3);
    // Both sides take the same untimed steps (the slow edge-by-edge "before" cell one).
    for (const f of r.figures) expect(f.warmupSteps).toBe(f.name.startsWith('before') ? 1 : 2);
    for (const t of r.torch.figures) expect(t.warmup).toBe(2);
    for (const f of r.figures) expect(f.imagesPerSecond).toBeGreaterThan(0);
    expect(r.speedups.prunedToOneVsAll).toBeGreaterThan(1); // pruning pays
    // The PyTorch twin ran in the same command, on the same networks.
    expect(r.torch.figures.length).toBeGreaterThanOrEqual(2);
    const wasm = r.torchRatios.filter((t: { backend: string }) => t.backend === 'wasm');
    expect(wasm.map((t: { variant: string }) => t.variant).sort()).toEqual(['full', 'pruned']);
    for (const t of r.torchRatios) {
      expect(t.sameParameters).toBe(true);
      expect(t.cpu).toBeGreaterThan(0);
    }
    expect(r.torchTarget.limit).toBe(1.5);
    expect(r.torchTarget.ratios.length).toBeGreaterThanOrEqual(2);
  }, 600_000);

  it('step-changes: the search step with each change off alone, and with none', async () => {
    const out = path.join(tmp(), 'step-changes.json');
    await bench('step-changes', ['--rounds', '1', '--sizes', '16x2', '--variants', 'pruned', '--backends', 'wasm,tensorflow', '--out', out]);
    const r = JSON.parse(readFileSync(out, 'utf8'));
    const rows = (backend: string) => r.rows.filter((x: { backend: string }) => x.backend === backend);
    expect(rows('wasm').length).toBe(7); // after, five changes off alone, before
    expect(rows('tensorflow').length).toBe(7); // after, two shared and three native changes off alone, before
    for (const backend of ['wasm', 'tensorflow']) {
      type Row = { config: string; kernelsPerStep: number; cpuMsPerStep: number; changeKernels?: 'fewer' | 'same' };
      const all: Row[] = rows(backend);
      const after = all.find((x) => x.config === 'after (all changes)')!.kernelsPerStep;
      // Each change removes kernel calls, or (a faster kernel for a slower one) keeps
      // their number (counted, not timed); with none, the most calls.
      for (const x of all.filter((r) => r.changeKernels)) {
        if (x.changeKernels === 'fewer') expect(x.kernelsPerStep, x.config).toBeGreaterThan(after);
        else expect(x.kernelsPerStep, x.config).toBe(after);
      }
      expect(all.find((x) => x.config === 'before (no change)')!.kernelsPerStep).toBeGreaterThan(
        Math.max(...all.filter((r) => r.changeKernels).map((r) => r.kernelsPerStep)),
      );
      for (const x of all) expect(x.cpuMsPerStep).toBeGreaterThan(0);
    }
  }, 600_000);

  it('search-pruning: per-epoch time with all operations and after pruning', async () => {
    const out = path.join(tmp(), 'search-pruning.json');
    await bench('search-pruning', ['--max-epochs', '6', '--out', out]);
    const r = JSON.parse(readFileSync(out, 'utf8'));
    expect(r.full.epochs).toBe(6);
    expect(r.pruned.epochs).toBeLessThanOrEqual(6);
  }, 600_000);

  it('onnx-inference: the exported network in onnxruntime beside our forward pass', async () => {
    const out = path.join(tmp(), 'onnx-inference.json');
    await bench('onnx-inference', ['--sizes', '32', '--runs', '1', '--backends', 'wasm', '--out', out]);
    const r = JSON.parse(readFileSync(out, 'utf8'));
    const engines = r.figures.map((f: { engine: string }) => f.engine);
    expect(engines).toEqual(expect.arrayContaining(['onnxruntime (1 thread)', 'tfjs wasm']));
    for (const f of r.figures) expect(f.cpuMsPerSlice).toBeGreaterThan(0);
    // The two engines compute the same network: the export is checked on every run.
    expect(r.agreement[0].relative).toBeLessThan(1e-4);
  }, 600_000);

  it('operator-reconcile: searches reconciled to Searching on the in-memory API', async () => {
    const { stdout } = await bench('operator-reconcile', ['5']);
    const r = JSON.parse(stdout);
    expect(r.searches).toBe(5);
    expect(r.reconciles).toBeGreaterThanOrEqual(5);
    expect(r.statusWrites).toBeGreaterThanOrEqual(5);
    expect(r.secondsToSearching).toBeGreaterThan(0);
  }, 120_000);
});
