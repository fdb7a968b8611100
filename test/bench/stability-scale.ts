// Benchmark: does the stability test decide the same way at any epoch size? The same search
// (bench:nas-cost's phantom setting, one backbone, one seed) with short and long epochs, each
// with the automatic test and with a fixed threshold chosen by hand for the short epochs.
//
//   npm run bench:stability-scale [-- --settings 6@6e-3,48@6e-3,6@6e-4 --cases 160 --threshold 6e-5 --epochs 20 --smoke --keep DIR --out FILE]
//
// Each setting is <steps per epoch>@<architecture learning rate>: the first is nas-cost's,
// the second has 8 times the steps, the third the paper's learning rate.
//
// An epoch is at most one pass over the weights' half of the training patients, so the
// phantom has 160 cases here (48 steps of 8 slices in that half; nas-cost's 24 cases give 7).
// Only the search runs (no retrain): what is compared is how each test decides. Writes
// test/bench/results/stability-scale.json and the stability-scale section of BENCHMARKS.md
// (not with --smoke).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readHistory } from '../../trainer/src/training/history.ts';
import { machine, median, nasPreset, parseFlags, repoRoot, runPhase, spread, updateBenchmarksMd } from './lib.ts';

interface Line {
  epoch: number;
  jsd: number[][];
  drift?: Array<Array<number | null>>;
  archUpdates: boolean;
  prunes: { cell: number; edge: number }[];
  decisions?: number[][][];
}

interface Case {
  steps: number;
  learningRate: number;
  test: string;
  epochs: number;
  stoppedBy: string;
  cpuSeconds: number;
  /** Per-epoch divergences of all edges in the epochs of architecture training before any pruning. */
  jsdMedian: number;
  jsdRange: [number, number];
  /** Drift ratios judged at the first check. */
  driftMedian: number | null;
  firstDecisions: number[];
  prunedAtFirstCheck: number;
  edges: number;
  warnings: string[];
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const smoke = flags.get('smoke') === 'true';
  const settings = (flags.get('settings') ?? (smoke ? '2@6e-3,4@6e-3' : '6@6e-3,48@6e-3,6@6e-4')).split(',').map((x) => {
    const [steps, lr] = x.split('@').map(Number);
    if (!(steps >= 1) || !(lr > 0)) throw new Error(`--settings: <steps>@<learning rate>, e.g. 6@6e-3; got ${x}`);
    return { steps, lr };
  });
  const threshold = Number(flags.get('threshold') ?? '6e-5');
  const preset = nasPreset('phantom', smoke);
  const cases = Number(flags.get('cases') ?? (smoke ? '6' : '160'));
  const base: Record<string, unknown> = { ...preset, dataset: { ...(preset.dataset as object), cases } };
  const search = base.search as { warmupEpochs: number; stability: { window: number } };
  const maxEpochs = Number(flags.get('epochs') ?? (smoke ? '4' : '20'));
  const env = { IACNAS_BACKEND: flags.get('backend') ?? 'wasm' };
  const root = flags.get('keep') ?? mkdtempSync(path.join(os.tmpdir(), 'iacnas-bench-'));
  const out = flags.get('out') ?? (smoke ? path.join(root, 'stability-scale.json') : path.join(repoRoot, 'test/bench/results/stability-scale.json'));

  const backboneRun = path.join(root, 'backbone');
  mkdirSync(backboneRun, { recursive: true });
  await runPhase('search', { ...base, name: 'scale-backbone', search: { ...search, maxEpochs: 1, warmupEpochs: 0 } }, backboneRun, env);

  const runs: Case[] = [];
  for (const { steps: s, lr } of settings) {
    for (const test of ['automatic', `threshold ${threshold}`]) {
      const workdir = path.join(root, `steps${s}-lr${lr}-${test.startsWith('auto') ? 'auto' : 'fixed'}`);
      rmSync(workdir, { recursive: true, force: true });
      mkdirSync(workdir, { recursive: true });
      const config = {
        ...base,
        name: `scale-${s}`,
        backbone: { ...(base.backbone as object), pretrained: path.join(backboneRun, 'backbone') },
        search: {
          ...search,
          maxEpochs,
          stepsPerEpoch: s,
          architecture: { learningRate: lr },
          stability: { ...search.stability, ...(test.startsWith('auto') ? {} : { threshold }) },
        },
      };
      const r = await runPhase('search', config, workdir, env);
      const lines = readHistory<Line>(path.join(workdir, 'search/history.jsonl'));
      const firstPrune = lines.find((l) => l.prunes.length > 0)?.epoch ?? Infinity;
      const unpruned = lines.filter((l) => l.archUpdates && l.epoch <= firstPrune).flatMap((l) => l.jsd.flat());
      const firstCheck = lines.find((l) => l.epoch === search.warmupEpochs + search.stability.window);
      const judged = (firstCheck?.drift ?? []).flat().filter((d): d is number => d !== null);
      const c: Case = {
        steps: s,
        learningRate: lr,
        test,
        epochs: r.result.epochs ?? 0,
        stoppedBy: r.result.stoppedBy ?? 'unknown',
        cpuSeconds: Math.round((r.result.cpuSeconds ?? 0) * 10) / 10,
        jsdMedian: median(unpruned),
        jsdRange: [Math.min(...unpruned), Math.max(...unpruned)],
        driftMedian: judged.length ? Math.round(median(judged) * 100) / 100 : null,
        firstDecisions: (lines.at(-1)?.decisions ?? [])
          .flat()
          .filter((d) => d.length > 0)
          .map((d) => d[0]),
        prunedAtFirstCheck: firstCheck?.prunes.length ?? 0,
        edges: lines[0]?.jsd.flat().length ?? 0,
        warnings: r.result.warnings ?? [],
      };
      runs.push(c);
      console.error(
        `[${s} steps at ${lr}, ${test}] ${c.epochs} epochs (${c.stoppedBy}); divergences ${c.jsdRange.map((x) => x.toExponential(1)).join(' to ')}; first decisions ${spread(c.firstDecisions)}${c.warnings.length ? '; warned' : ''}`,
      );
    }
  }
  const result = {
    machine: machine(),
    command: `npm run bench:stability-scale -- ${process.argv.slice(2).join(' ')}`.trim(),
    maxEpochs,
    phantomCases: cases,
    cases: runs,
  };
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.error(`wrote ${out}`);
  if (!smoke) {
    const lines = [
      '## 1b. The stability test at other epoch sizes and learning rates (`stability-scale`)',
      '',
      `Machine: ${result.machine.cpu}, ${result.machine.cores} cores, Node ${result.machine.node}. Command: \`${result.command}\`. Raw figures: test/bench/results/stability-scale.json.`,
      '',
      `The phantom search of \`nas-cost\` with ${cases} cases (seed 0, one backbone, warm-up ${search.warmupEpochs}, window ${search.stability.window}, budget ${maxEpochs} epochs) with ${settings.map((x) => `${x.steps} steps per epoch at an architecture learning rate of ${x.lr}`).join(', ')}, each judged by the automatic test and by a threshold of ${threshold} (the value scaled by hand for 6 steps). Divergences: the per-epoch JS of every edge in the architecture epochs up to the first pruning; drift ratio: median at the first check; decision epochs: each edge's first pruning step, median [range].`,
      '',
      '| steps per epoch | architecture learning rate | test | per-epoch divergence median [range] | drift ratio at the first check | edges pruned at the first check | first decisions | epochs | stopped by | search CPU s | warning |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
      ...runs.map(
        (c) =>
          `| ${c.steps} | ${c.learningRate} | ${c.test} | ${c.jsdMedian.toExponential(1)} [${c.jsdRange.map((x) => x.toExponential(1)).join(', ')}] | ${c.driftMedian ?? '-'} | ${c.prunedAtFirstCheck} of ${c.edges} | ${spread(c.firstDecisions)} | ${c.epochs} | ${c.stoppedBy} | ${c.cpuSeconds} | ${c.warnings.length ? c.warnings[0].split(':')[0] : '-'} |`,
      ),
    ];
    updateBenchmarksMd('stability-scale', lines.join('\n'));
  }
  if (!flags.has('keep')) rmSync(root, { recursive: true, force: true });
}

await main();
