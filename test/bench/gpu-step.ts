// Time of one IAC search step (a first-order architecture step + a weights step, as in
// trainer-throughput.ts) of the full supernet (depth 3, 4 nodes, base 16, K=4, all 10
// operations) at a chosen slice size, batch and backend, for the GPU benchmark
// (test/bench/gpu.sh) and anywhere else a shape other than trainer-throughput's fixed
// 32x32/batch 8 is wanted. Prints one JSON object on stdout, progress on stderr.
//
//   scripts/with-node node test/bench/gpu-step.ts [--backend tensorflow-gpu|tensorflow|wasm|cpu]
//       [--size 128] [--batch 16] [--steps 5] [--warmup 2] [--depth 3] [--base 16] [--k 4] [--out file.json]
//
// --backend defaults to IACNAS_BACKEND, else tensorflow-gpu. Wall times include reading
// the two losses back (each step ends synchronised). CPU times are process.cpuUsage (all
// threads of the process). Memory: tf.profile's peak of live tensors during one step
// (what tfjs counts), the process's peak RSS, and on tensorflow-gpu the GPU memory
// nvidia-smi reports (run with TF_FORCE_GPU_ALLOW_GROWTH=true, or TensorFlow reserves
// nearly all of it at start and that figure says nothing about the step).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, parseBackendOverride, tensorflowVersion, type BackendChoice } from '../../trainer/src/backend/index.ts';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import { UNet } from '../../trainer/src/model/network.ts';
import { benchNetworkOptions, CLASSES, peakRssBytes, randomBatches, searchOptimizers, searchStep as step } from './step.ts';

const args = process.argv.slice(2);
function option(name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}
function integer(name: string, fallback: number, min: number): number {
  const s = option(name);
  if (s === undefined) return fallback;
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${s}`);
  return n;
}
const known = new Set(['--backend', '--size', '--batch', '--steps', '--warmup', '--depth', '--base', '--k', '--out']);
for (let i = 0; i < args.length; i += 2)
  if (!known.has(args[i])) throw new Error(`unknown option ${args[i]} (see the head of ${path.basename(import.meta.filename)})`);

const backend: BackendChoice = parseBackendOverride(option('--backend') ?? (process.env.IACNAS_BACKEND || 'tensorflow-gpu'))!;
const SIZE = integer('--size', 128, 8);
const BATCH = integer('--batch', 16, 1);
const STEPS = integer('--steps', 5, 1);
const WARMUP = integer('--warmup', 2, 1);
const DEPTH = integer('--depth', 3, 1);
const BASE = integer('--base', 16, 4);
const K = integer('--k', 4, 1);
if (SIZE % 2 ** DEPTH !== 0) throw new Error(`--size ${SIZE} is not a multiple of 2^depth = ${2 ** DEPTH}`);

const MiB = 2 ** 20;
const log = (s: string) => process.stderr.write(`gpu-step: ${s}\n`);

const peakRssMiB = () => Math.round(peakRssBytes() / MiB);

/** GPU memory as nvidia-smi sees it: this process's (where it lists processes) and the device's; undefined without nvidia-smi. */
function gpuMemory(): { processMiB: number | null; deviceUsedMiB: number; deviceTotalMiB: number; gpu: string } | undefined {
  const smi = (q: string[]) =>
    execFileSync('nvidia-smi', [...q, '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const [name, used, total] = smi(['--query-gpu=name,memory.used,memory.total'])
      .split('\n')[0]
      .split(',')
      .map((s) => s.trim());
    let processMiB: number | null = null;
    try {
      for (const line of smi(['--query-compute-apps=pid,used_memory']).split('\n')) {
        const [pid, mem] = line.split(',').map((s) => s.trim());
        if (Number(pid) === process.pid) processMiB = Number(mem);
      }
    } catch {
      // some drivers or sandboxes do not list processes
    }
    return { processMiB, deviceUsedMiB: Number(used), deviceTotalMiB: Number(total), gpu: name };
  } catch {
    return undefined;
  }
}

const t00 = performance.now();
const info = await initBackend({ backend });
const net = new UNet(benchNetworkOptions({ depth: DEPTH, base: BASE, k: K }));
const batch = randomBatches(BATCH, SIZE);
const opt = searchOptimizers(net);
const searchStep = (): [number, number] => step(net, opt, batch);

const warmupMs: number[] = [];
for (let s = 0; s < WARMUP; s++) {
  const t0 = performance.now();
  const losses = searchStep();
  warmupMs.push(Math.round(performance.now() - t0));
  if (!losses.every(Number.isFinite)) throw new Error(`warm-up step ${s + 1}: the loss is ${losses.join(', ')}`);
  log(`warm-up step ${s + 1}/${WARMUP}: ${warmupMs[s]} ms (loss ${losses.map((l) => l.toFixed(4)).join(', ')})`);
}
const tensorsBefore = tf.memory().numTensors;
const stepMs: number[] = [];
const c0 = process.cpuUsage();
const tTimed = performance.now();
let last: [number, number] = [NaN, NaN];
for (let s = 0; s < STEPS; s++) {
  const t0 = performance.now();
  last = searchStep();
  stepMs.push(performance.now() - t0);
  log(`step ${s + 1}/${STEPS}: ${Math.round(stepMs[s])} ms`);
}
const wallMs = (performance.now() - tTimed) / STEPS;
const cpu = process.cpuUsage(c0);
const cpuMs = (cpu.user + cpu.system) / 1000 / STEPS;
if (tf.memory().numTensors !== tensorsBefore) throw new Error(`tensors leaked: ${tensorsBefore} -> ${tf.memory().numTensors}`);
if (!last.every(Number.isFinite)) throw new Error(`the loss is ${last.join(', ')}`);

const profile = await tf.profile(() => {
  searchStep();
});
const gpu = backend === 'tensorflow-gpu' ? gpuMemory() : undefined;
const sorted = [...stepMs].sort((a, b) => a - b);

const result = {
  what: 'one search step as the trainer runs it = first-order architecture step (Adam with weight decay on alphas and betas) + weights step (momentum SGD with weight decay and clipping on cell weights, backbone frozen) of the full supernet; images/s = batch / step wall time',
  command: `scripts/with-node node test/bench/gpu-step.ts ${args.join(' ')}`.trim(),
  backend: info.choice,
  backendLine: info.line,
  tensorflow: tensorflowVersion() || null,
  config: { depth: DEPTH, nodes: 4, baseFilters: BASE, sliceSize: SIZE, batch: BATCH, partialChannels: K, operations: OPERATIONS.length, classes: CLASSES },
  steps: STEPS,
  warmupMs,
  msPerStep: Math.round(wallMs),
  msPerStepMin: Math.round(sorted[0]),
  msPerStepMedian: Math.round(sorted[Math.floor(sorted.length / 2)]),
  cpuMsPerStep: Math.round(cpuMs),
  imagesPerSecond: +((BATCH * 1000) / wallMs).toFixed(2),
  kernelsPerStep: profile.kernels.length,
  peakTensorMiB: Math.round(profile.peakBytes / MiB),
  peakRssMiB: peakRssMiB(),
  ...(gpu === undefined ? {} : { gpuMemory: gpu }),
  env: Object.fromEntries(
    Object.entries(process.env).filter(([k]) => /^(TF_(CPP|NUM|FORCE|GPU|ENABLE|XLA)_|CUDA_VISIBLE_DEVICES$|NVIDIA_VISIBLE_DEVICES$|IACNAS_BACKEND$)/.test(k)),
  ),
  machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, loadAverage: os.loadavg().map((v) => +v.toFixed(2)), node: process.version },
  totalSeconds: +((performance.now() - t00) / 1000).toFixed(1),
  date: new Date().toISOString(),
};
tf.dispose(batch.flatMap((b) => [b.x, b.y]));
opt.w.dispose();
opt.a.dispose();
net.dispose();

const out = option('--out');
if (out !== undefined) {
  mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
}
console.log(JSON.stringify(result, null, 2));
