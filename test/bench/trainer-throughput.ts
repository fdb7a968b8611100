// Throughput of one IAC search step (a weights step + a first-order architecture
// step) of the full supernet: depth 3, 4 nodes, base 16 filters, 32x32 slices,
// batch 8, K=4, all 10 operations. Measures, in one process and one command:
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
// and writes test/bench/results/trainer-throughput.json.
//
//   scripts/with-node node test/bench/trainer-throughput.ts [--steps N] [--quick] [--out file.json]
//       [--backends wasm,tensorflow,cpu] [--tf-threads default,1]
//
// --backends: default wasm, and tensorflow where @tensorflow/tfjs-node loads. cpu is
// measured only when named: its one step costs about as much CPU as everything else
// together (~50 CPU s on the project's machine, minutes of wall time when it is busy).
// --tf-threads: 'default' measures native TensorFlow in this process
// with the environment as it is; a number N runs it again in a child process with
// TF_NUM_INTRAOP_THREADS=N TF_NUM_INTEROP_THREADS=N. Default: default,1 (default with
// --quick). CPU times are process.cpuUsage (every thread of the process): the figure that
// holds on a shared machine; wall times are given beside them.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import { initBackend, type BackendChoice } from '../../trainer/src/backend/index.ts';
import { IacCell } from '../../trainer/src/model/cell.ts';
import { instanceNorm, pointwise, useReferenceNorm } from '../../trainer/src/model/layers.ts';
import { setWasmTuning } from '../../trainer/src/backend/wasm-tuning.ts';
import { UNet } from '../../trainer/src/model/network.ts';
import { benchNetworkOptions, randomBatches, searchOptimizers, searchStep } from './step.ts';
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
const steps = Number(option('--steps') ?? 0) || 3;
const quick = args.includes('--quick');
const BATCH = 8;
const SIZE = 32;

type Measured = 'wasm' | 'tensorflow' | 'cpu';
const MEASURED: readonly Measured[] = ['wasm', 'tensorflow', 'cpu'];

function parseList(name: string, value: string): string[] {
  const list = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
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
function kernelFlops(name: string, args: tf.NamedAttrMap & { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap }, out: tf.TensorInfo | tf.TensorInfo[]): number {
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
  /** Native TensorFlow's thread pools: the environment variables as they were ('default': unset). */
  tfThreads?: { intraOp: string; interOp: string };
  steps: number;
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

async function measure(name: string, backend: BackendChoice, n: number, setup: (net: UNet) => void, opts: { profile?: boolean } = {}): Promise<Figure> {
  await initBackend({ backend, quiet: true });
  const net = makeNet();
  setup(net);
  const batch = randomBatches(BATCH, SIZE);
  const opt = searchOptimizers();
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
    ...(backend === 'tensorflow' ? { tfThreads: tfThreads() } : {}),
    steps: n,
    msPerStep: Math.round(ms),
    cpuMsPerStep: Math.round(cpuMs),
    imagesPerSecond: +((BATCH * 1000) / ms).toFixed(2),
    imagesPerCpuSecond: +((BATCH * 1000) / cpuMs).toFixed(2),
    ...(peakMB === undefined ? {} : { peakMB: Math.round(peakMB) }),
    ...(kernelsPerStep === undefined ? {} : { kernelsPerStep }),
    ...(convGflopsPerSecond === undefined ? {} : { convGflopsPerSecond, convShareOfStep }),
    ...(topKernels === undefined ? {} : { topKernels }),
    ...(threads === undefined ? {} : { osThreads: threads }),
  };
  console.error(JSON.stringify({ ...f, topKernels: undefined }));
  return f;
}

const pruneToOne = (net: UNet) => {
  // Every edge keeps one operation, cycling through the non-'none' ones.
  const ops = net.arch!.space.operations;
  const real = ops.map((_, i) => i).filter((i) => ops[i] !== 'none');
  for (let c = 0; c < net.arch!.cells; c++) for (let e = 0; e < net.arch!.edges; e++) net.arch!.prune(c, e, [real[(c * net.arch!.edges + e) % real.length]]);
};

const FULL = 'after: fused cell, 10 operations';
const PRUNED = 'after: fused cell, every edge pruned to 1 operation';

const loadAtStart = os.loadavg().map((v) => +v.toFixed(2));
const { backends, notes } = await chooseBackends();
const threadCounts = option('--tf-threads') !== undefined ? parseList('--tf-threads', option('--tf-threads')!) : quick ? ['default'] : ['default', '1'];
for (const t of threadCounts) if (t !== 'default' && !(Number.isInteger(Number(t)) && Number(t) > 0)) throw new Error(`--tf-threads: ${t} is neither 'default' nor a thread count`);
for (const n of notes) console.error(`trainer-throughput: ${n}`);
console.error(`trainer-throughput: backends ${backends.join(', ')}; steps ${steps}${quick ? ', quick' : ''}`);

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
    figures.push(await measure('before: edge-by-edge cell, stock wasm kernels, 10 operations', 'wasm', Math.max(1, Math.ceil(steps / 2)), () => {}));
    IacCell.prototype.apply = fusedApply;
    useReferenceNorm(false);
    setWasmTuning(true);
    figures.push(await measure(FULL, 'wasm', steps, () => {}));
    figures.push(await measure(PRUNED, 'wasm', steps, pruneToOne));
    machinePeakConvGflops.wasm = peakConvGflops();
    kernelCallCpuMicroseconds.wasm = kernelCallCost();
    console.error(`trainer-throughput: wasm peak ${JSON.stringify(machinePeakConvGflops.wasm)}, kernel call µs ${JSON.stringify(kernelCallCpuMicroseconds.wasm)}`);
  } else if (backend === 'tensorflow') {
    if (threadCounts.includes('default')) {
      // A process that trains on TensorFlow never installs the wasm tuning, whose
      // BatchMatMul gradient (explicit transposes) is global: off while native runs.
      wasmTuning(false);
      figures.push(await measure(FULL, 'tensorflow', steps, () => {}));
      figures.push(await measure(PRUNED, 'tensorflow', steps, pruneToOne));
      await initBackend({ backend: 'tensorflow', quiet: true });
      machinePeakConvGflops.tensorflow = peakConvGflops();
      kernelCallCpuMicroseconds.tensorflow = kernelCallCost();
      console.error(`trainer-throughput: tensorflow peak ${JSON.stringify(machinePeakConvGflops.tensorflow)}, kernel call µs ${JSON.stringify(kernelCallCpuMicroseconds.tensorflow)}`);
      wasmTuning(true);
    }
    for (const t of threadCounts.filter((t) => t !== 'default')) {
      // TensorFlow sizes its thread pools once, from the environment, when it starts.
      const dir = mkdtempSync(path.join(os.tmpdir(), 'trainer-throughput-'));
      const childOut = path.join(dir, 'tf.json');
      console.error(`trainer-throughput: tensorflow with TF_NUM_INTRAOP_THREADS=${t} TF_NUM_INTEROP_THREADS=${t} (child process)`);
      execFileSync(
        process.execPath,
        [import.meta.filename, '--backends', 'tensorflow', '--tf-threads', 'default', '--steps', String(steps), '--out', childOut, ...(quick ? ['--quick'] : [])],
        { env: { ...process.env, TF_NUM_INTRAOP_THREADS: t, TF_NUM_INTEROP_THREADS: t }, stdio: ['ignore', 'ignore', 'inherit'] },
      );
      const child = JSON.parse(readFileSync(childOut, 'utf8')) as {
        figures: Figure[];
        machinePeakConvGflops: Record<string, { conv3x3: Rate; largeKernel: Rate }>;
        kernelCallCpuMicroseconds: Record<string, { reshape: number; add: number }>;
      };
      rmSync(dir, { recursive: true, force: true });
      figures.push(...child.figures);
      const label = `tensorflow, ${t} thread${t === '1' ? '' : 's'} per pool`;
      machinePeakConvGflops[label] = child.machinePeakConvGflops.tensorflow;
      kernelCallCpuMicroseconds[label] = child.kernelCallCpuMicroseconds.tensorflow;
    }
  } else {
    // One step of the full supernet; no profile or per-kernel pass (each would be another
    // step of tens of CPU seconds; the kernels are those of wasm's fused step).
    wasmTuning(false);
    figures.push(await measure(FULL, 'cpu', 1, () => {}, { profile: false }));
    wasmTuning(true);
  }
}

const find = (name: string, backend: string, threads = 'default') =>
  figures.find((f) => f.name === name && f.backend === backend && (backend !== 'tensorflow' || f.tfThreads?.intraOp === threads));
const ratio = (a: Figure | undefined, b: Figure | undefined, key: 'cpuMsPerStep' | 'msPerStep' = 'cpuMsPerStep') =>
  a && b ? +(a[key] / b[key]).toFixed(2) : undefined;
const variants = [
  // In-process TensorFlow runs with the environment as it is.
  ...backends
    .filter((b) => b !== 'cpu' && (b !== 'tensorflow' || threadCounts.includes('default')))
    .map((b) => ({ label: b, backend: b, threads: tfThreads().intraOp })),
  ...(backends.includes('tensorflow') ? threadCounts.filter((t) => t !== 'default').map((t) => ({ label: `tensorflow, ${t} thread${t === '1' ? '' : 's'} per pool`, backend: 'tensorflow', threads: t })) : []),
];
const prunedToOneVsAllByBackend = Object.fromEntries(variants.map((v) => [v.label, ratio(find(FULL, v.backend, v.threads), find(PRUNED, v.backend, v.threads))]));
/** wasm's cost over native's (> 1: native is cheaper), CPU and wall. */
const nativeVsWasm = Object.fromEntries(
  variants
    .filter((v) => v.backend === 'tensorflow' && backends.includes('wasm'))
    .map((v) => [
      v.label,
      Object.fromEntries(
        [
          ['full', FULL],
          ['pruned', PRUNED],
        ].map(([k, name]) => [k, { cpu: ratio(find(name, 'wasm'), find(name, 'tensorflow', v.threads)), wall: ratio(find(name, 'wasm'), find(name, 'tensorflow', v.threads), 'msPerStep') }]),
      ),
    ]),
);

const cpus = os.cpus();
const result = {
  what: 'one search step = weights step (momentum SGD on cell weights, backbone frozen) + first-order architecture step (Adam on alphas and betas); images/s = batch / step time; CPU = process.cpuUsage, every thread of the process',
  config: { depth: 3, nodes: 4, baseFilters: 16, sliceSize: SIZE, batch: BATCH, partialChannels: 4, operations: OPERATIONS.length },
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
    afterVsBefore: ratio(find('before: edge-by-edge cell, stock wasm kernels, 10 operations', 'wasm'), find(FULL, 'wasm')),
    // wasm's where measured (the figure the smallest-setting test checks), else the first backend's.
    prunedToOneVsAll: prunedToOneVsAllByBackend.wasm ?? Object.values(prunedToOneVsAllByBackend)[0],
    prunedToOneVsAllByBackend,
    ...(Object.keys(nativeVsWasm).length > 0 ? { nativeVsWasm } : {}),
  },
};

/** TensorFlow's version as the native library reports it. */
function nativeVersion(): string {
  const b = tf.findBackend('tensorflow') as unknown as { binding?: { TF_Version?: string } } | null;
  return b?.binding?.TF_Version ?? '';
}

const out = option('--out') !== undefined ? path.resolve(option('--out')!) : path.join(import.meta.dirname, 'results', 'trainer-throughput.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
console.log(JSON.stringify(result, null, 2));
