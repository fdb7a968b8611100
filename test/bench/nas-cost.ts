// Benchmark 1: IAC-LTH stability-pruned search vs the original full-length IAC search.
//
//   npm run bench:nas-cost [-- --datasets phantom,msd-hippocampus --seeds 0,1,2 --smoke --keep DIR --out FILE]
//   npm run bench:nas-cost -- --report test/bench/results/nas-cost.json   (summarise a stored run again)
//
// Per dataset, the plain U-Net backbone is trained once (its time is reported apart
// and counted in neither search); then for each seed both searches start from that
// backbone with the same data, seed and epoch budget, and each is followed by the
// same prune, retrain and evaluate. Writes test/bench/results/nas-cost.json and the
// nas-cost section of BENCHMARKS.md (not with --smoke, which runs the smallest
// setting into a temporary directory for the test that keeps this command working).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { machine, mean, median, parseFlags, repoRoot, runPhase, updateBenchmarksMd } from './lib.ts';

type Mode = 'lth' | 'full';

interface ModeFigures {
  searchSeconds: number[];
  epochs: number[];
  cpuSeconds: number[];
  meanDice: number[];
  dicePerClass: Array<Record<string, number>>;
  retrainSeconds: number[];
  stoppedBy: string[];
}

/**
 * The search definition of each dataset; `smoke` is the smallest setting that still runs every step.
 *
 * The schedule is the paper's scaled to a 40-epoch budget (200 -> 40 epochs, warm-up 15 -> 3,
 * window 5 -> 2). The per-epoch divergence scales with the square of how far the alphas move in
 * an epoch, i.e. with (architecture steps per epoch x architecture learning rate)^2: here 6 steps
 * at 6e-3 against roughly 240 steps at 6e-4 on a GPU, a quarter of the movement, so the
 * threshold is 1e-3 / 16, about 6e-5 (see BENCHMARKS.md).
 */
function preset(dataset: string, smoke: boolean): Record<string, unknown> {
  const search = {
    maxEpochs: smoke ? 4 : 40,
    warmupEpochs: smoke ? 1 : 3,
    stepsPerEpoch: smoke ? 2 : 6,
    batchSize: 8,
    nodes: smoke ? 2 : 4,
    architecture: { learningRate: 6e-3 },
    stability: { window: smoke ? 1 : 2, threshold: 6e-5, patience: smoke ? 2 : 10 },
  };
  const retrain = { epochs: smoke ? 1 : 20, stepsPerEpoch: smoke ? 2 : 16, earlyStoppingPatience: 6 };
  const backbone = { depth: 2, baseFilters: smoke ? 4 : 8, pretrainEpochs: smoke ? 1 : 30, learningRate: 3e-3 };
  if (dataset === 'phantom') {
    return { dataset: { format: 'phantom', cases: smoke ? 6 : 24, sliceSize: smoke ? 16 : 32 }, backbone, search, retrain };
  }
  if (dataset === 'msd-hippocampus') {
    return {
      dataset: { format: 'msd', path: path.resolve(repoRoot, '../shared/data/msd-hippocampus'), cases: smoke ? 6 : 40, sliceSize: smoke ? 16 : 32 },
      backbone,
      search,
      retrain,
    };
  }
  throw new Error(`--datasets: unknown dataset '${dataset}' (known: phantom, msd-hippocampus)`);
}

async function benchDataset(name: string, seeds: number[], smoke: boolean, root: string) {
  const base = preset(name, smoke);
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });

  // The shared backbone: a one-epoch search trains it (the search's own figures are discarded).
  const backboneRun = path.join(dir, 'backbone');
  mkdirSync(backboneRun, { recursive: true });
  const bb = await runPhase('search', { ...base, name: `${name}-backbone`, search: { ...(base.search as object), maxEpochs: 1, warmupEpochs: 0 } }, backboneRun);
  const backboneSeconds = bb.result.backboneSeconds ?? bb.wallSeconds;
  console.error(`[${name}] backbone trained in ${backboneSeconds.toFixed(1)} s`);

  const figures: Record<Mode, ModeFigures> = {
    lth: { searchSeconds: [], epochs: [], cpuSeconds: [], meanDice: [], dicePerClass: [], retrainSeconds: [], stoppedBy: [] },
    full: { searchSeconds: [], epochs: [], cpuSeconds: [], meanDice: [], dicePerClass: [], retrainSeconds: [], stoppedBy: [] },
  };
  for (const seed of seeds) {
    for (const mode of ['lth', 'full'] as const) {
      const workdir = path.join(dir, `${mode}-seed${seed}`);
      rmSync(workdir, { recursive: true, force: true });
      mkdirSync(workdir, { recursive: true });
      const searchCfg = base.search as { stability: object };
      // Every search starts from the one trained backbone (loaded as pretrained weights).
      const config = {
        ...base,
        name: `${name}-${mode}-${seed}`,
        seed,
        backbone: { ...(base.backbone as object), pretrained: path.join(backboneRun, 'backbone') },
        search: { ...searchCfg, stability: { ...searchCfg.stability, enabled: mode === 'lth' } },
      };
      const search = await runPhase('search', config, workdir);
      await runPhase('prune', config, workdir);
      const retrain = await runPhase('retrain', config, workdir);
      const evaluate = await runPhase('evaluate', config, workdir);
      const f = figures[mode];
      f.searchSeconds.push(round(search.result.seconds ?? search.wallSeconds));
      f.epochs.push(search.result.epochs ?? 0);
      f.cpuSeconds.push(round(search.result.cpuSeconds ?? 0));
      f.meanDice.push(round(evaluate.result.meanDice ?? 0, 4));
      f.dicePerClass.push(evaluate.result.dicePerClass ?? {});
      f.retrainSeconds.push(round(retrain.result.seconds ?? retrain.wallSeconds));
      f.stoppedBy.push(search.result.stoppedBy ?? 'unknown');
      console.error(
        `[${name}] seed ${seed} ${mode}: search ${f.searchSeconds.at(-1)} s, ${f.epochs.at(-1)} epochs (${f.stoppedBy.at(-1)}), mean Dice ${f.meanDice.at(-1)}`,
      );
    }
  }
  return summarize({ name, seeds, config: base, backboneSeconds: round(backboneSeconds), lth: figures.lth, full: figures.full });
}

interface DatasetRun {
  name: string;
  seeds: number[];
  config: Record<string, unknown>;
  backboneSeconds: number;
  lth: ModeFigures;
  full: ModeFigures;
}

/** Speedups (wall and CPU seconds of the cell search) and the Dice difference, per seed and summarised. */
function summarize(d: DatasetRun) {
  const ratio = (full: number[], lth: number[]) => d.seeds.map((_, i) => full[i] / lth[i]);
  const speedups = ratio(d.full.searchSeconds, d.lth.searchSeconds);
  const cpuSpeedups = ratio(d.full.cpuSeconds, d.lth.cpuSeconds);
  const deltas = d.seeds.map((_, i) => (d.lth.meanDice[i] - d.full.meanDice[i]) * 100);
  return {
    ...d,
    speedups: speedups.map((x) => round(x, 2)),
    speedupMedian: round(median(speedups), 2),
    speedupRange: [round(Math.min(...speedups), 2), round(Math.max(...speedups), 2)],
    cpuSpeedups: cpuSpeedups.map((x) => round(x, 2)),
    cpuSpeedupMedian: round(median(cpuSpeedups), 2),
    epochRatioMedian: round(median(ratio(d.full.epochs, d.lth.epochs)), 2),
    diceDeltaMean: round(mean(deltas), 2),
  };
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function markdown(result: { machine: ReturnType<typeof machine>; datasets: ReturnType<typeof summarize>[] }, command: string): string {
  const lines = [
    '## 1. Stability pruning vs the full-length search (`nas-cost`)',
    '',
    `Machine: ${result.machine.cpu}, ${result.machine.cores} cores, ${result.machine.memoryGiB} GiB, Node ${result.machine.node}. Command: \`${command}\`. Raw figures: test/bench/results/nas-cost.json.`,
    '',
    '| dataset | seeds | backbone s | LTH search s | full search s | LTH epochs | full epochs | wall speedup median [min, max] | CPU speedup median [per seed] | LTH mean Dice | full mean Dice | Dice delta (points) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const d of result.datasets) {
    lines.push(
      `| ${d.name} | ${d.seeds.join(', ')} | ${d.backboneSeconds} | ${d.lth.searchSeconds.join(', ')} | ${d.full.searchSeconds.join(', ')} | ${d.lth.epochs.join(', ')} | ${d.full.epochs.join(', ')} | ${d.speedupMedian}x [${d.speedupRange.join(', ')}] | ${d.cpuSpeedupMedian}x [${d.cpuSpeedups.join(', ')}] | ${d.lth.meanDice.join(', ')} | ${d.full.meanDice.join(', ')} | ${d.diceDeltaMean} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const report = flags.get('report');
  if (report) {
    // Summarise a stored result again (and rewrite its BENCHMARKS.md section) without rerunning it.
    const stored = JSON.parse(readFileSync(report, 'utf8')) as { machine: ReturnType<typeof machine>; command?: string; datasets: DatasetRun[] };
    const result = { ...stored, datasets: stored.datasets.map(summarize) };
    writeFileSync(report, `${JSON.stringify(result, null, 2)}\n`);
    updateBenchmarksMd('nas-cost', markdown(result, result.command ?? 'npm run bench:nas-cost'));
    return;
  }
  const smoke = flags.get('smoke') === 'true';
  const datasets = (flags.get('datasets') ?? (smoke ? 'phantom' : 'phantom,msd-hippocampus')).split(',');
  const seeds = (flags.get('seeds') ?? (smoke ? '0' : '0,1,2')).split(',').map(Number);
  const root = flags.get('keep') ?? mkdtempSync(path.join(os.tmpdir(), 'iacnas-bench-'));
  const out = flags.get('out') ?? (smoke ? path.join(root, 'nas-cost.json') : path.join(repoRoot, 'test/bench/results/nas-cost.json'));
  const command = `npm run bench:nas-cost -- ${process.argv.slice(2).join(' ')}`.trim();
  const result = { machine: machine(), command, datasets: [] as ReturnType<typeof summarize>[] };
  for (const d of datasets) result.datasets.push(await benchDataset(d, seeds, smoke, root));
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.error(`wrote ${out}`);
  if (!smoke) updateBenchmarksMd('nas-cost', markdown(result, command));
  if (!flags.has('keep')) rmSync(root, { recursive: true, force: true });
}

await main();
