// Benchmark 1: IAC-LTH stability-pruned search vs the original full-length IAC search,
// with the ablations that say what the pruning buys and the criterion's sensitivity.
//
//   npm run bench:nas-cost [-- --datasets phantom,msd-hippocampus --seeds 0,1,2 --jobs 2
//                              --scales 0.25,4 --long phantom:100 --smoke --keep DIR --out FILE]
//   npm run bench:nas-cost -- --report test/bench/results/nas-cost.json   (summarise a stored run again)
//
// Per dataset, the plain U-Net backbone is trained once (its time is reported apart and
// counted in no search); then for each seed, every variant starts from that backbone with
// the same data and seed and is followed by the same retrain and evaluation:
// - lth:    IAC-LTH with the default (automatic) stability test; its retrain also trains
//           the plain U-Net with the same budget (evaluate.baseline), ablation (c);
// - full:   the full-length search (stability off) for the whole epoch budget;
// - early:  ablation (a), the full search stopped at as many epochs as lth ran, without
//           pruning (derived from the full search's history at that epoch);
// - random: ablation (b), a random genotype (seeded) retrained the same way;
// - lth-xS: the automatic test with search.stability.autoScale S (sensitivity, --scales).
// --long D:E repeats lth and full on dataset D with an epoch budget of E (how the speedup
// grows with the budget). --jobs 2 runs the datasets side by side (the wasm trainer uses
// one core; the figures to quote are CPU seconds, which sharing the machine leaves alone).
// Writes test/bench/results/nas-cost.json and the nas-cost section of BENCHMARKS.md (not
// with --smoke, which runs the smallest setting into a temporary directory for the test
// that keeps this command working).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mixSeed, mulberry32 } from '../../trainer/src/util/random.ts';
import { readHistory } from '../../trainer/src/training/history.ts';
import { machine, mean, median, nasPreset as preset, parseFlags, repoRoot, runPhase, spread, updateBenchmarksMd } from './lib.ts';

/** One search variant of one seed, searched (or not), retrained and evaluated. */
interface Run {
  seed: number;
  /** Search epochs (0: no search, e.g. the random genotype). */
  epochs: number;
  /** Wall and CPU seconds of the search process (its backbone loading included, its training excluded). */
  searchSeconds: number;
  cpuSeconds: number;
  stoppedBy: string;
  meanDice: number;
  dicePerClass: Record<string, number>;
  retrainSeconds: number;
  /** lth variants: epochs of each edge's first pruning step, and of its last one for edges pruned to one operation. */
  firstDecisions?: number[];
  settledDecisions?: number[];
  /** lth: the plain U-Net trained with the same retrain budget (evaluate.baseline). */
  baselineMeanDice?: number;
}

interface DatasetRun {
  name: string;
  seeds: number[];
  config: Record<string, unknown>;
  backboneSeconds: number;
  runs: Record<string, Run[]>;
  /** The longer budget, when --long names this dataset. */
  long?: { maxEpochs: number; runs: Record<string, Run[]> };
}

interface HistoryLine {
  epoch: number;
  epochCpuSeconds: number;
  decisions?: number[][][];
}

/** A random genotype of the search space: per node two distinct inputs, each with a random operation other than none. */
function randomGenotype(cells: number, nodes: number, operations: readonly string[], seed: number) {
  const random = mulberry32(mixSeed(seed, 'random-genotype'));
  const ops = operations.filter((o) => o !== 'none');
  return {
    cells: Array.from({ length: cells }, () => ({
      nodes: Array.from({ length: nodes }, (_, node) => {
        const inputs = Array.from({ length: node + 2 }, (_, i) => i);
        const first = inputs.splice(Math.floor(random() * inputs.length), 1)[0];
        const second = inputs[Math.floor(random() * inputs.length)];
        return [first, second].map((input) => ({ input, op: ops[Math.floor(random() * ops.length)] }));
      }),
    })),
  };
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

async function benchDataset(
  name: string,
  seeds: number[],
  scales: number[],
  longEpochs: number | undefined,
  smoke: boolean,
  root: string,
  env: NodeJS.ProcessEnv,
): Promise<DatasetRun> {
  const base = preset(name, smoke);
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  const log = (m: string) => console.error(`[${name}] ${m}`);

  // The shared backbone: a one-epoch search trains it (the search's own figures are discarded).
  const backboneRun = path.join(dir, 'backbone');
  mkdirSync(backboneRun, { recursive: true });
  const bb = await runPhase(
    'search',
    { ...base, name: `${name}-backbone`, search: { ...(base.search as object), maxEpochs: 1, warmupEpochs: 0 } },
    backboneRun,
    env,
  );
  const backboneSeconds = bb.result.backboneSeconds ?? bb.wallSeconds;
  log(`backbone trained in ${backboneSeconds.toFixed(1)} s`);
  const searchBase = base.search as { stability: object; maxEpochs: number };

  const configFor = (variant: string, seed: number, stability: object, maxEpochs = searchBase.maxEpochs, baseline = false) => ({
    ...base,
    name: `${name}-${variant}-${seed}`,
    seed,
    // Every search starts from the one trained backbone (loaded as pretrained weights).
    backbone: { ...(base.backbone as object), pretrained: path.join(backboneRun, 'backbone') },
    search: { ...searchBase, maxEpochs, stability: { ...searchBase.stability, ...stability } },
    ...(baseline && { evaluate: { baseline: true } }),
  });
  const fresh = (variant: string, seed: number) => {
    const workdir = path.join(dir, `${variant}-seed${seed}`);
    rmSync(workdir, { recursive: true, force: true });
    mkdirSync(workdir, { recursive: true });
    return workdir;
  };
  /** Retrain and evaluate what prune (or the caller) left in workdir/genotype.json. */
  const finish = async (config: object, workdir: string, search: Omit<Run, 'meanDice' | 'dicePerClass' | 'retrainSeconds'>, variant: string): Promise<Run> => {
    const retrain = await runPhase('retrain', config, workdir, env);
    const evaluate = await runPhase('evaluate', config, workdir, env);
    const run: Run = {
      ...search,
      meanDice: round(evaluate.result.meanDice ?? 0, 4),
      dicePerClass: evaluate.result.dicePerClass ?? {},
      retrainSeconds: round(retrain.result.seconds ?? retrain.wallSeconds),
      ...(evaluate.result.baselineMeanDice !== undefined && { baselineMeanDice: round(evaluate.result.baselineMeanDice, 4) }),
    };
    log(`seed ${run.seed} ${variant}: ${run.epochs} search epochs (${run.stoppedBy}), ${run.cpuSeconds} CPU s, mean Dice ${run.meanDice}`);
    return run;
  };
  const searched = async (variant: string, seed: number, stability: object, maxEpochs?: number, baseline = false): Promise<{ run: Run; workdir: string }> => {
    const workdir = fresh(variant, seed);
    const config = configFor(variant, seed, stability, maxEpochs, baseline);
    const search = await runPhase('search', config, workdir, env);
    await runPhase('prune', config, workdir, env);
    const last = readHistory<HistoryLine>(path.join(workdir, 'search/history.jsonl')).at(-1);
    const decisions = (last?.decisions ?? []).flat();
    const run = await finish(
      config,
      workdir,
      {
        seed,
        epochs: search.result.epochs ?? 0,
        searchSeconds: round(search.result.seconds ?? search.wallSeconds),
        cpuSeconds: round(search.result.cpuSeconds ?? 0),
        stoppedBy: search.result.stoppedBy ?? 'unknown',
        ...((stability as { enabled?: boolean }).enabled !== false && {
          firstDecisions: decisions.filter((d) => d.length > 0).map((d) => d[0]),
          settledDecisions: decisions.filter((d) => d.length > 1).map((d) => d.at(-1)!),
        }),
      },
      variant,
    );
    return { run, workdir };
  };

  const runs: Record<string, Run[]> = { lth: [], full: [], early: [], random: [], ...Object.fromEntries(scales.map((s) => [`lth-x${s}`, []])) };
  for (const seed of seeds) {
    const lth = await searched('lth', seed, {}, undefined, true);
    runs.lth.push(lth.run);
    const full = await searched('full', seed, { enabled: false });
    runs.full.push(full.run);

    // (a) The full search stopped where IAC-LTH stopped: its architecture at that epoch, unpruned.
    const early = fresh('early', seed);
    const earlyConfig = configFor('early', seed, { enabled: false });
    const history = readHistory<HistoryLine>(path.join(full.workdir, 'search/history.jsonl'));
    const upTo = history.slice(0, lth.run.epochs);
    const cut = path.join(early, 'history-cut.jsonl');
    writeFileSync(cut, upTo.map((h) => `${JSON.stringify(h)}\n`).join(''));
    await runPhase('prune', earlyConfig, early, env, ['--history', cut]);
    // Its cost: the full search's first epochs plus what the full search spent outside its epochs.
    const allEpochs = history.reduce((s, h) => s + h.epochCpuSeconds, 0);
    const overhead = Math.max(0, full.run.cpuSeconds - allEpochs);
    runs.early.push(
      await finish(
        earlyConfig,
        early,
        {
          seed,
          epochs: upTo.length,
          searchSeconds: round((full.run.searchSeconds * upTo.length) / Math.max(1, full.run.epochs)),
          cpuSeconds: round(overhead + upTo.reduce((s, h) => s + h.epochCpuSeconds, 0)),
          stoppedBy: `stopped at epoch ${upTo.length}`,
        },
        'early',
      ),
    );

    // (b) A random genotype of the same space.
    const random = fresh('random', seed);
    const randomConfig = configFor('random', seed, { enabled: false });
    const found = JSON.parse(readFileSync(path.join(lth.workdir, 'genotype.json'), 'utf8')) as {
      genotype: { cells: unknown[] };
      operations: string[];
      nodes: number;
    };
    writeFileSync(
      path.join(random, 'genotype.json'),
      `${JSON.stringify(
        {
          genotype: randomGenotype(found.genotype.cells.length, found.nodes, found.operations, seed),
          operations: found.operations,
          nodes: found.nodes,
          source: `random (seed ${seed})`,
          epoch: 0,
          stoppedBy: null,
          time: new Date().toISOString(),
        },
        null,
        2,
      )}\n`,
    );
    runs.random.push(await finish(randomConfig, random, { seed, epochs: 0, searchSeconds: 0, cpuSeconds: 0, stoppedBy: 'none' }, 'random'));

    // Sensitivity: the automatic test scaled.
    for (const s of scales) runs[`lth-x${s}`].push((await searched(`lth-x${s}`, seed, { autoScale: s })).run);
  }

  let long: DatasetRun['long'];
  if (longEpochs) {
    const longRuns: Record<string, Run[]> = { lth: [], full: [] };
    for (const seed of seeds) {
      longRuns.lth.push((await searched(`long${longEpochs}-lth`, seed, {}, longEpochs)).run);
      longRuns.full.push((await searched(`long${longEpochs}-full`, seed, { enabled: false }, longEpochs)).run);
    }
    long = { maxEpochs: longEpochs, runs: longRuns };
  }
  return { name, seeds, config: base, backboneSeconds: round(backboneSeconds), runs, ...(long && { long }) };
}

const pick = (runs: Run[], k: keyof Run) => runs.map((r) => r[k] as number);

/** IAC-LTH (or a variant) against the full search of the same seeds: speedups and the Dice difference. */
function versus(lth: Run[], full: Run[]) {
  const cpu = lth.map((r, i) => full[i].cpuSeconds / r.cpuSeconds);
  const wall = lth.map((r, i) => full[i].searchSeconds / r.searchSeconds);
  const delta = lth.map((r, i) => (r.meanDice - full[i].meanDice) * 100);
  return {
    cpuSpeedups: cpu.map((x) => round(x, 2)),
    cpuSpeedupMedian: round(median(cpu), 2),
    wallSpeedupMedian: round(median(wall), 2),
    diceDeltaMean: round(mean(delta), 2),
  };
}

function summarize(d: DatasetRun) {
  return {
    ...d,
    lthVsFull: versus(d.runs.lth, d.runs.full),
    variants: Object.fromEntries(
      Object.entries(d.runs).map(([k, runs]) => [k, { meanDice: round(mean(pick(runs, 'meanDice')), 4), cpuSeconds: round(mean(pick(runs, 'cpuSeconds'))) }]),
    ),
    ...(d.long && { longVsFull: versus(d.long.runs.lth, d.long.runs.full) }),
  };
}

function markdown(result: { machine: ReturnType<typeof machine>; datasets: ReturnType<typeof summarize>[] }, command: string): string {
  const lines = [
    '## 1. Stability pruning vs the full-length search (`nas-cost`)',
    '',
    `Machine: ${result.machine.cpu}, ${result.machine.cores} cores, ${result.machine.memoryGiB} GiB, Node ${result.machine.node}. Command: \`${command}\`. Raw figures: test/bench/results/nas-cost.json.`,
    '',
    "IAC-LTH with the default (automatic) stability test against the full-length search, per seed. CPU seconds of the search process; decision epochs: the epoch of each edge's first pruning step, and of its last for edges pruned to one operation, median [range] over the edges of all seeds.",
    '',
    '| dataset | seeds | LTH epochs | full epochs | LTH CPU s | full CPU s | CPU speedup median [per seed] | wall speedup median | LTH mean Dice | full mean Dice | Dice delta (points) | first decisions | settled |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const d of result.datasets) {
    const v = d.lthVsFull;
    const l = d.runs.lth;
    const f = d.runs.full;
    lines.push(
      `| ${d.name} | ${d.seeds.join(', ')} | ${pick(l, 'epochs').join(', ')} | ${pick(f, 'epochs').join(', ')} | ${pick(l, 'cpuSeconds').join(', ')} | ${pick(f, 'cpuSeconds').join(', ')} | **${v.cpuSpeedupMedian}x** [${v.cpuSpeedups.join(', ')}] | ${v.wallSpeedupMedian}x | ${pick(l, 'meanDice').join(', ')} | ${pick(f, 'meanDice').join(', ')} | ${v.diceDeltaMean} | ${spread(l.flatMap((r) => r.firstDecisions ?? []))} | ${spread(l.flatMap((r) => r.settledDecisions ?? []))} |`,
    );
  }
  lines.push(
    '',
    'Ablations: what each alternative costs in search CPU seconds and gives in test Dice, per seed (mean in bold), beside IAC-LTH. The U-Net row is the retrain of the plain U-Net from the same backbone with the same budget (`evaluate.baseline`).',
    '',
    '| dataset | variant | search epochs | search CPU s | mean Dice per seed | mean Dice | vs IAC-LTH (points) |',
    '|---|---|---|---|---|---|---|',
  );
  for (const d of result.datasets) {
    const lthMean = mean(pick(d.runs.lth, 'meanDice'));
    const row = (label: string, epochs: string, cpu: string, dice: number[]) =>
      lines.push(
        `| ${d.name} | ${label} | ${epochs} | ${cpu} | ${dice.join(', ')} | **${round(mean(dice), 4)}** | ${round((mean(dice) - lthMean) * 100, 2)} |`,
      );
    const searchRow = (label: string, runs: Run[]) => row(label, pick(runs, 'epochs').join(', '), pick(runs, 'cpuSeconds').join(', '), pick(runs, 'meanDice'));
    searchRow('IAC-LTH (automatic test)', d.runs.lth);
    searchRow(`full search, ${pick(d.runs.full, 'epochs')[0]} epochs`, d.runs.full);
    searchRow('(a) full search stopped at the IAC-LTH epoch, no pruning', d.runs.early);
    row('(b) random genotype', '-', '0', pick(d.runs.random, 'meanDice'));
    const baseline = d.runs.lth.map((r) => r.baselineMeanDice).filter((x): x is number => x !== undefined);
    if (baseline.length) row('(c) plain U-Net, same retrain budget', '-', '0', baseline);
  }
  const scales = result.datasets.flatMap((d) =>
    Object.keys(d.runs)
      .filter((k) => k.startsWith('lth-x'))
      .map((k) => ({ d, k })),
  );
  if (scales.length) {
    lines.push(
      '',
      'Sensitivity of the automatic test (`search.stability.autoScale`; 1 is the default): epochs, CPU speedup over the full search and Dice, per seed.',
      '',
      '| dataset | autoScale | epochs | stopped by | CPU speedup median [per seed] | mean Dice per seed | Dice delta vs full (points) |',
      '|---|---|---|---|---|---|---|',
    );
    for (const d of result.datasets) {
      const keys = ['lth', ...Object.keys(d.runs).filter((k) => k.startsWith('lth-x'))].sort((a, b) => scaleOf(a) - scaleOf(b));
      for (const k of keys) {
        const runs = d.runs[k];
        const v = versus(runs, d.runs.full);
        lines.push(
          `| ${d.name} | ${scaleOf(k)} | ${pick(runs, 'epochs').join(', ')} | ${[...new Set(runs.map((r) => r.stoppedBy))].join(', ')} | ${v.cpuSpeedupMedian}x [${v.cpuSpeedups.join(', ')}] | ${pick(runs, 'meanDice').join(', ')} | ${v.diceDeltaMean} |`,
        );
      }
    }
  }
  const longs = result.datasets.filter((d) => d.long);
  if (longs.length) {
    lines.push(
      '',
      'A longer budget: the same searches with a larger `search.maxEpochs` (same warm-up, window and steps per epoch); the first row of each dataset is the preset budget above.',
      '',
      '| dataset | budget | LTH epochs | full epochs | LTH CPU s | full CPU s | CPU speedup median [per seed] | LTH mean Dice | full mean Dice | Dice delta (points) |',
      '|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const d of longs) {
      for (const [budget, runs] of [
        [(d.config.search as { maxEpochs: number }).maxEpochs, d.runs],
        [d.long!.maxEpochs, d.long!.runs],
      ] as const) {
        const v = versus(runs.lth, runs.full);
        lines.push(
          `| ${d.name} | ${budget} | ${pick(runs.lth, 'epochs').join(', ')} | ${pick(runs.full, 'epochs').join(', ')} | ${pick(runs.lth, 'cpuSeconds').join(', ')} | ${pick(runs.full, 'cpuSeconds').join(', ')} | **${v.cpuSpeedupMedian}x** [${v.cpuSpeedups.join(', ')}] | ${pick(runs.lth, 'meanDice').join(', ')} | ${pick(runs.full, 'meanDice').join(', ')} | ${v.diceDeltaMean} |`,
        );
      }
    }
  }
  return lines.join('\n');
}

function scaleOf(variant: string): number {
  return variant === 'lth' ? 1 : Number(variant.slice('lth-x'.length));
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
  const scales = (flags.get('scales') ?? (smoke ? '4' : '0.25,4')).split(',').filter(Boolean).map(Number);
  if (scales.some((s) => !(s > 0))) throw new Error(`--scales: positive numbers, e.g. 0.25,4; got ${flags.get('scales')}`);
  const [longName, longEpochs] = (flags.get('long') ?? (smoke ? 'phantom:6' : 'phantom:100')).split(':');
  const jobs = Number(flags.get('jobs') ?? '1');
  // The figures are of one backend: wasm unless --backend says otherwise.
  const env = { IACNAS_BACKEND: flags.get('backend') ?? 'wasm' };
  const root = flags.get('keep') ?? mkdtempSync(path.join(os.tmpdir(), 'iacnas-bench-'));
  const out = flags.get('out') ?? (smoke ? path.join(root, 'nas-cost.json') : path.join(repoRoot, 'test/bench/results/nas-cost.json'));
  const command = `npm run bench:nas-cost -- ${process.argv.slice(2).join(' ')}`.trim();
  const started = new Date().toISOString();
  const queue = [...datasets];
  const done: DatasetRun[] = [];
  await Promise.all(
    Array.from({ length: Math.max(1, jobs) }, async () => {
      for (let d = queue.shift(); d; d = queue.shift()) {
        done.push(await benchDataset(d, seeds, scales, d === longName && longEpochs ? Number(longEpochs) : undefined, smoke, root, env));
      }
    }),
  );
  done.sort((a, b) => datasets.indexOf(a.name) - datasets.indexOf(b.name));
  const result = { machine: machine(), command, started, finished: new Date().toISOString(), backend: env.IACNAS_BACKEND, datasets: done.map(summarize) };
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.error(`wrote ${out}`);
  if (!smoke) updateBenchmarksMd('nas-cost', markdown(result, command));
  if (!flags.has('keep') && existsSync(root)) rmSync(root, { recursive: true, force: true });
}

await main();
