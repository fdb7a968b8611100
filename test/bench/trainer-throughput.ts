// Throughput of one IAC search step (a weights step + a first-order architecture
// step) of the full supernet: depth 3, 4 nodes, base 16 filters, 32x32 slices,
// batch 8, K=4, all 10 operations. Measures, in one process:
//   - wasm, fused cell (the implementation) vs an edge-by-edge cell (a direct port
//     of the PC-DARTS cell: the "before" figure)
//   - wasm with every edge pruned to one operation (pruning must pay)
//   - the pure-JS cpu backend
// and writes test/bench/results/trainer-throughput.json.
//
//   scripts/with-node node test/bench/trainer-throughput.ts [--steps N] [--quick] [--out file.json]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import { initBackend, type BackendChoice } from '../../trainer/src/backend/index.ts';
import { IacCell } from '../../trainer/src/model/cell.ts';
import { instanceNorm, pointwise, useReferenceNorm } from '../../trainer/src/model/layers.ts';
import { setWasmTuning } from '../../trainer/src/backend/wasm-tuning.ts';
import { diceCrossEntropyLoss } from '../../trainer/src/model/loss.ts';
import { UNet } from '../../trainer/src/model/network.ts';
import { applyFused, applyShared, isShared, type EdgeOpWeights } from '../../trainer/src/model/operations.ts';
import { edgeIndex } from '../../trainer/src/model/topology.ts';

const args = process.argv.slice(2);
const steps = Number(args[args.indexOf('--steps') + 1] ?? 0) || 3;
const quick = args.includes('--quick');
const BATCH = 8;
const SIZE = 32;

/** Time per kernel name over `steps` calls of `run` (wasm kernels wrapped with timers). */
/** Floating-point operations of one call of the compute-bound kernels (others: 0). */
function kernelFlops(name: string, args: tf.NamedAttrMap & { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }, out: tf.TensorInfo | tf.TensorInfo[]): number {
  const o = (Array.isArray(out) ? out[0] : out).shape;
  const size = o.reduce((a, b) => a * b, 1);
  if (name === 'Conv2D') {
    const [kh, kw, cin] = args.inputs.filter!.shape;
    return 2 * size * kh * kw * cin;
  }
  if (name === 'DepthwiseConv2dNative') {
    const [kh, kw] = args.inputs.filter!.shape;
    return 2 * size * kh * kw;
  }
  if (name === 'BatchMatMul') {
    const a = args.inputs.a!.shape;
    const k = args.attrs?.transposeA ? a[a.length - 2] : a[a.length - 1];
    return 2 * size * k;
  }
  return 0;
}

/**
 * The machine's practical peak on wasm, per CPU second: the faster of a 3x3 convolution
 * with 64 channels and a convolution with a large kernel (the shape of a filter
 * gradient), on which XNNPACK runs close to its best.
 */
function peakConvGflops(): { conv3x3: number; largeKernel: number } {
  const rate = (x: tf.Tensor4D, w: tf.Tensor4D, pad: 'same' | 'valid') =>
    tf.tidy(() => {
      const y = tf.conv2d(x, w, 1, pad);
      const flops = 2 * y.size * w.shape[0] * w.shape[1] * w.shape[2];
      y.dataSync();
      const reps = 5;
      const c0 = process.cpuUsage(); // CPU time: the figure holds on a shared machine (wasm is single-threaded)
      for (let i = 0; i < reps; i++) tf.tidy(() => tf.conv2d(x, w, 1, pad).dataSync());
      const c = process.cpuUsage(c0);
      return +(flops / ((c.user + c.system) / 1e6 / reps) / 1e9).toFixed(2);
    });
  return tf.tidy(() => ({
    conv3x3: rate(tf.randomNormal([8, 64, 64, 64]) as tf.Tensor4D, tf.randomNormal([3, 3, 64, 64]) as tf.Tensor4D, 'same'),
    largeKernel: rate(tf.randomNormal([16, 34, 34, 8]) as tf.Tensor4D, tf.randomNormal([32, 32, 8, 16]) as tf.Tensor4D, 'valid'),
  }));
}

let convFlops = 0;
let convMs = 0;

function kernelTimes(run: () => void, steps: number): { kernel: string; msPerStep: number; callsPerStep: number }[] {
  const totals = new Map<string, [number, number]>();
  const wrapped = tf.getKernelsForBackend('wasm').map((k) => {
    const original = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel({
      ...k,
      setupFunc: undefined,
      kernelFunc: (args) => {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        const out = original(args);
        const ms = performance.now() - t0;
        const flops = kernelFlops(k.kernelName, args as never, out);
        if (flops > 0) {
          const c = process.cpuUsage(c0);
          convFlops += flops;
          convMs += (c.user + c.system) / 1000;
        }
        const e = totals.get(k.kernelName) ?? [0, 0];
        e[0] += ms;
        e[1]++;
        totals.set(k.kernelName, e);
        return out;
      },
    });
    return k;
  });
  try {
    for (let i = 0; i < steps; i++) run();
  } finally {
    for (const k of wrapped) {
      tf.unregisterKernel(k.kernelName, 'wasm');
      tf.registerKernel({ ...k, setupFunc: undefined });
    }
  }
  return [...totals]
    .sort((a, b) => b[1][0] - a[1][0])
    .slice(0, 12)
    .map(([kernel, [ms, calls]]) => ({ kernel, msPerStep: Math.round(ms / steps), callsPerStep: calls / steps }));
}

interface Figure {
  name: string;
  backend: string;
  steps: number;
  msPerStep: number;
  cpuMsPerStep: number;
  imagesPerSecond: number;
  imagesPerCpuSecond: number;
  peakMB?: number;
  kernelsPerStep?: number;
  /** Achieved GFLOP/s (per CPU second) of the convolutions and matrix products inside the step (wasm). */
  convGflopsPerSecond?: number;
  /** Share of the step's CPU time spent in those kernels. */
  convShareOfStep?: number;
  /** Wall time inside wasm kernels by kernel name (inflated when the machine is busy). */
  topKernels?: { kernel: string; msPerStep: number; callsPerStep: number }[];
}

/** The PC-DARTS cell edge by edge (slice, mix, concat, shuffle per edge): the baseline. */
function edgeByEdge(this: IacCell, s0: tf.Tensor4D, s1: tf.Tensor4D): tf.Tensor4D {
  const self = this as unknown as {
    pre0: tf.Variable;
    pre1: tf.Variable;
    out: tf.Variable;
    edgeWeights: Map<number, EdgeOpWeights>[];
  };
  const mode = this.mode;
  if (mode.kind !== 'supernet') throw new Error('baseline is for supernets');
  const { arch, index } = mode;
  const { channels: c, partial: cp, nodes: n, k } = this;
  const pre = (x: tf.Tensor4D, w: tf.Variable) => instanceNorm(pointwise(tf.relu(x), w as unknown as tf.Tensor2D));
  const states: tf.Tensor4D[] = [pre(s0, self.pre0), pre(s1, self.pre1)];
  const alphaRows = tf.unstack(arch.alphas[index]);
  const nodes: tf.Tensor4D[] = [];
  for (let j = 0; j < n; j++) {
    const betas = tf.unstack(tf.softmax(tf.slice(arch.betas[index], [edgeIndex(j, 0)], [j + 2])));
    let node: tf.Tensor4D | undefined;
    for (let i = 0; i < j + 2; i++) {
      const e = edgeIndex(j, i);
      const active = arch.active(index, e);
      const w = tf.unstack(tf.softmax(tf.reshape(tf.stack(active.map((o) => tf.slice(alphaRows[e], [o], [1]))), [active.length])));
      const x = states[i];
      const xp = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, cp]) as tf.Tensor4D;
      let mixed: tf.Tensor4D | undefined;
      active.forEach((o, t) => {
        const op = this.operations[o];
        if (op === 'none') return;
        const y = isShared(op) ? applyShared(op, xp) : applyFused(op, xp, [self.edgeWeights[e].get(o)!]);
        const term = tf.mul(y, w[t]) as tf.Tensor4D;
        mixed = mixed ? (tf.add(mixed, term) as tf.Tensor4D) : term;
      });
      const m = mixed ?? (tf.zerosLike(xp) as tf.Tensor4D);
      const full = k > 1 ? (tf.concat([m, tf.slice(x, [0, 0, 0, cp], [-1, -1, -1, c - cp])], 3) as tf.Tensor4D) : m;
      const [b, h, wd] = full.shape;
      const shuffled = tf.reshape(tf.transpose(tf.reshape(full, [b, h, wd, k, c / k]), [0, 1, 2, 4, 3]), [b, h, wd, c]);
      const weighted = tf.mul(shuffled, betas[i]) as tf.Tensor4D;
      node = node ? (tf.add(node, weighted) as tf.Tensor4D) : weighted;
    }
    nodes.push(node!);
    states.push(node!);
  }
  return tf.add(s0, pointwise(tf.concat(nodes, 3) as tf.Tensor4D, self.out as unknown as tf.Tensor2D));
}

function makeNet(): UNet {
  return new UNet({
    backbone: { depth: 3, baseFilters: 16, pretrainEpochs: 1, learningRate: 1e-3 },
    inChannels: 1,
    numClasses: 4,
    cells: 'supernet',
    space: { operations: [...OPERATIONS], nodes: 4, partialChannels: 4 },
    seed: 0,
  });
}

function searchStep(net: UNet, opt: { w: tf.Optimizer; a: tf.Optimizer }, batch: { x: tf.Tensor4D; y: tf.Tensor3D }[]): void {
  const loss = (i: number) => () => diceCrossEntropyLoss(net.apply(batch[i].x, { training: true }), batch[i].y);
  const l1 = opt.w.minimize(loss(0), true, net.cellVariables as tf.Variable[]);
  const l2 = opt.a.minimize(loss(1), true, [...net.arch!.alphas, ...net.arch!.betas]);
  l1?.dataSync();
  l2?.dataSync();
  tf.dispose([l1, l2].filter((t): t is tf.Scalar => t !== null));
}

async function measure(name: string, backend: BackendChoice, n: number, setup: (net: UNet) => void): Promise<Figure> {
  await initBackend({ backend, quiet: true });
  const net = makeNet();
  setup(net);
  const batch = [0, 1].map((s) => ({
    x: tf.randomNormal([BATCH, SIZE, SIZE, 1], 0, 1, 'float32', s + 1) as tf.Tensor4D,
    y: tf.randomUniform([BATCH, SIZE, SIZE], 0, 4, 'int32', s + 7) as tf.Tensor3D,
  }));
  const opt = { w: tf.train.momentum(0.025, 0.9), a: tf.train.adam(6e-4, 0.5, 0.999) };
  searchStep(net, opt, batch); // warm-up: plans, optimizer slots
  const tensorsBefore = tf.memory().numTensors;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let s = 0; s < n; s++) searchStep(net, opt, batch);
  const cpu = process.cpuUsage(c0);
  const ms = (performance.now() - t0) / n;
  const cpuMs = (cpu.user + cpu.system) / 1000 / n;
  if (tf.memory().numTensors !== tensorsBefore) throw new Error(`${name}: tensors leaked (${tensorsBefore} -> ${tf.memory().numTensors})`);
  let peakMB: number | undefined;
  let kernelsPerStep: number | undefined;
  let topKernels: Figure['topKernels'];
  let convGflopsPerSecond: number | undefined;
  let convShareOfStep: number | undefined;
  if (!quick) {
    const info = await tf.profile(() => searchStep(net, opt, batch));
    peakMB = info.peakBytes / 2 ** 20;
    kernelsPerStep = info.kernels.length;
    if (backend === 'wasm') {
      convFlops = 0;
      convMs = 0;
      topKernels = kernelTimes(() => searchStep(net, opt, batch), Math.min(n, 2));
      convGflopsPerSecond = +(convFlops / (convMs / 1000) / 1e9).toFixed(2);
      convShareOfStep = +(convMs / Math.min(n, 2) / cpuMs).toFixed(2);
    }
  }
  tf.dispose(batch.flatMap((b) => [b.x, b.y]));
  opt.w.dispose();
  opt.a.dispose();
  net.dispose();
  const f: Figure = {
    name,
    backend,
    steps: n,
    msPerStep: Math.round(ms),
    cpuMsPerStep: Math.round(cpuMs),
    imagesPerSecond: +((BATCH * 1000) / ms).toFixed(2),
    imagesPerCpuSecond: +((BATCH * 1000) / cpuMs).toFixed(2),
    ...(peakMB === undefined ? {} : { peakMB: Math.round(peakMB) }),
    ...(kernelsPerStep === undefined ? {} : { kernelsPerStep }),
    ...(topKernels === undefined ? {} : { topKernels }),
    ...(convGflopsPerSecond === undefined ? {} : { convGflopsPerSecond, convShareOfStep }),
  };
  console.error(JSON.stringify(f));
  return f;
}

const pruneToOne = (net: UNet) => {
  // Every edge keeps one operation, cycling through the non-'none' ones.
  const ops = net.arch!.space.operations;
  const real = ops.map((_, i) => i).filter((i) => ops[i] !== 'none');
  for (let c = 0; c < net.arch!.cells; c++) for (let e = 0; e < net.arch!.edges; e++) net.arch!.prune(c, e, [real[(c * net.arch!.edges + e) % real.length]]);
};

const figures: Figure[] = [];
// Before: the PC-DARTS cell edge by edge, tfjs's stock wasm kernels and the textbook
// instance norm (only the convolution gradients, without which wasm cannot train).
const fusedApply = IacCell.prototype.apply;
IacCell.prototype.apply = edgeByEdge;
await initBackend({ backend: 'wasm', quiet: true });
setWasmTuning(false);
useReferenceNorm(true);
figures.push(await measure('before: edge-by-edge cell, stock wasm kernels, 10 operations', 'wasm', Math.max(1, Math.ceil(steps / 2)), () => {}));
IacCell.prototype.apply = fusedApply;
setWasmTuning(true);
useReferenceNorm(false);
figures.push(await measure('after: fused cell, 10 operations', 'wasm', steps, () => {}));
figures.push(await measure('after: fused cell, every edge pruned to 1 operation', 'wasm', steps, pruneToOne));
if (!quick) figures.push(await measure('after: fused cell, 10 operations', 'cpu', 1, () => {}));

const cpus = os.cpus();
await initBackend({ backend: 'wasm', quiet: true });
const machinePeakConvGflops = peakConvGflops();

const result = {
  machinePeakConvGflops,
  what: 'one search step = weights step (momentum SGD on cell weights, backbone frozen) + first-order architecture step (Adam on alphas and betas); images/s = batch / step time',
  config: { depth: 3, nodes: 4, baseFilters: 16, sliceSize: SIZE, batch: BATCH, partialChannels: 4, operations: OPERATIONS.length },
  machine: { cpu: cpus[0]?.model ?? 'unknown', cores: cpus.length, loadAverage: os.loadavg().map((v) => +v.toFixed(2)), node: process.version },
  command: `scripts/with-node node test/bench/trainer-throughput.ts ${args.join(' ')}`.trim(),
  date: new Date().toISOString(),
  figures,
  speedups: {
    afterVsBefore: +(figures[0].cpuMsPerStep / figures[1].cpuMsPerStep).toFixed(2),
    prunedToOneVsAll: +(figures[1].cpuMsPerStep / figures[2].cpuMsPerStep).toFixed(2),
  },
};
const out = args.includes('--out') ? path.resolve(args[args.indexOf('--out') + 1]) : path.join(import.meta.dirname, 'results', 'trainer-throughput.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(result, null, 2));
