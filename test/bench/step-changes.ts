// What each change to the search step bought: the trainer's step (step.ts searchStep:
// architecture step with Adam, then weights step with momentum SGD, weight decay and
// gradient clipping, as trainer/src/search/search.ts runs it) with every change on, with each change
// off alone, and with all of them off, in one process per backend, the
// configurations interleaved round by round so that the machine's load weighs on
// all of them alike. Native TensorFlow runs in a child process with one intra-op and
// one inter-op thread (TensorFlow reads its thread settings when it starts), as the
// PyTorch comparison of trainer-throughput does.
//
//   scripts/with-node node test/bench/step-changes.ts [--rounds N] [--backends wasm,tensorflow]
//       [--sizes 32x8,64x4] [--variants full,pruned] [--out file.json]
//
// Writes test/bench/results/step-changes.json: CPU ms per step (mean over the
// rounds after one warm-up round) and kernel calls per step for every configuration.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../trainer/src/backend/index.ts';
import { installEngineTuning, uninstallEngineTuning } from '../../trainer/src/backend/engine-tuning.ts';
import { useFilterCache } from '../../trainer/src/backend/gradients.ts';
import { setNativeTuning } from '../../trainer/src/backend/native-tuning.ts';
import { setWasmNormalize } from '../../trainer/src/backend/norm-kernel.ts';
import { setWasmGradientKernels } from '../../trainer/src/backend/wasm-tuning.ts';
import { useChannelSplits } from '../../trainer/src/model/cell.ts';
import { useSpatialNorm } from '../../trainer/src/model/layers.ts';
import { UNet } from '../../trainer/src/model/network.ts';
import { useStackedUpdates } from '../../trainer/src/training/optimizers.ts';
import { parseFlags, runWithTfThreads } from './lib.ts';
import { benchNetworkOptions, pruneToOne, randomBatches, searchOptimizers, searchStep } from './step.ts';

const args = process.argv.slice(2);
const flags = parseFlags(args);
const option = (name: string): string | undefined => flags.get(name.replace(/^--/, ''));
const list = (name: string, fallback: string) =>
  (option(name) ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
const rounds = Number(option('--rounds') ?? 4);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
const backends = list('--backends', 'wasm,tensorflow');
for (const b of backends) if (b !== 'wasm' && b !== 'tensorflow') throw new Error(`--backends: ${b} is not wasm or tensorflow`);
const sizes = list('--sizes', '32x8,64x4').map((s) => {
  const m = /^(\d+)x(\d+)$/.exec(s);
  if (!m) throw new Error(`--sizes: ${s} is not <slice size>x<batch>, e.g. 32x8`);
  return { size: Number(m[1]), batch: Number(m[2]) };
});
const variants = list('--variants', 'full,pruned');
for (const v of variants) if (v !== 'full' && v !== 'pruned') throw new Error(`--variants: ${v} is not full or pruned`);
const child = flags.has('child');

interface Change {
  name: string;
  /** Backends where the change applies. */
  on: readonly string[];
  /** 'fewer': the change removes kernel calls; 'same': it replaces kernels one for one (faster ones). */
  kernels: 'fewer' | 'same';
  set(enabled: boolean): void;
}

const CHANGES: readonly Change[] = [
  { name: 'optimizer updates stacked by shape', on: ['wasm', 'tensorflow'], kernels: 'fewer', set: (e) => useStackedUpdates(e) },
  {
    name: 'engine: shared clones of saved tensors, linear tape filter',
    on: ['wasm', 'tensorflow'],
    kernels: 'fewer',
    set: (e) => (e ? installEngineTuning() : uninstallEngineTuning()),
  },
  { name: 'input gradients: rearranged filters cached by data', on: ['wasm'], kernels: 'fewer', set: (e) => useFilterCache(e) },
  { name: 'wasm: separable MaxPoolGrad, one-pass upsampling gradient', on: ['wasm'], kernels: 'same', set: (e) => setWasmGradientKernels(e) },
  { name: 'wasm: instance norm as one kernel each way', on: ['wasm'], kernels: 'fewer', set: (e) => setWasmNormalize(e) },
  { name: 'native: cached shape constants, ReluGrad', on: ['tensorflow'], kernels: 'fewer', set: (e) => setNativeTuning(e) },
  { name: 'native: instance norm in place (NHWC statistics)', on: ['tensorflow'], kernels: 'fewer', set: (e) => useSpatialNorm(e ? undefined : false) },
  {
    name: 'native: cells split channels (one 1x1 product and norm per input, one shuffle product per node)',
    on: ['tensorflow'],
    kernels: 'fewer',
    set: (e) => useChannelSplits(e ? undefined : false),
  },
];

interface Row {
  backend: string;
  size: number;
  batch: number;
  variant: string;
  config: string;
  cpuMsPerStep: number;
  kernelsPerStep: number;
  /** For a configuration with one change off: whether that change removes kernel calls or replaces them one for one. */
  changeKernels?: Change['kernels'];
}

async function measureBackend(backend: 'wasm' | 'tensorflow'): Promise<Row[]> {
  await initBackend({ backend, quiet: true });
  const changes = CHANGES.filter((c) => c.on.includes(backend));
  const setEach = (enabled: (c: Change) => boolean) => {
    for (const c of changes) c.set(enabled(c));
  };
  const configs: { name: string; apply: () => void; off?: Change }[] = [
    { name: 'after (all changes)', apply: () => setEach(() => true) },
    ...changes.map((off) => ({ name: `without: ${off.name}`, off, apply: () => setEach((c) => c !== off) })),
    { name: 'before (no change)', apply: () => setEach(() => false) },
  ];
  const rows: Row[] = [];
  for (const { size, batch } of sizes) {
    for (const variant of variants) {
      const net = new UNet(benchNetworkOptions());
      if (variant === 'pruned') pruneToOne(net);
      const opt = searchOptimizers(net);
      const batches = randomBatches(batch, size);
      const step = () => searchStep(net, opt, batches);
      const cpu = new Map<string, number>();
      const kernels = new Map<string, number>();
      for (const c of configs) {
        c.apply();
        step(); // warm-up: plans, optimizer slots, cached constants
        kernels.set(c.name, (await tf.profile(() => void step())).kernels.length);
      }
      for (let r = 0; r < rounds; r++) {
        for (const c of r % 2 === 0 ? configs : [...configs].reverse()) {
          c.apply();
          const c0 = process.cpuUsage();
          step(); // reads the losses back: the step has finished
          const d = process.cpuUsage(c0);
          cpu.set(c.name, (cpu.get(c.name) ?? 0) + (d.user + d.system) / 1000 / rounds);
        }
      }
      configs[0].apply();
      for (const c of configs) {
        const row: Row = {
          backend,
          size,
          batch,
          variant,
          config: c.name,
          cpuMsPerStep: Math.round(cpu.get(c.name)!),
          kernelsPerStep: kernels.get(c.name)!,
          ...(c.off ? { changeKernels: c.off.kernels } : {}),
        };
        rows.push(row);
        console.error(`step-changes: ${backend} ${size}x${batch} ${variant}: ${c.name}: ${row.cpuMsPerStep} CPU ms, ${row.kernelsPerStep} kernels`);
      }
      tf.dispose(batches.flatMap((b) => [b.x, b.y]));
      opt.w.dispose();
      opt.a.dispose();
      net.dispose();
    }
  }
  return rows;
}

const out = option('--out') !== undefined ? path.resolve(option('--out')!) : path.join(import.meta.dirname, 'results', 'step-changes.json');
if (child) {
  writeFileSync(out, JSON.stringify(await measureBackend(backends[0] as 'wasm' | 'tensorflow')));
} else {
  const loadAtStart = os.loadavg().map((v) => +v.toFixed(2));
  const rows: Row[] = [];
  for (const backend of backends) {
    if (backend === 'wasm') {
      rows.push(...(await measureBackend('wasm')));
      continue;
    }
    const passOn = ['--rounds', String(rounds), '--sizes', sizes.map((s) => `${s.size}x${s.batch}`).join(','), '--variants', variants.join(',')];
    rows.push(...runWithTfThreads<Row[]>(import.meta.filename, ['--child', '--backends', 'tensorflow', ...passOn], '1'));
  }
  const result = {
    what: 'CPU ms per search step (Adam architecture step + momentum-SGD weights step, as the trainer runs it) with every change, each change off alone, and none; configurations interleaved round by round in one process per backend; native TensorFlow with 1 intra-op and 1 inter-op thread',
    command: `scripts/with-node node test/bench/step-changes.ts ${args.join(' ')}`.trim(),
    date: new Date().toISOString(),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      loadAverageAtStart: loadAtStart,
      loadAverage: os.loadavg().map((v) => +v.toFixed(2)),
      node: process.version,
    },
    rounds,
    rows,
  };
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
}
