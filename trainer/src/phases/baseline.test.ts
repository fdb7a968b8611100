// The fair baseline: with evaluate.baseline, retrain also trains the plain U-Net from the
// backbone with the cell model's budget, on the built-in phantom with the real model,
// and resumes both trainings where a failure left them.
import { cpSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { trainerMain } from '../cli.ts';
import { PhaseResult } from '../../../contract/src/index.ts';
import { createNetwork } from '../model/network.ts';
import { loadWeights } from '../model/serialize.ts';
import { parseTrainerConfig } from '../config/index.ts';
import { readHistory } from '../training/history.ts';

const config = {
  seed: 3,
  dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
  backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1 },
  search: { maxEpochs: 2, warmupEpochs: 1, batchSize: 4, stepsPerEpoch: 2, nodes: 1, operations: ['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3'] },
  retrain: { epochs: 3, batchSize: 4, stepsPerEpoch: 3, earlyStoppingPatience: 100 },
  evaluate: { baseline: true },
};
const cfg = JSON.stringify(config);

/** Runs a phase in this process; `stop` may throw from the stdout sink to end the phase at a chosen event. */
async function phase(argv: string[], stop?: (line: string) => void) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await trainerMain(argv, {
    stdout: {
      write: (t: string) => {
        out.push(t);
        stop?.(t);
      },
    },
    stderr: { write: (t: string) => err.push(t) },
    env: {},
  });
  const lines = out
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  return { code, lines, stderr: err.join('') };
}

const progressOf = (lines: Record<string, unknown>[], model: string) => lines.filter((l) => l.type === 'progress' && l.model === model).map((l) => l.epoch);
const optimizerSteps = (dir: string) => JSON.parse(readFileSync(join(dir, 'checkpoint', 'state.json'), 'utf8')).state.optimizerStep as number;
const manifest = (dir: string) => JSON.parse(readFileSync(join(dir, 'model', 'weights.json'), 'utf8')) as { sha256: string; tensors: { name: string }[] };

describeEachBackend(
  'retrain with evaluate.baseline',
  (backend) => {
    let searched: string;
    let whole: string;
    beforeAll(async () => {
      process.env.IACNAS_BACKEND = backend;
      await initBackend({ backend, quiet: true });
      searched = mkdtempSync(join(tmpdir(), 'baseline-'));
      for (const p of ['search', 'prune']) {
        const r = await phase([p, '--workdir', searched, '--config-json', cfg]);
        expect(r.code, r.stderr).toBe(0);
      }
    });

    it("trains the plain U-Net from the backbone with exactly the cell model's steps, and writes its model and record", async () => {
      whole = mkdtempSync(join(tmpdir(), 'baseline-whole-'));
      cpSync(searched, whole, { recursive: true });
      const r = await phase(['retrain', '--workdir', whole, '--config-json', cfg]);
      expect(r.code, r.stderr).toBe(0);
      const result = PhaseResult.parse(r.lines.at(-1));
      expect(result).toMatchObject({ ok: true, phase: 'retrain', epochs: 3 });

      // Both trainings, one after the other, each epoch saying which model it trained.
      expect(progressOf(r.lines, 'cells')).toEqual([1, 2, 3]);
      expect(progressOf(r.lines, 'baseline')).toEqual([1, 2, 3]);
      expect(r.stderr).toMatch(/retrain \(cell model\) epoch 1\/3 \|/);
      expect(r.stderr).toMatch(/retrain \(U-Net baseline\) epoch 1\/3 \|/);
      expect(r.stderr).toContain(`the U-Net baseline (no cells), from the backbone weights in ${join(whole, 'backbone')}`);

      // The same number of optimizer steps, counted by each optimizer.
      const cellSteps = optimizerSteps(join(whole, 'retrain'));
      expect(cellSteps).toBe(3 * 3);
      expect(optimizerSteps(join(whole, 'baseline'))).toBe(cellSteps);

      const training = JSON.parse(readFileSync(join(whole, 'baseline', 'training.json'), 'utf8'));
      expect(training).toEqual({
        cells: 'none',
        startedFrom: 'backbone',
        epochs: 3,
        maxEpochs: 3,
        stepsPerEpoch: 3,
        batchSize: 4,
        learningRate: 1e-3,
        seed: 3,
        bestValDice: result.baselineBestValDice,
      });
      expect(training.epochs * training.stepsPerEpoch).toBe(cellSteps);
      expect(readHistory(join(whole, 'baseline', 'history.jsonl')).map((h) => h.epoch)).toEqual([1, 2, 3]);

      // baseline/model/ holds exactly a plain U-Net's weights; retrain/model/ has the cells besides.
      const parsed = parseTrainerConfig(config);
      const plain = createNetwork({ backbone: parsed.backbone, inChannels: 1, numClasses: 4, cells: 'none', seed: 0 });
      try {
        expect(loadWeights(plain, join(whole, 'baseline', 'model'))).toBeDefined(); // strict: names and shapes match
      } finally {
        plain.dispose();
      }
      expect(manifest(join(whole, 'retrain')).tensors.length).toBeGreaterThan(manifest(join(whole, 'baseline')).tensors.length);
    });

    it('resumes where it failed: the cell model is not trained again, the baseline goes on from its last epoch', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'baseline-resume-'));
      cpSync(searched, dir, { recursive: true });
      let stopped = false;
      const first = await phase(['retrain', '--workdir', dir, '--config-json', cfg], (line) => {
        if (!stopped && line.includes('"model":"baseline"') && line.includes('"epoch":1,')) {
          stopped = true;
          throw new Error('stopped after the first baseline epoch');
        }
      });
      expect(first.code).toBe(1);
      expect(existsSync(join(dir, 'baseline', 'training.json'))).toBe(false);
      expect(existsSync(join(dir, 'retrain', 'model'))).toBe(true);

      const second = await phase(['retrain', '--workdir', dir, '--config-json', cfg]);
      expect(second.code, second.stderr).toBe(0);
      expect(progressOf(second.lines, 'cells')).toEqual([]);
      expect(progressOf(second.lines, 'baseline')).toEqual([2, 3]);
      expect(second.stderr).toContain(`baseline: resuming after epoch 1 from ${join(dir, 'baseline', 'checkpoint')}`);
      expect(readHistory(join(dir, 'baseline', 'history.jsonl')).map((h) => h.epoch)).toEqual([1, 2, 3]);
      // The same weights as the run that was never stopped.
      expect(manifest(join(dir, 'baseline')).sha256).toBe(manifest(join(whole, 'baseline')).sha256);
      expect(manifest(join(dir, 'retrain')).sha256).toBe(manifest(join(whole, 'retrain')).sha256);
      expect(optimizerSteps(join(dir, 'baseline'))).toBe(optimizerSteps(join(dir, 'retrain')));
    });
  },
  ['wasm'],
);
