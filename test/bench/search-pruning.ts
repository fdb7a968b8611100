// What stability pruning saves: the same small search (same seed, same backbone)
// run with IAC-LTH stability pruning and as the full-length IAC search, both as
// `iacnas trainer search` child processes on the built-in phantom. Reports the
// epochs each ran, the cell-search time, and the per-epoch time with all operations
// versus after pruning (wall and CPU seconds, from search/history.jsonl). Writes
// test/bench/results/search-pruning.json and prints a Markdown table.
//
//   scripts/with-node node test/bench/search-pruning.ts [--max-epochs 30] [--backend wasm] [--out file.json]
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { readHistory } from '../../trainer/src/training/history.ts';
import { machine, repoRoot, runPhase } from './lib.ts';

const { values: flags } = parseArgs({
  options: { 'max-epochs': { type: 'string', default: '30' }, backend: { type: 'string', default: 'wasm' }, out: { type: 'string' } },
});
const maxEpochs = Number(flags['max-epochs']);
const backend = flags.backend!;

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const config = (enabled: boolean) => ({
  name: enabled ? 'pruned' : 'full',
  seed: 11,
  dataset: { format: 'phantom', cases: 8, sliceSize: 32 },
  backbone: { depth: 2, baseFilters: 8, pretrainEpochs: 20, learningRate: 0.003 },
  search: {
    maxEpochs,
    warmupEpochs: 3,
    batchSize: 8,
    stepsPerEpoch: 4,
    nodes: 4,
    stability: { enabled, window: 3 },
  },
});

interface Line {
  epoch: number;
  active: number[][][];
  prunes: unknown[];
  archUpdates: boolean;
  epochSeconds: number;
  epochCpuSeconds: number;
  valDice: number;
}

const root = mkdtempSync(path.join(os.tmpdir(), 'bench-search-pruning-'));
const prunedDir = path.join(root, 'pruned');
const fullDir = path.join(root, 'full');
mkdirSync(prunedDir);
mkdirSync(fullDir);
console.error(`search-pruning: pruned search in ${prunedDir}`);
const pruned = await runPhase('search', config(true), prunedDir, { IACNAS_BACKEND: backend });
// The twin starts from the very same backbone.
cpSync(path.join(prunedDir, 'backbone'), path.join(fullDir, 'backbone'), { recursive: true });
console.error(`search-pruning: full-length twin in ${fullDir}`);
const full = await runPhase('search', config(false), fullDir, { IACNAS_BACKEND: backend });

const activeOps = (l: Line) => l.active.flat().reduce((s, e) => s + e.length, 0);
const hp = readHistory<Line>(path.join(prunedDir, 'search', 'history.jsonl'));
const hf = readHistory<Line>(path.join(fullDir, 'search', 'history.jsonl'));
const totalOps = activeOps(hp[0]);
const firstPrune = hp.findIndex((l) => l.prunes.length > 0);
// Epochs with every operation and architecture updates, vs epochs that ran with fewer operations.
const before = hp.filter((l, i) => l.archUpdates && (firstPrune < 0 || i <= firstPrune));
const after = hp.filter((_l, i) => i > 0 && activeOps(hp[i - 1]) < totalOps);
const fig = (ls: Line[]) => ({
  epochs: ls.map((l) => l.epoch),
  meanWallSeconds: ls.length ? mean(ls.map((l) => l.epochSeconds)) : null,
  meanCpuSeconds: ls.length ? mean(ls.map((l) => l.epochCpuSeconds)) : null,
  // Operations computed during each epoch: those left active by the epoch before.
  activeOperations: ls.map((l) => {
    const k = hp.indexOf(l);
    return k === 0 ? totalOps : activeOps(hp[k - 1]);
  }),
});
const fullArch = hf.filter((l) => l.archUpdates);
const results = {
  machine: machine(),
  backend,
  command: `scripts/with-node node test/bench/search-pruning.ts --max-epochs ${maxEpochs} --backend ${backend}`,
  config: config(true),
  pruned: {
    epochs: pruned.result.epochs,
    stoppedBy: pruned.result.stoppedBy,
    cellSearchSeconds: pruned.result.seconds,
    cellSearchCpuSeconds: hp.reduce((a, l) => a + l.epochCpuSeconds, 0),
    activeOperations: pruned.result.activeOperations,
    genotype: pruned.result.genotype,
    bestValDice: pruned.result.bestValDice,
    allOperationsEpochs: fig(before),
    prunedEpochs: fig(after),
  },
  full: {
    epochs: full.result.epochs,
    stoppedBy: full.result.stoppedBy,
    cellSearchSeconds: full.result.seconds,
    cellSearchCpuSeconds: hf.reduce((a, l) => a + l.epochCpuSeconds, 0),
    genotype: full.result.genotype,
    bestValDice: full.result.bestValDice,
    meanWallSecondsPerEpoch: mean(fullArch.map((l) => l.epochSeconds)),
    meanCpuSecondsPerEpoch: mean(fullArch.map((l) => l.epochCpuSeconds)),
  },
  speedup: (full.result.seconds ?? 0) / Math.max(1e-9, pruned.result.seconds ?? 0),
  cpuSpeedup:
    hf.reduce((a, l) => a + l.epochCpuSeconds, 0) /
    Math.max(
      1e-9,
      hp.reduce((a, l) => a + l.epochCpuSeconds, 0),
    ),
  sameGenotype: JSON.stringify(pruned.result.genotype) === JSON.stringify(full.result.genotype),
  backboneSeconds: pruned.result.backboneSeconds,
};
const out = flags.out ? path.resolve(flags.out) : path.join(repoRoot, 'test/bench/results/search-pruning.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
const f = (x: number | null | undefined, d = 2) => (x === null || x === undefined ? '-' : x.toFixed(d));
const table = `## Stability pruning vs the full-length search

\`${results.command}\` — ${results.machine.cpu}, ${results.machine.cores} cores, ${backend}; phantom 8 cases, 32x32, depth 2, 8 filters (backbone trained 20 epochs), 4 nodes, 10 operations, 4 steps/epoch, warm-up 3, window 3, threshold 1e-3.

| | epochs | stopped by | cell-search s (wall, CPU) | s/epoch (wall, CPU) all ops | s/epoch (wall, CPU) after pruning | best val Dice |
|---|---|---|---|---|---|---|
| IAC-LTH (pruned) | ${results.pruned.epochs} | ${results.pruned.stoppedBy} | ${f(results.pruned.cellSearchSeconds, 1)}, ${f(results.pruned.cellSearchCpuSeconds, 1)} | ${f(results.pruned.allOperationsEpochs.meanWallSeconds)}, ${f(results.pruned.allOperationsEpochs.meanCpuSeconds)} | ${f(results.pruned.prunedEpochs.meanWallSeconds)}, ${f(results.pruned.prunedEpochs.meanCpuSeconds)} | ${f(results.pruned.bestValDice, 4)} |
| full-length IAC | ${results.full.epochs} | ${results.full.stoppedBy} | ${f(results.full.cellSearchSeconds, 1)}, ${f(results.full.cellSearchCpuSeconds, 1)} | ${f(results.full.meanWallSecondsPerEpoch)}, ${f(results.full.meanCpuSecondsPerEpoch)} | - | ${f(results.full.bestValDice, 4)} |

Cell-search speedup ${f(results.speedup)}x wall, ${f(results.cpuSpeedup)}x CPU (backbone training, ${f(results.backboneSeconds, 1)} s, excluded); same genotype: ${results.sameGenotype ? 'yes' : 'no'}.`;
console.log(table);
