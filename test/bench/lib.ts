// Shared pieces of the benchmark commands: running trainer phases as child processes
// (exactly as a pod or `iacnas run` does), the machine description, and updating
// the matching section of BENCHMARKS.md, and re-running a benchmark with TensorFlow's
// thread pools set.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PhaseResult } from '../../contract/src/index.ts';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const iacnas = path.join(repoRoot, 'bin/iacnas.ts');

export function machine(): { cpu: string; cores: number; memoryGiB: number; node: string; platform: string } {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.platform()}-${os.arch()}`,
  };
}

export interface PhaseRun {
  result: PhaseResult;
  wallSeconds: number;
}

/** Runs `iacnas trainer <phase>` and returns its PhaseResult; stderr goes to <workdir>/<phase>.log. */
export async function runPhase(
  phase: 'search' | 'prune' | 'retrain' | 'evaluate',
  config: unknown,
  workdir: string,
  env: NodeJS.ProcessEnv = {},
  extraArgs: readonly string[] = [],
): Promise<PhaseRun> {
  const resultFile = path.join(workdir, `${phase}.result.json`);
  const log = createWriteStream(path.join(workdir, `${phase}.log`));
  const args = [iacnas, 'trainer', phase, '--workdir', workdir, '--config-json', JSON.stringify(config), '--result-file', resultFile, ...extraArgs];
  const started = performance.now();
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
    child.stderr.pipe(log);
    child.on('error', reject);
    child.on('close', (c) => resolve(c ?? 1));
  });
  const wallSeconds = (performance.now() - started) / 1000;
  if (code !== 0 || !existsSync(resultFile)) {
    throw new Error(`trainer ${phase} in ${workdir} exited with ${code}; see ${path.join(workdir, `${phase}.log`)}`);
  }
  return { result: PhaseResult.parse(JSON.parse(readFileSync(resultFile, 'utf8'))), wallSeconds };
}

/** Replaces the text between <!-- name:begin --> and <!-- name:end --> in BENCHMARKS.md. */
export function updateBenchmarksMd(name: string, body: string): void {
  const file = path.join(repoRoot, 'BENCHMARKS.md');
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const block = `${begin}\n${body.trim()}\n${end}`;
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  const next = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** `median [min-max]` of epochs or counts, '-' when there are none. */
export function spread(xs: readonly number[]): string {
  return xs.length ? `${median(xs)} [${Math.min(...xs)}-${Math.max(...xs)}]` : '-';
}

export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function parseFlags(argv: string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const eq = a.indexOf('=');
    if (eq > 0) flags.set(a.slice(2, eq), a.slice(eq + 1));
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags.set(a.slice(2), argv[++i]);
    else flags.set(a.slice(2), 'true');
  }
  return flags;
}

/**
 * Runs `script` again in a child process with TensorFlow's intra-op and inter-op pools
 * set to `threads` (TensorFlow reads them once, when it starts) and returns the JSON the
 * child writes to the file given after `--out`.
 */
export function runWithTfThreads<T>(script: string, args: readonly string[], threads: string): T {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-tf-threads-'));
  try {
    const out = path.join(dir, 'out.json');
    execFileSync(process.execPath, [script, ...args, '--out', out], {
      env: { ...process.env, TF_NUM_INTRAOP_THREADS: threads, TF_NUM_INTEROP_THREADS: threads },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    return JSON.parse(readFileSync(out, 'utf8')) as T;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The search definition of each dataset of `bench:nas-cost` (and `bench:stability-scale`); `smoke`
 * is the smallest setting that still runs every step.
 *
 * The schedule is the paper's scaled to a 40-epoch budget (200 -> 40 epochs, warm-up 15 -> 3,
 * window 5 -> 2), with the architecture learning rate at 6e-3 for epochs of 6 steps. The
 * stability test is the trainer's default (automatic): no threshold to choose.
 */
export function nasPreset(dataset: string, smoke: boolean): Record<string, unknown> {
  const search = {
    maxEpochs: smoke ? 4 : 40,
    warmupEpochs: smoke ? 1 : 3,
    stepsPerEpoch: smoke ? 2 : 6,
    batchSize: 8,
    nodes: smoke ? 2 : 4,
    architecture: { learningRate: 6e-3 },
    stability: { window: smoke ? 1 : 2, patience: smoke ? 2 : 10 },
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
