// Inference cost of the exported model: onnxruntime-node (CPU) against the tfjs
// forward pass the trainer's evaluate and predict use (wasm and native TensorFlow), on
// batches of 32x32 and 64x64 slices, all in one command and one process. The network is
// the default configuration's (depth 3, 16 base filters, 4 nodes per cell, K = 4, 4
// classes) with a fixed genotype that uses every kind of operation, and random weights
// (the cost does not depend on their values).
//
//   scripts/with-node node test/bench/onnx-inference.ts [--sizes 32,64] [--batch 16] [--runs 7]
//       [--backends wasm,tensorflow] [--out file.json]
//
// One call = one batch in, logits out in JS memory: tfjs net.apply(x, {training: false})
// and data(); onnxruntime session.run fetching 'logits' only (its 'probabilities' output is
// not computed then). Each engine gets 2 warm-up calls, then --runs measured calls; the
// figure is the median per slice. CPU = process.cpuUsage (every thread of the process),
// the figure that holds on a shared machine; wall time beside it. onnxruntime runs twice:
// with its default thread pool, and with intraOpNumThreads 1 (no pool: CPU time counts no
// spinning worker threads). Writes test/bench/results/onnx-inference.json.
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as ort from 'onnxruntime-node';
import { initBackend, type BackendChoice } from '../../trainer/src/backend/index.ts';
import { OPERATIONS } from '../../trainer/src/config/index.ts';
import { networkToOnnx } from '../../trainer/src/export/onnx.ts';
import { genotypeOf, randomizeWeights } from '../../trainer/testing/export.ts';
import { compareWithOnnxRuntime } from '../../trainer/src/export/verify.ts';
import type { Network } from '../../trainer/src/model/api.ts';
import { createNetwork } from '../../trainer/src/model/network.ts';
import { machine, median, parseFlags } from './lib.ts';

const flags = parseFlags(process.argv.slice(2));
const list = (name: string, fallback: string) =>
  (flags.get(name) ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const sizes = list('sizes', '32,64').map(Number);
const batch = Number(flags.get('batch') ?? 16);
const runs = Number(flags.get('runs') ?? 7);
for (const [name, v] of [
  ['--batch', batch],
  ['--runs', runs],
] as const) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive whole number`);
}
for (const s of sizes) if (!Number.isInteger(s) || s < 8 || s % 8 !== 0) throw new Error(`--sizes: ${s} is not a multiple of 2^depth = 8`);

const DEPTH = 3;
const BASE = 16;
const CLASSES = 4;
const K = 4;
/** Three cells, four nodes each, two edges per node; every kind of operation appears. */
const GENOTYPE = genotypeOf([
  [
    [
      [0, 'sep_conv_3x3'],
      [1, 'skip_connect'],
    ],
    [
      [0, 'conv_3x3'],
      [2, 'max_pool_3x3'],
    ],
    [
      [1, 'dil_conv_3x3'],
      [3, 'sep_conv_3x3'],
    ],
    [
      [0, 'skip_connect'],
      [4, 'avg_pool_3x3'],
    ],
  ],
  [
    [
      [0, 'conv_5x5'],
      [1, 'sep_conv_3x3'],
    ],
    [
      [1, 'skip_connect'],
      [2, 'dil_conv_5x5'],
    ],
    [
      [0, 'max_pool_3x3'],
      [3, 'sep_conv_5x5'],
    ],
    [
      [2, 'conv_3x3'],
      [4, 'skip_connect'],
    ],
  ],
  [
    [
      [0, 'skip_connect'],
      [1, 'dil_conv_3x3'],
    ],
    [
      [0, 'sep_conv_3x3'],
      [2, 'avg_pool_3x3'],
    ],
    [
      [1, 'conv_3x3'],
      [3, 'skip_connect'],
    ],
    [
      [3, 'sep_conv_3x3'],
      [4, 'max_pool_3x3'],
    ],
  ],
]);

function build(): Network {
  const net = createNetwork({
    backbone: { depth: DEPTH, baseFilters: BASE, pretrainEpochs: 1, learningRate: 1e-3 },
    inChannels: 1,
    numClasses: CLASSES,
    cells: GENOTYPE,
    space: { operations: [...OPERATIONS], nodes: 4, partialChannels: K },
    seed: 0,
  });
  randomizeWeights(net, 0);
  return net;
}

interface Figure {
  size: number;
  engine: string;
  batch: number;
  runs: number;
  cpuMsPerSlice: number;
  wallMsPerSlice: number;
  /** Every measured call, CPU ms per slice. */
  cpuMsPerSliceRuns: number[];
}

async function measure(size: number, engine: string, call: () => Promise<void>): Promise<Figure> {
  for (let i = 0; i < 2; i++) await call();
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let r = 0; r < runs; r++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await call();
    const t = performance.now() - t0;
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000 / batch);
    wall.push(t / batch);
  }
  const f = {
    size,
    engine,
    batch,
    runs,
    cpuMsPerSlice: +median(cpu).toFixed(3),
    wallMsPerSlice: +median(wall).toFixed(3),
    cpuMsPerSliceRuns: cpu.map((v) => +v.toFixed(3)),
  };
  process.stderr.write(
    `${size}x${size} ${engine.padEnd(26)} ${f.cpuMsPerSlice.toFixed(2).padStart(8)} CPU ms/slice ${f.wallMsPerSlice.toFixed(2).padStart(8)} wall ms/slice\n`,
  );
  return f;
}

async function availableBackends(): Promise<{ backends: BackendChoice[]; lines: Record<string, string>; notes: string[] }> {
  const wanted = list('backends', 'wasm,tensorflow') as BackendChoice[];
  const backends: BackendChoice[] = [];
  const lines: Record<string, string> = {};
  const notes: string[] = [];
  for (const b of wanted) {
    if (b !== 'wasm' && b !== 'tensorflow' && b !== 'cpu') throw new Error(`--backends: ${b} is not one of wasm, tensorflow, cpu`);
    try {
      lines[b] = (await initBackend({ backend: b, quiet: true })).line;
      backends.push(b);
    } catch (e) {
      if (flags.has('backends')) throw e;
      notes.push(`${b} not measured: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { backends, lines, notes };
}

const loadAtStart = os.loadavg().map((v) => +v.toFixed(2));
const { backends, lines, notes } = await availableBackends();
const figures: Figure[] = [];
const agreement: { size: number; backend: string; maxAbsDiff: number; relative: number }[] = [];
let onnxBytes = 0;
let parameters = 0;
for (const size of sizes) {
  // The model is exported once per size (the input's height and width are fixed in it).
  await initBackend({ backend: backends[0], quiet: true });
  let net = build();
  const exported = networkToOnnx(net, { height: size, classNames: ['background', 'LV', 'MYO', 'RV'] });
  onnxBytes = exported.bytes.length;
  parameters = exported.parameters;
  net.dispose();
  const input = tf.tidy(() => tf.randomNormal([batch, size, size, 1], 0, 1, 'float32', 1).dataSync() as Float32Array);
  const nchw = new Float32Array(input.length);
  for (let i = 0; i < input.length; i++) nchw[i] = input[i]; // one channel: NHWC and NCHW coincide
  for (const [engine, options] of [
    ['onnxruntime (default threads)', {}],
    ['onnxruntime (1 thread)', { intraOpNumThreads: 1, interOpNumThreads: 1 }],
  ] as const) {
    const session = await ort.InferenceSession.create(exported.bytes, { executionProviders: ['cpu'], ...options });
    const feeds = { image: new ort.Tensor('float32', nchw, [batch, 1, size, size]) };
    figures.push(
      await measure(size, engine, async () => {
        const out = await session.run(feeds, ['logits']);
        if ((out.logits.data as Float32Array).length !== batch * CLASSES * size * size) throw new Error('unexpected logits size');
      }),
    );
    await session.release();
  }
  for (const b of backends) {
    await initBackend({ backend: b, quiet: true });
    net = build();
    const x = tf.tensor4d(input, [batch, size, size, 1]);
    figures.push(
      await measure(size, `tfjs ${b}`, async () => {
        const y = tf.tidy(() => net.apply(x, { training: false }));
        await y.data();
        y.dispose();
      }),
    );
    const c = await compareWithOnnxRuntime(net, exported.bytes, x);
    agreement.push({ size, backend: b, maxAbsDiff: +c.maxAbsDiff.toExponential(3), relative: +c.relative.toExponential(3) });
    x.dispose();
    net.dispose();
  }
}

const cpuOf = (size: number, engine: string) => figures.find((f) => f.size === size && f.engine === engine)?.cpuMsPerSlice;
const speedups: Record<string, Record<string, number>> = {};
for (const size of sizes) {
  const ortCpu = cpuOf(size, 'onnxruntime (1 thread)')!;
  const s: Record<string, number> = {};
  for (const b of backends) s[`tfjs ${b} / onnxruntime (1 thread)`] = +(cpuOf(size, `tfjs ${b}`)! / ortCpu).toFixed(2);
  speedups[`${size}x${size}`] = s;
}

const result = {
  what: "inference of the exported network: one call = a batch of slices in, logits out in JS memory; CPU ms per slice = process.cpuUsage (every thread of the process) / slices, median of the measured calls; tfjs = net.apply(x, {training: false}) + data(); onnxruntime = session.run fetching 'logits'",
  command: `scripts/with-node node test/bench/onnx-inference.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
  config: {
    depth: DEPTH,
    baseFilters: BASE,
    nodes: 4,
    partialChannels: K,
    classes: CLASSES,
    batch,
    runs,
    sizes,
    parameters,
    onnxBytes,
    genotype: JSON.stringify(GENOTYPE.cells.map((c) => c.nodes.map((n) => n.map((e) => [e.input, e.op])))),
  },
  machine: {
    ...machine(),
    loadAverageAtStart: loadAtStart,
    loadAverage: os.loadavg().map((v) => +v.toFixed(2)),
    onnxruntime: ort.env.versions.node ?? ort.env.versions.common,
    backends: lines,
  },
  notes,
  figures,
  speedups,
  agreement,
  time: new Date().toISOString(),
};
const out = flags.has('out') ? path.resolve(flags.get('out')!) : path.join(import.meta.dirname, 'results', 'onnx-inference.json');
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
process.stderr.write(`wrote ${out}\n`);
