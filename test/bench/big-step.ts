// A search step of the full supernet at a size the wasm heap cannot hold: depth 3,
// base 16, 4 nodes, K=4, all 10 operations, 96x96 slices, batch 8 (the defaults).
// Runs the trainer's own step (search.ts: a first-order architecture step with Adam,
// then a weights step with momentum SGD on the cell weights, in one tidy) on the
// chosen backend and prints, per step, wall and CPU milliseconds, the peak RSS of
// the step, and the tensor peak of one profiled step, beside the memory estimate
// the trainer checks before training (model/memory.ts). Then asks the memory check
// on the backend that ran and on the other one (wasm <-> tensorflow), and prints
// what each says.
//
//   scripts/with-node node test/bench/big-step.ts [--backend tensorflow|wasm|cpu] [--size 96] [--batch 8] [--steps 2]
//       [--k 4] [--depth 3] [--base 16] [--cells supernet|none] [--check-only] [--out file.json]
//
// --cells none measures a plain U-Net's training step (Adam on every weight) instead.
//
// On wasm the check refuses this size and the steps are not run (they would end in
// "memory access out of bounds"); --force runs them anyway.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseBackendOverride, type BackendChoice } from '../../trainer/src/backend/index.ts';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import type { NetworkOptions } from '../../trainer/src/model/api.ts';
import { diceCrossEntropyLoss } from '../../trainer/src/model/loss.ts';
import { assertFitsInMemory, estimateTrainingMemory, memoryLimit } from '../../trainer/src/model/memory.ts';
import { createNetwork } from '../../trainer/src/model/network.ts';
import { gradients, namedVariables } from '../../trainer/src/training/common.ts';
import { benchNetworkOptions, CLASSES, peakRssBytes, randomBatches } from './step.ts';
import { Adam, SgdMomentum, type NamedVariable, type Optimizer } from '../../trainer/src/training/optimizers.ts';

const args = process.argv.slice(2);
const arg = (name: string, fallback: string): string => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const backend: BackendChoice = parseBackendOverride(arg('--backend', process.env.IACNAS_BACKEND || 'tensorflow'))!;
const SIZE = Number(arg('--size', '96'));
const BATCH = Number(arg('--batch', '8'));
const STEPS = Number(arg('--steps', '2'));
const K = Number(arg('--k', '4'));
const DEPTH = Number(arg('--depth', '3'));
const BASE = Number(arg('--base', '16'));
/** 'none': a plain U-Net's training step (Adam on every weight, as backbone.ts and retrain.ts) instead. */
const CELLS = arg('--cells', 'supernet') as 'supernet' | 'none';

const options: NetworkOptions = benchNetworkOptions({ depth: DEPTH, base: BASE, k: K, cells: CELLS });

const MiB = 2 ** 20;
const mib = (bytes: number) => Math.round(bytes / MiB);
/** Peak resident memory since the last reset (Linux: VmHWM). */
const peakRss = peakRssBytes;
/** Resets the peak to the current RSS (Linux >= 4.0); false where not allowed. */
function resetPeakRss(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

/** What the check says on the backend that runs now: null when it accepts. */
async function check(): Promise<{ backend: string; limitMiB: number | null; limit: string; estimateMiB: number; refusal: string | null }> {
  const limit = memoryLimit();
  try {
    const e = await assertFitsInMemory(options, BATCH, SIZE);
    return {
      backend: limit.backend,
      limitMiB: limit.bytes === undefined ? null : mib(limit.bytes),
      limit: limit.description,
      estimateMiB: mib(e.bytes),
      refusal: null,
    };
  } catch (err) {
    const e = await estimateTrainingMemory(options, BATCH, SIZE);
    return {
      backend: limit.backend,
      limitMiB: limit.bytes === undefined ? null : mib(limit.bytes),
      limit: limit.description,
      estimateMiB: mib(e.bytes),
      refusal: (err as Error).message,
    };
  }
}

await initBackend({ backend, quiet: false });
const mine = await check();
console.error(
  `memory check on ${mine.backend}: ${mine.refusal ?? `accepted (estimate ${mine.estimateMiB} MiB, limit ${mine.limitMiB ?? 'none'} MiB: ${mine.limit})`}`,
);
const estimate = await estimateTrainingMemory(options, BATCH, SIZE);

interface StepFigure {
  step: number;
  wallMs: number;
  cpuMs: number;
  peakRssMiB: number;
  /** tf.profile's peak of live tensors during the step (profiled steps only). */
  tensorPeakMiB?: number;
}
const steps: StepFigure[] = [];
let before: { rssMiB: number; tensorMiB: number } | undefined;
let rssReset = false;
if (!args.includes('--check-only') && (mine.refusal === null || args.includes('--force'))) {
  const net = createNetwork(options);
  const arch = net.arch;
  const weightVars = namedVariables(net, arch ? 'cells' : 'all');
  const archVars: NamedVariable[] = arch
    ? [
        ...arch.alphas.map((variable, c) => ({ name: `arch/alphas/${c}`, variable })),
        ...arch.betas.map((variable, c) => ({ name: `arch/betas/${c}`, variable })),
      ]
    : [];
  const weightOpt: Optimizer = arch ? new SgdMomentum(weightVars, { momentum: 0.9, weightDecay: 3e-4, gradClip: 5 }) : new Adam(weightVars);
  const archOpt = new Adam(archVars, { beta1: 0.5, beta2: 0.999, weightDecay: 1e-3 });
  const loss = (logits: tf.Tensor4D, labels: tf.Tensor3D) => diceCrossEntropyLoss(logits, labels);
  const batches = randomBatches(BATCH, SIZE);
  const step = async () => {
    const value = tf.tidy(() => {
      if (arch) archOpt.apply(gradients(net, loss, batches[1].x, batches[1].y, CLASSES, archVars).grads, 6e-4);
      const { value, grads } = gradients(net, loss, batches[0].x, batches[0].y, CLASSES, weightVars);
      weightOpt.apply(grads, arch ? 0.025 : 1e-3);
      return value;
    });
    const v = (await value.data())[0];
    value.dispose();
    if (!Number.isFinite(v)) throw new Error(`loss ${v}`);
  };
  before = { rssMiB: mib(process.memoryUsage.rss()), tensorMiB: mib(tf.memory().numBytes) };
  for (let s = 1; s <= STEPS + 1; s++) {
    const profiled = s === STEPS + 1; // one more step under tf.profile, for its tensor peak
    rssReset = resetPeakRss();
    const start = tf.memory().numBytes;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    let info: Awaited<ReturnType<typeof tf.profile>> | undefined;
    if (profiled) info = await tf.profile(step);
    else await step();
    const c = process.cpuUsage(c0);
    const f: StepFigure = { step: s, wallMs: Math.round(performance.now() - t0), cpuMs: Math.round((c.user + c.system) / 1000), peakRssMiB: mib(peakRss()) };
    // Weights and optimizer slots were live before the step: the estimate counts them.
    if (info) f.tensorPeakMiB = mib(info.peakBytes - start + before.tensorMiB * MiB);
    console.error(JSON.stringify(f));
    steps.push(f);
  }
  tf.dispose(batches.flatMap((b) => [b.x, b.y]));
  weightOpt.dispose();
  archOpt.dispose();
  net.dispose();
}

// The same check on the other backend.
const other: BackendChoice = backend === 'wasm' ? 'tensorflow' : 'wasm';
let otherCheck: Awaited<ReturnType<typeof check>> | { backend: string; error: string };
try {
  await initBackend({ backend: other, quiet: true });
  otherCheck = await check();
} catch (e) {
  otherCheck = { backend: other, error: (e as Error).message };
}
console.error(
  `memory check on ${other}: ${'refusal' in otherCheck ? (otherCheck.refusal ?? `accepted (estimate ${otherCheck.estimateMiB} MiB)`) : otherCheck.error}`,
);

const result = {
  what:
    CELLS === 'supernet'
      ? 'one search step (Adam architecture step + momentum-SGD weights step, as search.ts) of the full supernet'
      : 'one training step (Adam on every weight, as backbone.ts) of a plain U-Net',
  config: { cells: CELLS, depth: DEPTH, baseFilters: BASE, nodes: 4, partialChannels: K, operations: OPERATIONS.length, sliceSize: SIZE, batch: BATCH },
  backend,
  estimate: { MiB: mib(estimate.bytes), fixedMiB: mib(estimate.fixedBytes), perImageMiB: +(estimate.perImageBytes / MiB).toFixed(1) },
  beforeSteps: before,
  peakRssResetPerStep: rssReset,
  steps,
  checks: [mine, otherCheck],
  machine: {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadAverage: os.loadavg().map((v) => +v.toFixed(2)),
    node: process.version,
  },
  command: `scripts/with-node node test/bench/big-step.ts ${args.join(' ')}`.trim(),
  date: new Date().toISOString(),
};
if (args.includes('--out')) {
  const out = path.resolve(arg('--out', ''));
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
}
console.log(JSON.stringify(result, null, 2));
