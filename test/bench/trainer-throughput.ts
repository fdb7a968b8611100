// Throughput of one IAC search step (the trainer's: a first-order architecture step,
// Adam with weight decay on alphas and betas, then a weights step, momentum SGD with
// weight decay and gradient clipping on the cell weights, backbone frozen; step.ts) of
// the full supernet: depth 3, 4 nodes, base 16 filters, K=4, all 10 operations, at
// 32x32 slices batch 8 and 64x64 batch 4 (--sizes). Measures, in one command:
//   - wasm, fused cell (the implementation) vs an edge-by-edge cell (a direct port
//     of the PC-DARTS cell: the "before" figure)
//   - each backend of --backends with the fused cell, all 10 operations and every edge
//     pruned to one operation (pruning must pay): wasm, native TensorFlow
//     (@tensorflow/tfjs-node) and, when named, the pure-JS cpu backend (one step, full
//     supernet only)
//   - each backend's practical convolution peak and the CPU cost of a small kernel
//     call (not on cpu)
//   - with --tf-threads, native TensorFlow again in a child process per thread count
//     (TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS are read when TensorFlow starts,
//     so another count needs another process)
//   - the PyTorch twin of the step (test/bench/torch/twin.py, one thread) at every size,
//     full and pruned, in a child process each, its steps taken in turn with ours: our
//     CPU per step over PyTorch's (torchRatios), with kernel calls per step on both
//     sides (ours: tf.profile's
//     kernels; PyTorch: aten ops not nested in another aten op, in a separate profiled
//     step). The twin runs under /usr/bin/python3 with Debian's python3-torch, which
//     test/bench/torch/setup.sh installs when it is missing (apt-get).
// and writes test/bench/results/trainer-throughput.json and, unless --quick or --out,
// the "Against PyTorch" table of BENCHMARKS.md.
//
//   scripts/with-node node test/bench/trainer-throughput.ts [--steps N] [--warmup N] [--quick] [--out file.json]
//       [--backends wasm,tensorflow,cpu] [--tf-threads default,1] [--sizes 32x8,64x4] [--torch on|off]
//
// --sizes: slice size x batch of each measured configuration (default 32x8,64x4; 32x8
// with --quick). The before (edge-by-edge) figure is measured at the first only.
// --torch off: no PyTorch twin.
// --warmup: untimed steps before the timed ones, ours and the twin's alike (default 8,
// 1 with --quick; see `warmup` below).
//
// --backends: default wasm, and tensorflow where @tensorflow/tfjs-node loads. cpu is
// measured only when named: its one step costs about as much CPU as everything else
// together (~50 CPU s on the project's machine, minutes of wall time when it is busy).
// --tf-threads: 'default' measures native TensorFlow in this process
// with the environment as it is; a number N runs it again in a child process with
// TF_NUM_INTRAOP_THREADS=N TF_NUM_INTEROP_THREADS=N. Default: default,1 (default with
// --quick). CPU times are process.cpuUsage (every thread of the process): the figure that
// holds on a shared machine; wall times are given beside them.
import { execFileSync, spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import { initBackend, type BackendChoice } from '../../trainer/src/backend/index.ts';
import { IacCell } from '../../trainer/src/model/cell.ts';
import { instanceNorm, pointwise, useReferenceNorm } from '../../trainer/src/model/layers.ts';
import { setWasmTuning } from '../../trainer/src/backend/wasm-tuning.ts';
import { UNet } from '../../trainer/src/model/network.ts';
import { benchNetworkOptions, pruneToOne, randomBatches, searchOptimizers, searchStep } from './step.ts';
import { repoRoot, runWithTfThreads, updateBenchmarksMd } from './lib.ts';
import { applyFused, applyShared, isShared, type EdgeOpWeights } from '../../trainer/src/model/operations.ts';
import { edgeIndex } from '../../trainer/src/model/topology.ts';

const args = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
};
const steps = Number(option('--steps') ?? 0) || 5;
const quick = args.includes('--quick');
// Steps run before the timed ones, on both sides. Ours settle after about 7 (V8's
// optimizing compiler and the wasm tier-up work in the first ones: 260-375 CPU ms per
// pruned 32x32 step against 220-245 after), PyTorch's after about 2; a search runs
// thousands, so the figure is the settled cost.
const warmup = option('--warmup') !== undefined ? Number(option('--warmup')) : quick ? 1 : 8;
if (!Number.isInteger(warmup) || warmup < 1) throw new Error('--warmup must be a positive integer');

/** A measured configuration: slice size and batch. */
interface Shape {
  size: number;
  batch: number;
}
const shapeLabel = (s: Shape) => `${s.size}x${s.batch}`;
function parseShapes(value: string): Shape[] {
  return parseList('--sizes', value).map((v) => {
    const m = /^(\d+)x(\d+)$/.exec(v);
    if (!m || Number(m[1]) % 8 !== 0 || Number(m[2]) < 1) throw new Error(`--sizes: ${v} is not SIZExBATCH with SIZE a multiple of 8 (e.g. 32x8)`);
    return { size: Number(m[1]), batch: Number(m[2]) };
  });
}
const shapes: Shape[] = parseShapes(option('--sizes') ?? (quick ? '32x8' : '32x8,64x4'));
/** The configuration of the before figure and of the speedups' top-level figures. */
const PRIMARY = shapes[0];
// 'paired' (for the one-thread TensorFlow child): steps paired with the twin's, no
// separate twin runs.
const torchMode = option('--torch') ?? 'on';
if (!['on', 'off', 'paired'].includes(torchMode)) throw new Error('--torch is on or off');
const torchOn = torchMode === 'on';

type Measured = 'wasm' | 'tensorflow' | 'cpu';
const MEASURED: readonly Measured[] = ['wasm', 'tensorflow', 'cpu'];

function parseList(name: string, value: string): string[] {
  const list = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (list.length === 0) throw new Error(`${name} is empty`);
  return list;
}

/** The backends to measure: --backends, else wasm and tensorflow where it starts (cpu only when named). */
async function chooseBackends(): Promise<{ backends: Measured[]; notes: string[] }> {
  const given = option('--backends');
  const notes: string[] = [];
  if (given !== undefined) {
    const list = parseList('--backends', given);
    for (const b of list) if (!(MEASURED as readonly string[]).includes(b)) throw new Error(`--backends: ${b} is not one of ${MEASURED.join(', ')}`);
    if (list.includes('tensorflow')) await initBackend({ backend: 'tensorflow', quiet: true }); // fails loudly when asked for and absent
    return { backends: [...new Set(list)] as Measured[], notes };
  }
  const backends: Measured[] = ['wasm'];
  try {
    await initBackend({ backend: 'tensorflow', quiet: true });
    backends.push('tensorflow');
  } catch (e) {
    const reason = (e as Error).message
      .split('\n')[0]
      .replace(/^no tfjs backend could start: tensorflow: /, '')
      .replace(/ \(IACNAS_BACKEND=.*\)$/, '');
    notes.push(`tensorflow not measured: ${reason} (build it with scripts/native-backend.sh)`);
  }
  notes.push('cpu not measured: name it in --backends (one step is ~50 CPU s)');
  return { backends, notes };
}

/** Floating-point operations of one call of the compute-bound kernels (others: 0). */
function kernelFlops(
  name: string,
  args: tf.NamedAttrMap & { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap },
  out: tf.TensorInfo | tf.TensorInfo[],
): number {
  const o = (Array.isArray(out) ? out[0] : out).shape;
  const size = o.reduce((a, b) => a * b, 1);
  const count = (s: number[]) => s.reduce((a, b) => a * b, 1);
  switch (name) {
    case 'Conv2D': {
      const [kh, kw, cin] = args.inputs.filter!.shape;
      return 2 * size * kh * kw * cin;
    }
    case 'DepthwiseConv2dNative': {
      const [kh, kw] = args.inputs.filter!.shape;
      return 2 * size * kh * kw;
    }
    // The native backends' convolution gradients (wasm computes them as convolutions).
    case 'Conv2DBackpropInput': {
      const [kh, kw, , cout] = args.inputs.filter!.shape;
      return 2 * size * kh * kw * cout;
    }
    case 'Conv2DBackpropFilter': {
      const [kh, kw, cin] = o;
      return 2 * count(args.inputs.dy!.shape) * kh * kw * cin;
    }
    case 'DepthwiseConv2dNativeBackpropInput': {
      const [kh, kw] = args.inputs.filter!.shape;
      return 2 * count(args.inputs.dy!.shape) * kh * kw;
    }
    case 'DepthwiseConv2dNativeBackpropFilter': {
      const [kh, kw] = o;
      return 2 * count(args.inputs.dy!.shape) * kh * kw;
    }
    case 'BatchMatMul': {
      const a = args.inputs.a!.shape;
      const k = args.attrs?.transposeA ? a[a.length - 2] : a[a.length - 1];
      return 2 * size * k;
    }
    default:
      return 0;
  }
}

interface Rate {
  /** GFLOP per CPU second of the process (all its threads): the figure that holds under load. */
  gflopsPerCpuSecond: number;
  /** GFLOP per wall second (noisy on a shared machine; above the CPU figure only with threads). */
  gflopsPerSecond: number;
  reps: number;
  gflopPerCall: number;
}

/**
 * The practical peak of a backend: conv2d on fixed operands, two calls to warm up
 * (plans, packed filters, first allocations), then at least 3 timed calls and at
 * least `minCpuSeconds` of CPU. Each call's output is read back with dataSync (which
 * waits for the kernel) and disposed outside any tidy: no tensor container is walked
 * inside the timed region. (The earlier version returned the dataSync array from
 * tf.tidy, which walks every element of a returned object looking for tensors: the
 * 2M-element output of the 3x3 case made it 20x too slow, the "1.6 GFLOP/s".)
 */
function convRate(xShape: [number, number, number, number], wShape: [number, number, number, number], pad: 'same' | 'valid', minCpuSeconds: number): Rate {
  const x = tf.randomNormal(xShape) as tf.Tensor4D;
  const w = tf.randomNormal(wShape) as tf.Tensor4D;
  const call = (): number => {
    const y = tf.conv2d(x, w, 1, pad);
    y.dataSync();
    const n = y.size;
    y.dispose();
    return n;
  };
  const outSize = call();
  call();
  const flops = 2 * outSize * wShape[0] * wShape[1] * wShape[2];
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let reps = 0;
  let cpuSeconds = 0;
  while (reps < 3 || (cpuSeconds < minCpuSeconds && reps < 2000)) {
    call();
    reps++;
    const c = process.cpuUsage(c0);
    cpuSeconds = (c.user + c.system) / 1e6;
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  tf.dispose([x, w]);
  return {
    gflopsPerCpuSecond: +((flops * reps) / cpuSeconds / 1e9).toFixed(2),
    gflopsPerSecond: +((flops * reps) / wallSeconds / 1e9).toFixed(2),
    reps,
    gflopPerCall: +(flops / 1e9).toFixed(4),
  };
}

/**
 * The machine's practical peak on the current backend: a 3x3 convolution with 64
 * channels and a convolution with a large kernel (the shape of a filter gradient, on
 * which XNNPACK runs close to its best).
 */
function peakConvGflops(): { conv3x3: Rate; largeKernel: Rate } {
  const min = quick ? 0.2 : 1;
  return {
    conv3x3: convRate([8, 64, 64, 64], [3, 3, 64, 64], 'same', min),
    largeKernel: convRate([16, 34, 34, 8], [32, 32, 8, 16], 'valid', min),
  };
}

/**
 * CPU microseconds per call of two small kernels on the current backend, tensor
 * disposal included: a Reshape (no arithmetic: the backend's fixed cost of a kernel
 * call) and an Add on [8, 32, 32, 4] (a typical element-wise kernel of the step).
 */
function kernelCallCost(): { reshape: number; add: number } {
  const x = tf.randomNormal([8, 32, 32, 4]);
  const per = (f: () => tf.Tensor, n: number) => {
    for (let i = 0; i < 50; i++) f().dispose();
    const c0 = process.cpuUsage();
    for (let i = 0; i < n; i++) f().dispose();
    const c = process.cpuUsage(c0);
    return +((c.user + c.system) / n).toFixed(1);
  };
  const n = quick ? 500 : 3000;
  const cost = { reshape: per(() => tf.reshape(x, [8, 32, 128]), n), add: per(() => tf.add(x, x), n) };
  x.dispose();
  return cost;
}

let convFlops = 0;
let convMs = 0;

/** Time per kernel name over `steps` calls of `run` (the backend's kernels wrapped with timers). */
function kernelTimes(backend: string, run: () => void, steps: number): { kernel: string; msPerStep: number; callsPerStep: number }[] {
  const totals = new Map<string, [number, number]>();
  const wrapped = tf.getKernelsForBackend(backend).map((k) => {
    const original = k.kernelFunc;
    tf.unregisterKernel(k.kernelName, backend);
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
      tf.unregisterKernel(k.kernelName, backend);
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
  sliceSize: number;
  batch: number;
  /** Native TensorFlow's thread pools: the environment variables as they were ('default': unset). */
  tfThreads?: { intraOp: string; interOp: string };
  steps: number;
  warmupSteps: number;
  /** The PyTorch twin's CPU and wall ms per step, its steps alternating with these ones. */
  torchPaired?: { cpuMsPerStep: number; msPerStep: number };
  msPerStep: number;
  cpuMsPerStep: number;
  imagesPerSecond: number;
  imagesPerCpuSecond: number;
  /** Peak bytes of tfjs tensors in a step (TensorFlow's own scratch memory is not counted). */
  peakMB?: number;
  kernelsPerStep?: number;
  /** Achieved GFLOP/s (per CPU second) of the convolutions and matrix products inside the step. */
  convGflopsPerSecond?: number;
  /** Share of the step's CPU time spent in those kernels. */
  convShareOfStep?: number;
  /** Wall time inside the backend's kernels by kernel name (inflated when the machine is busy). */
  topKernels?: { kernel: string; msPerStep: number; callsPerStep: number }[];
  /** OS threads in the process after the measurement (Linux). */
  osThreads?: number;
  /** Weights of the step: cell weights of active operations, backbone, alphas and betas. */
  parameters: { cells: number; backbone: number; arch: number };
  /** One-minute load average when the measurement ended. */
  loadAverage1m: number;
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

const makeNet = (): UNet => new UNet(benchNetworkOptions());

function osThreads(): number | undefined {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const tfThreads = () => ({ intraOp: process.env.TF_NUM_INTRAOP_THREADS || 'default', interOp: process.env.TF_NUM_INTEROP_THREADS || 'default' });

/** Parameters of the step: cell weights of the operations still active, backbone, alphas and betas. */
function parameterCounts(net: UNet): Figure['parameters'] {
  const count = (vs: readonly tf.Variable[]) => vs.reduce((s, v) => s + v.size, 0);
  const arch = net.arch!;
  const ops = arch.space.operations;
  const live = [...net.namedWeights()].filter(([name, v]) => {
    if (!net.cellVariables.includes(v)) return false;
    const m = /^cell(\d+)\/edge(\d+)\/([a-z_0-9]+)\//.exec(name);
    return !m || arch.active(Number(m[1]), Number(m[2])).includes(ops.indexOf(m[3] as (typeof ops)[number]));
  });
  return { cells: count(live.map(([, v]) => v)), backbone: count(net.backboneVariables), arch: count([...arch.alphas, ...arch.betas]) };
}

/**
 * The PyTorch twin as a child process that runs one step per request
 * (twin.py serve), so that its steps can alternate with ours: each pair of steps sees
 * the same machine, where runs minutes apart saw loads that moved either side by 10-20%.
 */
class TwinServer {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly lines: AsyncIterator<string>;
  private constructor(child: ChildProcessByStdio<Writable, Readable, null>) {
    this.child = child;
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static start(shape: Shape, variant: 'full' | 'pruned'): TwinServer {
    const args = [TWIN, 'serve', '--size', String(shape.size), '--batch', String(shape.batch), '--variant', variant, '--warmup', String(warmup)];
    const child = spawn(PYTHON, args, { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '1' }, stdio: ['pipe', 'pipe', 'inherit'] });
    return new TwinServer(child);
  }

  private async line(): Promise<Record<string, number | boolean | string>> {
    const next = await this.lines.next();
    if (next.done) throw new Error(`trainer-throughput: the PyTorch twin (${PYTHON} ${TWIN} serve) ended without an answer; its stderr is above`);
    return JSON.parse(next.value) as Record<string, number | boolean | string>;
  }

  /** Resolves once the twin has built its network and taken its warm-up steps. */
  async ready(): Promise<void> {
    const first = await this.line();
    if (first.ready !== true) throw new Error(`trainer-throughput: the PyTorch twin said ${JSON.stringify(first)} instead of ready`);
  }

  async step(): Promise<{ cpuMs: number; ms: number }> {
    this.child.stdin.write('step\n');
    const r = await this.line();
    return { cpuMs: Number(r.cpuMs), ms: Number(r.ms) };
  }

  close(): void {
    this.child.stdin.end('quit\n');
  }
}

async function measure(
  name: string,
  backend: BackendChoice,
  n: number,
  setup: (net: UNet) => void,
  shape: Shape,
  opts: { profile?: boolean } = {},
): Promise<Figure> {
  await initBackend({ backend, quiet: true });
  const net = makeNet();
  setup(net);
  const parameters = parameterCounts(net);
  const batch = randomBatches(shape.batch, shape.size);
  const opt = searchOptimizers(net);
  // The twin's steps alternate with ours (not for the "before" cell or the cpu backend).
  const twin = torchMode !== 'off' && name !== BEFORE && backend !== 'cpu' ? TwinServer.start(shape, name === PRUNED ? 'pruned' : 'full') : undefined;
  // Warm-up: plans, optimizer slots, and the compilers (see `warmup`); the slow
  // edge-by-edge "before" cell gets one step. The twin warms up meanwhile.
  for (let s = 0; s < (name === BEFORE ? 1 : warmup); s++) searchStep(net, opt, batch);
  await twin?.ready();
  const tensorsBefore = tf.memory().numTensors;
  const twinSteps: { cpuMs: number; ms: number }[] = [];
  let wall = 0;
  // Wall time around our steps only (the twin's around its own); CPU over the whole
  // loop: what our helper threads do while the twin steps (V8's garbage collector
  // finishing, TensorFlow's pool threads spinning before they sleep) is ours too.
  const c0 = process.cpuUsage();
  for (let s = 0; s < n; s++) {
    const t = performance.now();
    searchStep(net, opt, batch);
    wall += performance.now() - t;
    if (twin) twinSteps.push(await twin.step());
  }
  const cpu = process.cpuUsage(c0);
  twin?.close();
  const ms = wall / n;
  const cpuMs = (cpu.user + cpu.system) / 1000 / n;
  const torchPaired = twin
    ? { cpuMsPerStep: +(twinSteps.reduce((a, t) => a + t.cpuMs, 0) / n).toFixed(1), msPerStep: +(twinSteps.reduce((a, t) => a + t.ms, 0) / n).toFixed(1) }
    : undefined;
  if (tf.memory().numTensors !== tensorsBefore) throw new Error(`${name}: tensors leaked (${tensorsBefore} -> ${tf.memory().numTensors})`);
  let peakMB: number | undefined;
  let kernelsPerStep: number | undefined;
  let topKernels: Figure['topKernels'];
  let convGflopsPerSecond: number | undefined;
  let convShareOfStep: number | undefined;
  if (!quick && opts.profile !== false) {
    const info = await tf.profile(() => searchStep(net, opt, batch));
    peakMB = info.peakBytes / 2 ** 20;
    kernelsPerStep = info.kernels.length;
    convFlops = 0;
    convMs = 0;
    const timed = Math.min(n, 2);
    topKernels = kernelTimes(tf.getBackend(), () => searchStep(net, opt, batch), timed);
    convGflopsPerSecond = +(convFlops / (convMs / 1000) / 1e9).toFixed(2);
    convShareOfStep = +(convMs / timed / cpuMs).toFixed(2);
  }
  tf.dispose(batch.flatMap((b) => [b.x, b.y]));
  opt.w.dispose();
  opt.a.dispose();
  net.dispose();
  const threads = osThreads();
  const f: Figure = {
    name,
    backend,
    sliceSize: shape.size,
    batch: shape.batch,
    ...(backend === 'tensorflow' ? { tfThreads: tfThreads() } : {}),
    steps: n,
    warmupSteps: name === BEFORE ? 1 : warmup,
    ...(torchPaired ? { torchPaired } : {}),
    msPerStep: Math.round(ms),
    cpuMsPerStep: Math.round(cpuMs),
    imagesPerSecond: +((shape.batch * 1000) / ms).toFixed(2),
    imagesPerCpuSecond: +((shape.batch * 1000) / cpuMs).toFixed(2),
    ...(peakMB === undefined ? {} : { peakMB: Math.round(peakMB) }),
    ...(kernelsPerStep === undefined ? {} : { kernelsPerStep }),
    ...(convGflopsPerSecond === undefined ? {} : { convGflopsPerSecond, convShareOfStep }),
    ...(topKernels === undefined ? {} : { topKernels }),
    ...(threads === undefined ? {} : { osThreads: threads }),
    parameters,
    loadAverage1m: +os.loadavg()[0].toFixed(2),
  };
  console.error(JSON.stringify({ ...f, topKernels: undefined }));
  return f;
}

const BEFORE = 'before: edge-by-edge cell, stock wasm kernels, 10 operations';
const FULL = 'after: fused cell, 10 operations';
const PRUNED = 'after: fused cell, every edge pruned to 1 operation';

const loadAtStart = os.loadavg().map((v) => +v.toFixed(2));
const { backends, notes } = await chooseBackends();
const threadCounts = option('--tf-threads') !== undefined ? parseList('--tf-threads', option('--tf-threads')!) : quick ? ['default'] : ['default', '1'];
for (const t of threadCounts)
  if (t !== 'default' && !(Number.isInteger(Number(t)) && Number(t) > 0)) throw new Error(`--tf-threads: ${t} is neither 'default' nor a thread count`);
for (const n of notes) console.error(`trainer-throughput: ${n}`);
console.error(
  `trainer-throughput: backends ${backends.join(', ')}; sizes ${shapes.map(shapeLabel).join(', ')}; ${warmup} warm-up and ${steps} timed steps${quick ? ', quick' : ''}${torchOn ? '' : ', no PyTorch twin'}`,
);

// The PyTorch twin at every size, full and pruned, in a child process each, once on
// its own (its parameter and aten op counts, and its figures alone); the ratios come
// from its steps taken in turn with ours (TwinServer, in measure).
interface TwinRun {
  engine: string;
  threads: { intraOp: number; interOp: number };
  size: number;
  batch: number;
  variant: 'full' | 'pruned';
  steps: number;
  warmup: number;
  cpuMsPerStep: number;
  msPerStep: number;
  parameters: { cells: number; backbone: number; arch: number };
  /** Aten ops per step not nested in another aten op (the dispatched calls); absent with --quick. */
  atenOpsPerStep?: number;
  /** Every aten op recorded, nested ones included. */
  atenOpsPerStepAllLevels?: number;
  /** One-minute load average when the run ended. */
  loadAverage1m: number;
}
interface TwinFigure extends TwinRun {
  /** The rounds this figure is the mean of (CPU and wall per step, load at the end). */
  rounds: { cpuMsPerStep: number; msPerStep: number; loadAverage1m: number }[];
}
const PYTHON = '/usr/bin/python3';
const TWIN = path.join(repoRoot, 'test/bench/torch/twin.py');
const twinRuns: TwinRun[] = [];
function runTwins(): void {
  // Debian's python3-torch for /usr/bin/python3, installed when missing.
  const setup = spawnSync(path.join(repoRoot, 'test/bench/torch/setup.sh'), { stdio: ['ignore', 'inherit', 'inherit'] });
  if (setup.status !== 0)
    throw new Error(
      `trainer-throughput: the PyTorch twin needs ${PYTHON} with PyTorch (apt-get install python3-torch), and test/bench/torch/setup.sh could not install it; --torch off skips the twin`,
    );
  for (const shape of shapes) {
    for (const variant of ['full', 'pruned'] as const) {
      console.error(`trainer-throughput: PyTorch twin, ${variant}, ${shape.size}x${shape.size} batch ${shape.batch}, on its own (child process)`);
      // The aten op count: a profiled step.
      const profile = !quick;
      const stdout = execFileSync(
        PYTHON,
        [
          TWIN,
          'bench',
          '--size',
          String(shape.size),
          '--batch',
          String(shape.batch),
          '--variant',
          variant,
          '--steps',
          String(steps),
          '--warmup',
          String(warmup),
          ...(profile ? [] : ['--no-profile']),
        ],
        { env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' },
      );
      const run = { ...(JSON.parse(stdout) as Omit<TwinRun, 'loadAverage1m'>), loadAverage1m: +os.loadavg()[0].toFixed(2) };
      console.error(JSON.stringify(run));
      twinRuns.push(run);
    }
  }
}
// One separate run of the twin per configuration, for its parameter and aten op counts
// (and its figures alone); the ratios come from the paired steps.
if (torchOn) runTwins();

const figures: Figure[] = [];
const machinePeakConvGflops: Record<string, { conv3x3: Rate; largeKernel: Rate }> = {};
const kernelCallCpuMicroseconds: Record<string, { reshape: number; add: number }> = {};
const fusedApply = IacCell.prototype.apply;
/**
 * The wasm tuning's gradient replacement is global: off while other backends run, as in
 * a process that trains on them. Installed only once wasm has started (its kernels' setup
 * runs then), so nothing to toggle before.
 */
let wasmStarted = false;
const wasmTuning = (on: boolean) => {
  if (wasmStarted) setWasmTuning(on);
};
for (const backend of backends) {
  if (backend === 'wasm') {
    // Before: the PC-DARTS cell edge by edge, tfjs's stock wasm kernels and the textbook
    // instance norm (only the convolution gradients, without which wasm cannot train).
    IacCell.prototype.apply = edgeByEdge;
    await initBackend({ backend: 'wasm', quiet: true });
    wasmStarted = true;
    setWasmTuning(false);
    useReferenceNorm(true);
    figures.push(await measure(BEFORE, 'wasm', Math.max(1, Math.ceil(steps / 2)), () => {}, PRIMARY));
    IacCell.prototype.apply = fusedApply;
    useReferenceNorm(false);
    setWasmTuning(true);
    for (const shape of shapes) {
      figures.push(await measure(FULL, 'wasm', steps, () => {}, shape));
      figures.push(await measure(PRUNED, 'wasm', steps, pruneToOne, shape));
    }
    machinePeakConvGflops.wasm = peakConvGflops();
    kernelCallCpuMicroseconds.wasm = kernelCallCost();
    console.error(
      `trainer-throughput: wasm peak ${JSON.stringify(machinePeakConvGflops.wasm)}, kernel call µs ${JSON.stringify(kernelCallCpuMicroseconds.wasm)}`,
    );
  } else if (backend === 'tensorflow') {
    if (threadCounts.includes('default')) {
      // A process that trains on TensorFlow never installs the wasm tuning, whose
      // BatchMatMul gradient (explicit transposes) is global: off while native runs.
      wasmTuning(false);
      for (const shape of shapes) {
        figures.push(await measure(FULL, 'tensorflow', steps, () => {}, shape));
        figures.push(await measure(PRUNED, 'tensorflow', steps, pruneToOne, shape));
      }
      await initBackend({ backend: 'tensorflow', quiet: true });
      machinePeakConvGflops.tensorflow = peakConvGflops();
      kernelCallCpuMicroseconds.tensorflow = kernelCallCost();
      console.error(
        `trainer-throughput: tensorflow peak ${JSON.stringify(machinePeakConvGflops.tensorflow)}, kernel call µs ${JSON.stringify(kernelCallCpuMicroseconds.tensorflow)}`,
      );
      wasmTuning(true);
    }
    for (const t of threadCounts.filter((t) => t !== 'default')) {
      console.error(`trainer-throughput: tensorflow with TF_NUM_INTRAOP_THREADS=${t} TF_NUM_INTEROP_THREADS=${t} (child process)`);
      const child = runWithTfThreads<{
        figures: Figure[];
        machinePeakConvGflops: Record<string, { conv3x3: Rate; largeKernel: Rate }>;
        kernelCallCpuMicroseconds: Record<string, { reshape: number; add: number }>;
      }>(
        import.meta.filename,
        [
          ...['--backends', 'tensorflow', '--tf-threads', 'default', '--steps', String(steps), '--warmup', String(warmup)],
          ...['--sizes', shapes.map(shapeLabel).join(','), '--torch', torchMode === 'off' ? 'off' : 'paired'],
          ...(quick ? ['--quick'] : []),
        ],
        t,
      );
      figures.push(...child.figures);
      const label = `tensorflow, ${t} thread${t === '1' ? '' : 's'} per pool`;
      machinePeakConvGflops[label] = child.machinePeakConvGflops.tensorflow;
      kernelCallCpuMicroseconds[label] = child.kernelCallCpuMicroseconds.tensorflow;
    }
  } else {
    // One step of the full supernet; no profile or per-kernel pass (each would be another
    // step of tens of CPU seconds; the kernels are those of wasm's fused step).
    wasmTuning(false);
    figures.push(await measure(FULL, 'cpu', 1, () => {}, PRIMARY, { profile: false }));
    wasmTuning(true);
  }
}

const twinFigures: TwinFigure[] = shapes.flatMap((shape) =>
  (['full', 'pruned'] as const).flatMap((variant) => {
    const runs = twinRuns.filter((t) => t.size === shape.size && t.batch === shape.batch && t.variant === variant);
    if (runs.length === 0) return [];
    const mean = (k: 'cpuMsPerStep' | 'msPerStep') => +(runs.reduce((a, r) => a + r[k], 0) / runs.length).toFixed(1);
    const profiled = runs.find((r) => r.atenOpsPerStep !== undefined);
    return [
      {
        ...runs[runs.length - 1],
        ...(profiled ? { atenOpsPerStep: profiled.atenOpsPerStep, atenOpsPerStepAllLevels: profiled.atenOpsPerStepAllLevels } : {}),
        cpuMsPerStep: mean('cpuMsPerStep'),
        msPerStep: mean('msPerStep'),
        rounds: runs.map((r) => ({ cpuMsPerStep: r.cpuMsPerStep, msPerStep: r.msPerStep, loadAverage1m: r.loadAverage1m })),
      },
    ];
  }),
);

const find = (name: string, backend: string, threads = 'default', shape: Shape = PRIMARY) =>
  figures.find(
    (f) =>
      f.name === name &&
      f.backend === backend &&
      f.sliceSize === shape.size &&
      f.batch === shape.batch &&
      (backend !== 'tensorflow' || f.tfThreads?.intraOp === threads),
  );
const ratio = (a: Figure | undefined, b: Figure | undefined, key: 'cpuMsPerStep' | 'msPerStep' = 'cpuMsPerStep') =>
  a && b ? +(a[key] / b[key]).toFixed(2) : undefined;
const variants = [
  // In-process TensorFlow runs with the environment as it is.
  ...backends
    .filter((b) => b !== 'cpu' && (b !== 'tensorflow' || threadCounts.includes('default')))
    .map((b) => ({ label: b, backend: b, threads: tfThreads().intraOp })),
  ...(backends.includes('tensorflow')
    ? threadCounts
        .filter((t) => t !== 'default')
        .map((t) => ({ label: `tensorflow, ${t} thread${t === '1' ? '' : 's'} per pool`, backend: 'tensorflow', threads: t }))
    : []),
];
const prunedVsAll = (shape: Shape) =>
  Object.fromEntries(variants.map((v) => [v.label, ratio(find(FULL, v.backend, v.threads, shape), find(PRUNED, v.backend, v.threads, shape))]));
/** wasm's cost over native's (> 1: native is cheaper), CPU and wall. */
const nativeOverWasm = (shape: Shape) =>
  Object.fromEntries(
    variants
      .filter((v) => v.backend === 'tensorflow' && backends.includes('wasm'))
      .map((v) => [
        v.label,
        Object.fromEntries(
          [
            ['full', FULL],
            ['pruned', PRUNED],
          ].map(([k, name]) => [
            k,
            {
              cpu: ratio(find(name, 'wasm', 'default', shape), find(name, 'tensorflow', v.threads, shape)),
              wall: ratio(find(name, 'wasm', 'default', shape), find(name, 'tensorflow', v.threads, shape), 'msPerStep'),
            },
          ]),
        ),
      ]),
  );
const prunedToOneVsAllByBackend = prunedVsAll(PRIMARY);
const nativeVsWasm = nativeOverWasm(PRIMARY);

/** Ours over PyTorch's, per backend, variant and size: CPU and wall per step, kernel calls per step. */
const torchRatios = variants.flatMap((v) =>
  shapes.flatMap((shape) =>
    (['full', 'pruned'] as const).flatMap((variant) => {
      const ours = find(variant === 'full' ? FULL : PRUNED, v.backend, v.threads, shape);
      const twin = twinFigures.find((t) => t.size === shape.size && t.batch === shape.batch && t.variant === variant);
      if (!ours || !twin || !ours.torchPaired) return [];
      const paired = ours.torchPaired;
      return [
        {
          backend: v.label,
          variant,
          sliceSize: shape.size,
          batch: shape.batch,
          cpu: +(ours.cpuMsPerStep / paired.cpuMsPerStep).toFixed(2),
          wall: +(ours.msPerStep / paired.msPerStep).toFixed(2),
          oursCpuMsPerStep: ours.cpuMsPerStep,
          torchCpuMsPerStep: paired.cpuMsPerStep,
          oursMsPerStep: ours.msPerStep,
          torchMsPerStep: paired.msPerStep,
          oursKernelsPerStep: ours.kernelsPerStep,
          torchAtenOpsPerStep: twin.atenOpsPerStep,
          sameParameters: JSON.stringify(ours.parameters) === JSON.stringify(twin.parameters),
        },
      ];
    }),
  ),
);
for (const r of torchRatios) {
  if (!r.sameParameters)
    throw new Error(`the PyTorch twin's ${r.variant} network at ${r.sliceSize}x${r.sliceSize} has other parameter counts than ours: the twin is out of date`);
}

/**
 * The comparison on equal terms, one thread each: wasm (single-threaded) and native
 * TensorFlow with one intra-op and one inter-op thread, each variant and size, against
 * a limit of 1.5x PyTorch's CPU per step.
 */
const TORCH_LIMIT = 1.5;
const oneThread = torchRatios.filter((r) => r.backend === 'wasm' || r.backend === 'tensorflow, 1 thread per pool');
const torchTarget = {
  limit: TORCH_LIMIT,
  ratios: oneThread.map((r) => ({ backend: r.backend, variant: r.variant, sliceSize: r.sliceSize, batch: r.batch, cpu: r.cpu })),
  met: oneThread.length > 0 && oneThread.every((r) => r.cpu <= TORCH_LIMIT),
};

if (torchRatios.length > 0) {
  const rows = torchRatios.map((r) => [
    r.backend,
    r.variant,
    `${r.sliceSize}x${r.sliceSize} b${r.batch}`,
    String(r.oursCpuMsPerStep),
    String(r.torchCpuMsPerStep),
    r.cpu.toFixed(2),
    r.wall.toFixed(2),
    String(r.oursKernelsPerStep ?? '-'),
    String(r.torchAtenOpsPerStep ?? '-'),
  ]);
  const head = ['backend', 'variant', 'size', 'ours CPU ms', 'PyTorch CPU ms', 'CPU ratio', 'wall ratio', 'our kernels', 'aten ops'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.error(`trainer-throughput: ours over PyTorch (${twinFigures[0].engine}, one thread), per step:`);
  console.error(line(head));
  for (const r of rows) console.error(line(r));
  const over = oneThread.filter((r) => r.cpu > TORCH_LIMIT);
  console.error(
    `trainer-throughput: one thread each (wasm; TensorFlow 1 intra-op + 1 inter-op thread): ${oneThread.length} ratios, ` +
      (over.length === 0
        ? `all <= ${TORCH_LIMIT}`
        : `${over.length} above ${TORCH_LIMIT}: ${over.map((r) => `${r.backend} ${r.variant} ${r.sliceSize}x${r.sliceSize} b${r.batch} ${r.cpu.toFixed(2)}`).join('; ')}`),
  );
}

const cpus = os.cpus();
const result = {
  what: 'one search step as the trainer runs it = first-order architecture step (Adam with weight decay on alphas and betas) + weights step (momentum SGD with weight decay and gradient clipping on the cell weights, backbone frozen); images/s = batch / step time; CPU = process.cpuUsage, every thread of the process',
  config: {
    depth: 3,
    nodes: 4,
    baseFilters: 16,
    sizes: shapes.map((s) => ({ sliceSize: s.size, batch: s.batch })),
    partialChannels: 4,
    operations: OPERATIONS.length,
  },
  machine: {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    loadAverageAtStart: loadAtStart,
    loadAverage: os.loadavg().map((v) => +v.toFixed(2)),
    node: process.version,
    ...(backends.includes('tensorflow') ? { tensorflow: nativeVersion(), tfThreadsInProcess: tfThreads() } : {}),
  },
  backends,
  tfThreadCounts: backends.includes('tensorflow') ? threadCounts : undefined,
  ...(notes.length > 0 ? { notes } : {}),
  command: `scripts/with-node node test/bench/trainer-throughput.ts ${args.join(' ')}`.trim(),
  date: new Date().toISOString(),
  machinePeakConvGflops,
  kernelCallCpuMicroseconds,
  figures,
  speedups: {
    // At the first of --sizes (32x32, batch 8 by default).
    afterVsBefore: ratio(find(BEFORE, 'wasm'), find(FULL, 'wasm')),
    // wasm's where measured (the figure the smallest-setting test checks), else the first backend's.
    prunedToOneVsAll: prunedToOneVsAllByBackend.wasm ?? Object.values(prunedToOneVsAllByBackend)[0],
    prunedToOneVsAllByBackend,
    ...(Object.keys(nativeVsWasm).length > 0 ? { nativeVsWasm } : {}),
    bySize: Object.fromEntries(shapes.map((s) => [shapeLabel(s), { prunedToOneVsAllByBackend: prunedVsAll(s), nativeVsWasm: nativeOverWasm(s) }])),
  },
  ...(torchOn
    ? {
        torch: {
          what: 'the PyTorch twin of the step (test/bench/torch/twin.py): one intra-op and one inter-op thread; CPU = time.process_time; these figures: one run on its own per configuration (the ratios use figures[].torchPaired, its steps taken in turn with ours); aten ops: not nested in another aten op, counted in a separate profiled step',
          figures: twinFigures,
        },
        torchRatios,
        torchTarget,
      }
    : {}),
};

/** TensorFlow's version as the native library reports it. */
function nativeVersion(): string {
  const b = tf.findBackend('tensorflow') as unknown as { binding?: { TF_Version?: string } } | null;
  return b?.binding?.TF_Version ?? '';
}

const out = option('--out') !== undefined ? path.resolve(option('--out')!) : path.join(import.meta.dirname, 'results', 'trainer-throughput.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
if (!quick && option('--out') === undefined && torchRatios.length > 0) {
  updateBenchmarksMd('trainer-throughput-torch', torchSection());
  console.error('trainer-throughput: wrote the "Against PyTorch" table of BENCHMARKS.md');
}
console.log(JSON.stringify(result, null, 2));

/** The "Against PyTorch" subsection of BENCHMARKS.md section 2 (between its markers). */
function torchSection(): string {
  const twin = twinFigures[0];
  const load = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  const lines = [
    '### Against PyTorch',
    '',
    `\`scripts/with-node npm run bench:trainer-throughput${args.length > 0 ? ` -- ${args.join(' ')}` : ''}\`` +
      ` (${result.date.slice(0, 10)}; ${result.machine.cpu}, ${result.machine.cores} cores, Node ${result.machine.node}` +
      `${result.machine.tensorflow ? `, TensorFlow ${result.machine.tensorflow}` : ''}, ${twin.engine} (Debian python3-torch), one thread). ` +
      `**Load average ${load(loadAtStart)} at the start, ${load(result.machine.loadAverage)} at the end** (1, 5, 15 minutes); ` +
      `PyTorch's steps alternated one for one with ours (\`twin.py serve\`), both after ${warmup} untimed steps; its op counts from a separate profiled run.`,
    '',
    "The same search step in both (the trainer's: architecture Adam step, then the weights' momentum-SGD step with weight decay and clipping, backbone frozen; " +
      'test/bench/torch/twin.test.ts checks on a small network that the twin has the same parameters and computes the same logits, loss, gradients and updated weights). ' +
      `Per step: the mean of ${steps} timed steps after ${warmup} untimed ones on both sides (the settled cost; see the notes below), ours and PyTorch's taken in turn. ` +
      "Ratio = our CPU ms per step / PyTorch's (below 1: ours is cheaper); CPU = every thread of the process. Kernel calls per step: ours tf.profile's kernels, " +
      'PyTorch the aten ops not nested in another aten op, each in a separate step. Full = all 10 operations; pruned = every edge pruned to one operation ' +
      '(PyTorch builds only the kept operations). Raw figures: `torchRatios` and `torch` in test/bench/results/trainer-throughput.json.',
    '',
    '| backend (TensorFlow threads) | variant | slice, batch | ours CPU ms | PyTorch CPU ms | **ours / PyTorch, CPU** | ours / PyTorch, wall | our kernels/step | PyTorch aten ops/step |',
    '|---|---|---|---|---|---|---|---|---|',
    ...torchRatios.map(
      (r) =>
        `| ${r.backend === 'tensorflow' ? `tensorflow (${tfThreads().intraOp})` : r.backend} | ${r.variant} | ${r.sliceSize}x${r.sliceSize}, ${r.batch} | ${r.oursCpuMsPerStep} | ${r.torchCpuMsPerStep} | **${r.cpu.toFixed(2)}** | ${r.wall.toFixed(2)} | ${r.oursKernelsPerStep ?? '-'} | ${r.torchAtenOpsPerStep ?? '-'} |`,
    ),
  ];
  return lines.join('\n');
}
