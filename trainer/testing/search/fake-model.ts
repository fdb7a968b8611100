// A tiny stand-in for the model, for unit tests of the loops: a one-level
// "U-Net" (a 3x3 convolution and a 1x1 head) with DARTS cells of cheap operations
// on its skip feature. It keeps the Network / ArchitectureParams contract:
// supernet, discrete cells, pruned operations are not computed, stable weight names.
import * as tf from '@tensorflow/tfjs-core';
import { mixSeed, mulberry32 } from '../../src/util/random.ts';
import type { Operation } from '../../src/config/index.ts';
import type { ArchitectureParams, CellSearchSpace, Genotype, Network, NetworkOptions } from '../../src/model/api.ts';
import { readCheckpoint, restoreVariables, writeCheckpoint } from '../../src/training/checkpoint.ts';
import type { ModelKit } from '../../src/training/model-kit.ts';
import { deriveGenotype } from '../../src/model/genotype.ts';
import { edgeCount, edgeIndex } from '../../src/model/topology.ts';

const CH = 4;

function init(seed: number, name: string, shape: number[], std: number): tf.Variable {
  const r = mulberry32(mixSeed(seed, name));
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = (r() - 0.5) * 2 * std;
  return tf.variable(tf.tensor(v, shape), true, `${name}#${Math.floor(Math.random() * 1e9)}`);
}

function applyOp(op: Operation, x: tf.Tensor4D, w: tf.Variable | undefined): tf.Tensor4D {
  switch (op) {
    case 'none':
      return tf.zerosLike(x);
    case 'skip_connect':
      return x;
    case 'avg_pool_3x3':
      return tf.avgPool(x, 3, 1, 'same');
    case 'max_pool_3x3':
      return tf.maxPool(x, 3, 1, 'same');
    default:
      return tf.relu(tf.conv2d(x, w as tf.Variable as unknown as tf.Tensor4D, 1, 'same'));
  }
}

class FakeArch implements ArchitectureParams {
  readonly alphas: tf.Variable[];
  readonly betas: tf.Variable[];
  activeOps: number[][][];
  constructor(cells: number, edges: number, ops: number) {
    this.alphas = Array.from({ length: cells }, () => tf.variable(tf.randomUniform([edges, ops], -1e-3, 1e-3, 'float32', 7)));
    this.betas = Array.from({ length: cells }, () => tf.variable(tf.zeros([edges])));
    this.activeOps = Array.from({ length: cells }, () => Array.from({ length: edges }, () => Array.from({ length: ops }, (_, i) => i)));
  }
  active(cell: number, edge: number): readonly number[] {
    return this.activeOps[cell][edge];
  }
  prune(cell: number, edge: number, keep: readonly number[]): void {
    const cur = this.activeOps[cell][edge];
    if (!keep.every((k) => cur.includes(k))) throw new Error('prune: keep must be a subset of the active operations');
    this.activeOps[cell][edge] = [...keep].sort((a, b) => a - b);
  }
  snapshot() {
    return {
      alphas: this.alphas.map((a) => a.arraySync() as number[][]),
      betas: this.betas.map((b) => Array.from(b.dataSync())),
      active: structuredClone(this.activeOps),
    };
  }
  restore(s: { alphas: number[][][]; betas: number[][]; active: number[][][] }): void {
    for (const [c, a] of s.alphas.entries()) this.alphas[c].assign(tf.tensor2d(a));
    for (const [c, b] of s.betas.entries()) this.betas[c].assign(tf.tensor1d(b));
    this.activeOps = structuredClone(s.active);
  }
}

class FakeNetwork implements Network {
  readonly options: NetworkOptions;
  readonly backboneVariables: tf.Variable[];
  readonly cellVariables: tf.Variable[];
  readonly arch?: FakeArch;
  private readonly named = new Map<string, tf.Variable>();
  private readonly opWeights = new Map<string, tf.Variable>();
  private readonly space: CellSearchSpace;
  readonly cells = 2;

  constructor(o: NetworkOptions) {
    this.options = o;
    this.space = o.space ?? { operations: ['skip_connect', 'conv_3x3'], nodes: 1, partialChannels: 1 };
    const add = (name: string, shape: number[], std: number) => {
      const v = init(o.seed, name, shape, std);
      this.named.set(name, v);
      return v;
    };
    this.backboneVariables = [add('enc/w', [3, 3, o.inChannels, CH], 0.5), add('head/w', [1, 1, CH * 2, o.numClasses], 0.5)];
    this.cellVariables = [];
    if (o.cells === 'none') return;
    const edges = edgeCount(this.space.nodes);
    for (let c = 0; c < this.cells; c++) {
      for (let e = 0; e < edges; e++) {
        this.space.operations.forEach((op, k) => {
          if (!op.includes('conv')) return;
          const name = `cell${c}/edge${e}/${op}`;
          if (o.cells !== 'supernet' && !this.discreteUses(o.cells as Genotype, c, e, op)) return;
          const v = add(name, [3, 3, CH, CH], 0.1);
          this.opWeights.set(`${c}.${e}.${k}`, v);
          this.cellVariables.push(v);
        });
      }
    }
    if (o.cells === 'supernet') this.arch = new FakeArch(this.cells, edges, this.space.operations.length);
  }

  private discreteUses(g: Genotype, c: number, e: number, op: Operation): boolean {
    return g.cells[c].nodes.some((n, node) => n.some((edge) => edgeIndex(node, edge.input) === e && edge.op === op));
  }

  private cell(c: number, s: tf.Tensor4D): tf.Tensor4D {
    const nodes = this.space.nodes;
    const states = [s, tf.mul(s, 0.5) as tf.Tensor4D];
    const ops = this.space.operations;
    for (let node = 0; node < nodes; node++) {
      const terms: tf.Tensor4D[] = [];
      if (this.options.cells === 'supernet') {
        const arch = this.arch!;
        const first = edgeIndex(node, 0);
        const betas = tf.softmax(tf.slice(arch.betas[c], [first], [node + 2]));
        for (let input = 0; input < node + 2; input++) {
          const e = first + input;
          const active = arch.active(c, e);
          // A mask instead of gather: gather's gradient has no wasm kernel.
          const mask = ops.map((_, k) => (active.includes(k) ? 0 : -1e9));
          const w = tf.softmax(tf.add(tf.reshape(tf.slice(arch.alphas[c], [e, 0], [1, ops.length]), [ops.length]), tf.tensor1d(mask)));
          const mixed = tf.addN(active.map((k) => tf.mul(applyOp(ops[k], states[input], this.opWeights.get(`${c}.${e}.${k}`)), tf.slice(w, [k], [1]))));
          terms.push(tf.mul(mixed, tf.slice(betas, [input], [1])) as tf.Tensor4D);
        }
      } else {
        const g = this.options.cells as Genotype;
        for (const edge of g.cells[c].nodes[node]) {
          const k = ops.indexOf(edge.op);
          terms.push(applyOp(edge.op, states[edge.input], this.opWeights.get(`${c}.${edgeIndex(node, edge.input)}.${k}`)));
        }
      }
      states.push(tf.addN(terms) as tf.Tensor4D);
    }
    return tf.addN(states.slice(2)) as tf.Tensor4D;
  }

  apply(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const f = tf.relu(tf.conv2d(x, this.backboneVariables[0] as unknown as tf.Tensor4D, 1, 'same'));
      let skip = tf.zerosLike(f) as tf.Tensor4D;
      if (this.options.cells !== 'none') for (let c = 0; c < this.cells; c++) skip = tf.add(skip, this.cell(c, f)) as tf.Tensor4D;
      return tf.conv2d(tf.concat([f, skip], 3), this.backboneVariables[1] as unknown as tf.Tensor4D, 1, 'same');
    });
  }

  namedWeights(): Map<string, tf.Variable> {
    return this.named;
  }

  dispose(): void {
    for (const v of this.named.values()) v.dispose();
    if (this.arch) {
      for (const a of this.arch.alphas) a.dispose();
      for (const b of this.arch.betas) b.dispose();
    }
  }
}

export const fakeModelKit: ModelKit = {
  createNetwork: (o) => new FakeNetwork(o),
  loss: (logits, labels, numClasses) =>
    tf.tidy(
      () => tf.losses.softmaxCrossEntropy(tf.oneHot(tf.reshape(labels, [-1]) as tf.Tensor1D, numClasses), tf.reshape(logits, [-1, numClasses])) as tf.Scalar,
    ),
  deriveGenotype,
  saveWeights: async (net, dir) => writeCheckpoint(dir, {}, net.namedWeights()),
  loadWeights: async (net, dir) => restoreVariables(readCheckpoint(dir)!.tensors, net.namedWeights(), dir),
  loadBackbone: async (net, dir) => {
    const names = new Set(['enc/w', 'head/w']);
    restoreVariables(readCheckpoint(dir)!.tensors, new Map([...net.namedWeights()].filter(([n]) => names.has(n))), dir);
  },
  checkMemory: async ({ batchSize, batchField }) => (batchSize > 512 ? `${batchField} ${batchSize} does not fit; lower it` : null),
};
