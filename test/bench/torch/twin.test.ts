// The PyTorch twin (test/bench/torch/twin.py) computes what our search step computes:
// a small supernet (depth 2, base 8 filters, 4 nodes, K=4, all 10 operations; and the
// same pruned to one operation per edge by step.ts pruneToOne) is built here on each
// numerical backend, the weights that start constant (norm gammas and betas, the head's
// bias, the cells' output kernels: at zero they would hide everything inside the cells)
// and the alphas and betas given seeded random values, and written with two
// batches and our results to a temporary directory; `twin.py check DIR` loads the
// weights into the twin by name and reports its parameter counts and the difference of
// every result: logits and loss of one batch, the gradient of that loss with respect to
// every cell weight, alpha and beta, and every weight after one search step (step.ts
// searchStep: architecture Adam step, then the weights' momentum-SGD step). Without
// PyTorch for /usr/bin/python3 the test fails and names the package to install.
//
// Tolerances: float32 on both sides, different kernels and summation orders; measured
// differences (wasm and TensorFlow alike) in brackets.
// - logits and loss: 1e-4 of the tensor's largest magnitude [2e-6, 1e-7]. One float32
//   rounding is 6e-8 relative; the ~40 layers of the network accumulate a few dozen.
// - gradients: 1e-4 of the tensor's largest magnitude plus 1e-8 [at most 0.2 of that
//   allowance; 7e-5 relative only on a tensor whose largest gradient is 1e-5, i.e. an
//   absolute 7e-10]. The 1e-8 floor covers gradients that are 0 in exact arithmetic (the
//   alphas of an edge with one operation left: TensorFlow gives 5e-10 to 2e-9, PyTorch 0).
// - weights after the step: 1e-4 of their largest magnitude [6e-8], and the update
//   itself (after - before) 1e-3 of its largest magnitude plus two float32 spacings of
//   the weight it is added to [at most 0.2 of that allowance]: an update of 1e-5 on a
//   weight of 0.15 is resolved only to 1.5e-8.
// What these catch (tried by breaking the twin): a channel shuffle in the wrong order
// or a cell output kernel in the wrong layout moves logits by 80-100% of their scale;
// average pooling that counts its padding, 2%; a missing weight decay or gradient clip
// moves every update by 100% or more.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../../../trainer/src/backend/index.ts';
import { describeEachBackend } from '../../../trainer/testing/backend.ts';
import { diceCrossEntropyLoss } from '../../../trainer/src/model/loss.ts';
import { UNet } from '../../../trainer/src/model/network.ts';
import { repoRoot } from '../lib.ts';
import { benchNetworkOptions, pruneToOne, randomBatches, searchOptimizers, searchStep } from '../step.ts';

const run = promisify(execFile);
const PYTHON = '/usr/bin/python3';
const TWIN = path.join(repoRoot, 'test/bench/torch/twin.py');
const INSTALL = 'apt-get install python3-torch';

const DEPTH = 2;
const BASE = 8;
const SIZE = 16;
const BATCH = 2;
const FORWARD_TOLERANCE = 1e-4;
const GRADIENT_TOLERANCE = 1e-4;
const WEIGHT_TOLERANCE = 1e-4;
const UPDATE_TOLERANCE = 1e-3;
const CLIP_ACTIVE = 0.01;

interface Compared {
  maxAbsDiff: number;
  maxAbs: number;
  size: number;
  /** update/ entries: the largest magnitude of the weight before the step. */
  weightMaxAbs?: number;
}
interface Report {
  torch: string;
  parameters: { cells: number; backbone: number; arch: number };
  missing: string[];
  unused: string[];
  pruneToOneMatches: boolean;
  gradClip: number;
  /** The weights step's gradient norm before clipping (the twin's). */
  weightsGradNorm: number;
  tensors: Record<string, Compared>;
}

/** Runs `twin.py check dir`; a missing PyTorch fails with how to install it. */
async function twinCheck(dir: string): Promise<Report> {
  try {
    const { stdout } = await run(PYTHON, [TWIN, 'check', dir], {
      cwd: repoRoot,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', OMP_NUM_THREADS: '1' },
      maxBuffer: 64 << 20,
      timeout: 300_000,
    });
    return JSON.parse(stdout) as Report;
  } catch (e) {
    const err = e as Error & { code?: number | string; stderr?: string };
    if (err.code === 'ENOENT') throw new Error(`the PyTorch twin needs ${PYTHON} (Debian's python3) with PyTorch: ${INSTALL}`);
    if (err.code === 3) throw new Error(`the PyTorch twin needs PyTorch for ${PYTHON}: ${INSTALL}\n${err.stderr ?? ''}`);
    throw new Error(`${PYTHON} ${TWIN} check ${dir} failed: ${err.message}\n${err.stderr ?? ''}`);
  }
}

/** Named float32/int32 tensors written as one raw little-endian file and a JSON manifest. */
class Dump {
  private readonly parts: Buffer[] = [];
  private offset = 0;
  readonly tensors: Record<string, { dtype: string; shape: number[]; offset: number }> = {};

  add(name: string, t: tf.Tensor): void {
    if (this.tensors[name]) throw new Error(`dumped twice: ${name}`);
    const data = t.dataSync();
    const bytes = t.dtype === 'int32' ? Buffer.from(new Int32Array(data).buffer) : Buffer.from(new Float32Array(data).buffer);
    this.tensors[name] = { dtype: t.dtype === 'int32' ? 'int32' : 'float32', shape: t.shape, offset: this.offset };
    this.parts.push(bytes);
    this.offset += bytes.length;
  }

  write(dir: string, manifest: object): void {
    writeFileSync(path.join(dir, 'data.bin'), Buffer.concat(this.parts));
    writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ ...manifest, tensors: this.tensors }));
  }
}

/** Seeded values for the weights that start constant (gammas 1, betas and biases 0, the cells' output kernels 0) and for alphas and betas. */
function randomize(net: UNet): void {
  let seed = 100;
  tf.tidy(() => {
    for (const [name, v] of net.namedWeights()) {
      seed++;
      if (name.endsWith('/gamma')) v.assign(tf.add(1, tf.randomNormal(v.shape, 0, 0.1, 'float32', seed)));
      else if (name.endsWith('/beta') || name.endsWith('/bias')) v.assign(tf.randomNormal(v.shape, 0, 0.1, 'float32', seed));
      else if (name.endsWith('/out/kernel')) v.assign(tf.randomNormal(v.shape, 0, 0.2, 'float32', seed));
    }
    for (const v of [...net.arch!.alphas, ...net.arch!.betas]) v.assign(tf.randomNormal(v.shape, 0, 1, 'float32', ++seed));
  });
}

const size = (v: tf.Variable) => v.shape.reduce((a, b) => a * b, 1);

/** Our side: weights, batches, logits, loss, gradients, the weights after one search step; then the twin's report. */
async function compareWithTwin(
  variant: 'full' | 'pruned',
  gradClip?: number,
): Promise<{ report: Report; ours: { cells: number; backbone: number; arch: number; dead: string[] } }> {
  const net = new UNet(benchNetworkOptions({ depth: DEPTH, base: BASE }));
  if (variant === 'pruned') pruneToOne(net);
  randomize(net);
  const arch = net.arch!;
  const archNamed = new Map<string, tf.Variable>([
    ...arch.alphas.map((v, c) => [`arch/cell${c}/alphas`, v] as const),
    ...arch.betas.map((v, c) => [`arch/cell${c}/betas`, v] as const),
  ]);
  const weights = new Map([...net.namedWeights(), ...archNamed]);
  const cellNames = new Set([...net.namedWeights()].filter(([, v]) => net.cellVariables.includes(v)).map(([n]) => n));
  const batches = randomBatches(BATCH, SIZE); // [weights batch, architecture batch]
  const dump = new Dump();
  for (const [name, v] of weights) dump.add(`w/${name}`, v);
  dump.add('x/weights', batches[0].x);
  dump.add('y/weights', batches[0].y);
  dump.add('x/arch', batches[1].x);
  dump.add('y/arch', batches[1].y);
  // The loss of the weights batch and its gradients with respect to every cell weight and alpha/beta.
  const gradNames: string[] = [];
  const dead: string[] = [];
  tf.tidy(() => {
    const trainable = [...[...cellNames].map((n) => [n, weights.get(n)!] as const), ...archNamed];
    let logits: tf.Tensor4D | undefined;
    const { value, grads } = tf.variableGrads(
      () => {
        logits = tf.keep(net.apply(batches[0].x, { training: true }));
        return diceCrossEntropyLoss(logits, batches[0].y);
      },
      trainable.map(([, v]) => v),
    );
    dump.add('logits', logits!);
    dump.add('loss', tf.reshape(value, [1]));
    for (const [name, v] of trainable) {
      const g = grads[v.name];
      if (g === undefined) dead.push(name);
      else {
        dump.add(`grad/${name}`, g);
        gradNames.push(name);
      }
    }
    logits!.dispose();
  });
  // One search step as step.ts runs it (architecture step on batches[1], weights step on batches[0]).
  const opt = searchOptimizers(net, { gradClip });
  const [lossArch, lossWeights] = searchStep(net, opt, batches);
  dump.add('step/loss/arch', tf.tensor1d([lossArch]));
  dump.add('step/loss/weights', tf.tensor1d([lossWeights]));
  const after = [...cellNames, ...archNamed.keys()].filter((n) => !dead.includes(n));
  for (const n of after) dump.add(`after/${n}`, weights.get(n)!);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'iacnas-twin-'));
  try {
    const space = net.options.space!;
    dump.write(dir, {
      config: {
        depth: DEPTH,
        base: BASE,
        nodes: space.nodes,
        k: space.partialChannels,
        inChannels: net.options.inChannels,
        classes: net.options.numClasses,
        operations: space.operations,
        active: arch.snapshot().active,
        ...(gradClip === undefined ? {} : { gradClip }),
      },
      weights: [...weights.keys()],
      grads: gradNames,
      after,
    });
    const report = await twinCheck(dir);
    const live = [...cellNames].filter((n) => !dead.includes(n));
    return {
      report,
      ours: {
        cells: live.reduce((s, n) => s + size(weights.get(n)!), 0),
        backbone: net.backboneVariables.reduce((s, v) => s + size(v), 0),
        arch: [...archNamed.values()].reduce((s, v) => s + size(v), 0),
        dead,
      },
    };
  } finally {
    // IACNAS_TWIN_KEEP=1 keeps the directory for `twin.py check DIR` by hand.
    if (process.env.IACNAS_TWIN_KEEP) process.stderr.write(`twin: kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
    opt.w.dispose();
    opt.a.dispose();
    tf.dispose(batches.flatMap((b) => [b.x, b.y]));
    net.dispose();
  }
}

/** Float32's relative spacing (2^-23): a stored weight w is resolved to about |w| * this. */
const F32_SPACING = 2 ** -23;
/** Gradients that are 0 in exact arithmetic (the alphas of an edge with one operation left) come out of TensorFlow at ~1e-9. */
const GRADIENT_FLOOR = 1e-8;

/** The largest difference allowed for a compared tensor (see the tolerances at the top). */
function allowed(name: string, c: Compared): number {
  if (name.startsWith('update/')) return UPDATE_TOLERANCE * c.maxAbs + 2 * F32_SPACING * (c.weightMaxAbs ?? 0);
  if (name.startsWith('after/')) return WEIGHT_TOLERANCE * c.maxAbs;
  if (name.startsWith('grad/')) return GRADIENT_TOLERANCE * c.maxAbs + GRADIENT_FLOOR;
  return FORWARD_TOLERANCE * c.maxAbs;
}

/** Tensors whose difference is above their tolerance, with the figures. */
function outOfTolerance(report: Report): string[] {
  return Object.entries(report.tensors)
    .filter(([name, c]) => !(c.maxAbsDiff <= allowed(name, c)))
    .map(
      ([name, c]) =>
        `${name}: max |ours - twin| ${c.maxAbsDiff.toExponential(2)} > allowed ${allowed(name, c).toExponential(2)} (max |ours| ${c.maxAbs.toExponential(2)})`,
    );
}

/** By kind: the largest difference relative to the tensor's largest magnitude, and the largest share of its tolerance used. */
function worst(report: Report): Record<string, { relative: string; ofTolerance: string }> {
  const out: Record<string, { relative: number; ofTolerance: number }> = {};
  for (const [name, c] of Object.entries(report.tensors)) {
    const kind = name.split('/')[0];
    out[kind] ??= { relative: 0, ofTolerance: 0 };
    const w = out[kind];
    w.relative = Math.max(w.relative, c.maxAbs > 0 ? c.maxAbsDiff / c.maxAbs : c.maxAbsDiff === 0 ? 0 : Infinity);
    w.ofTolerance = Math.max(w.ofTolerance, c.maxAbsDiff / allowed(name, c));
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { relative: v.relative.toExponential(1), ofTolerance: v.ofTolerance.toFixed(3) }]));
}

describeEachBackend('PyTorch twin of the search step', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('the full supernet: same parameters, logits, loss, gradients and weights after one step', async () => {
    const { report, ours } = await compareWithTwin('full');
    process.stderr.write(`twin (${backend}, full, torch ${report.torch}): largest relative differences ${JSON.stringify(worst(report))}\n`);
    expect(report.missing).toEqual([]);
    expect(report.unused).toEqual([]);
    expect(ours.dead).toEqual([]);
    expect(report.parameters).toEqual({ cells: ours.cells, backbone: ours.backbone, arch: ours.arch });
    expect(Object.keys(report.tensors).filter((n) => n.startsWith('grad/')).length).toBeGreaterThan(100);
    expect(outOfTolerance(report)).toEqual([]);
  }, 600_000);

  it('every edge pruned to one operation: the twin builds only the kept operations and computes the same', async () => {
    // A clip below the gradient norm, so that the clipping is compared too (the default
    // of 5 is far above the norm of this small network's gradients).
    const { report, ours } = await compareWithTwin('pruned', CLIP_ACTIVE);
    expect(report.weightsGradNorm).toBeGreaterThan(2 * CLIP_ACTIVE);
    process.stderr.write(`twin (${backend}, pruned, torch ${report.torch}): largest relative differences ${JSON.stringify(worst(report))}\n`);
    expect(report.pruneToOneMatches).toBe(true);
    expect(report.missing).toEqual([]);
    // The pruned operations' weights exist on our side (a supernet keeps them) but get no
    // gradient; the twin does not have them at all.
    expect(ours.dead.length).toBeGreaterThan(0);
    expect([...report.unused].sort()).toEqual(ours.dead.filter((n) => !n.startsWith('arch/')).sort());
    expect(report.parameters).toEqual({ cells: ours.cells, backbone: ours.backbone, arch: ours.arch });
    expect(outOfTolerance(report)).toEqual([]);
  }, 600_000);
});
