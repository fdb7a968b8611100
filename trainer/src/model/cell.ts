// The Implantable Adaptive Cell: a DARTS-style cell in a U-Net skip connection.
//
// Inputs s0 (encoder skip feature) and s1 (upsampled decoder feature), each through
// ReLU-1x1-norm; N intermediate nodes; every edge a mixed operation over 1/K of the
// channels (PC-DARTS), the other channels bypassing it, then a channel shuffle;
// node j = sum over its edges of softmax(beta_j)[edge] * edge output; cell output =
// s0 + 1x1 conv of the concatenated nodes, zero-initialised so a fresh cell is the
// identity.
//
// How it is computed: all edges leaving one input read the same partial channels,
// so each input is processed once: every active operation runs once over all the
// edges where it is active (parameter-free ones once, convolutions fused along
// output channels), the outputs are stacked as blocks (rows [block, b, c] x pixels),
// normalised together, and one matrix product with a [nodes, blocks] coefficient
// matrix (softmax(alpha) * softmax(beta), or 1 for a discrete cell) adds every block
// into the nodes it feeds. Pruned operations have no block at all, so pruning removes
// their cost. Because the channel shuffle is a fixed permutation it commutes with the
// weighted sum and is applied once per node. On wasm, no slices or concatenations
// along the channel axis (a JS loop per pixel there): column blocks of the weights
// instead; on TensorFlow, channel splits, which take fewer kernels (useChannelSplits).
import * as tf from '@tensorflow/tfjs-core';
import type { Operation } from '../config/index.ts';
import type { GenotypeCell } from './api.ts';
import type { SupernetArchitecture } from './arch.ts';
import type { WeightStore } from './init.ts';
import { instanceNorm, normalizeRows, pointwise } from './layers.ts';
import { createOpWeights, hasWeights, isShared, OP_SPECS, rawOutput, type EdgeOpWeights } from './operations.ts';
import { edgeCount, edgeIndex } from './topology.ts';

const MASKED = -1e30;

let splitChannels: boolean | undefined;

/**
 * Whether cells split and concatenate along the channel axis (one 1x1 product and
 * norm per input, one shuffle product per node: fewer kernels) or work on column
 * blocks instead (no channel-axis split, which the wasm backend runs as a JS loop
 * per pixel); undefined chooses by backend: splits on TensorFlow. For measurements
 * and tests.
 */
export function useChannelSplits(on: boolean | undefined): void {
  splitChannels = on;
}

interface OpGroup {
  op: Operation;
  /** Edges (in order) whose output this group produces. */
  edges: number[];
  /** Weights per edge, for fused groups. */
  weights: EdgeOpWeights[];
  shared: boolean;
  /** Output blocks: 1 for a shared group, one per edge for a fused one. */
  blocks: number;
}

interface InputPlan {
  /** Groups whose outputs are instance-normalised (all but the identity), in block order. */
  normed: OpGroup[];
  normedBlocks: number;
  /** [E*O, N*blocks] 0/1: coefficient (e, o) weights block t into node j (column j*blocks + t). */
  normedRoute?: tf.Tensor2D;
  /** The identity (skip_connect) group and its [E*O, N] route, if active on any edge. */
  identity?: OpGroup;
  identityRoute?: tf.Tensor2D;
  /** [E, N] 0/1: edge e carries this input's bypass channels into node j. */
  bypass?: tf.Tensor2D;
}

interface Plan {
  version: number;
  inputs: InputPlan[];
}

export type CellMode = { kind: 'supernet'; arch: SupernetArchitecture; index: number } | { kind: 'discrete'; genotype: GenotypeCell };

export interface CellOptions {
  name: string;
  channels: number;
  s1Channels: number;
  nodes: number;
  partialChannels: number;
  operations: readonly Operation[];
  mode: CellMode;
}

export class IacCell {
  readonly name: string;
  readonly channels: number;
  readonly nodes: number;
  readonly k: number;
  readonly partial: number;
  readonly operations: readonly Operation[];
  readonly mode: CellMode;
  readonly variables: tf.Variable[] = [];
  private readonly pre0: tf.Variable;
  private readonly pre1: tf.Variable;
  private readonly out: tf.Variable;
  /** Weights per edge and operation index. */
  private readonly edgeWeights: Map<number, EdgeOpWeights>[] = [];
  private plan?: Plan;
  private readonly constants: tf.Tensor[] = [];
  private nodeMask?: tf.Tensor2D;
  private alphaMask?: { version: number; mask: tf.Tensor2D };
  private discreteCoefficients?: { c: tf.Tensor2D; ew: tf.Tensor2D };
  private shuffle?: tf.Tensor2D;
  private shuffleParts?: tf.Tensor2D[];

  constructor(store: WeightStore, o: CellOptions) {
    this.name = o.name;
    this.channels = o.channels;
    this.nodes = o.nodes;
    this.k = o.partialChannels;
    this.operations = o.operations;
    this.mode = o.mode;
    if (o.channels % o.partialChannels !== 0) {
      throw new Error(
        `${o.name}: ${o.channels} channels cannot be split into ${o.partialChannels} partial-channel groups; ` +
          `set search.partialChannels to a divisor of ${o.channels} (or change backbone.baseFilters)`,
      );
    }
    this.partial = o.channels / o.partialChannels;
    const c = o.channels;
    this.pre0 = store.add(`${o.name}/pre0/kernel`, [c, c], { kind: 'he', fanIn: c });
    this.pre1 = store.add(`${o.name}/pre1/kernel`, [o.s1Channels, c], { kind: 'he', fanIn: o.s1Channels });
    this.variables.push(this.pre0, this.pre1);
    const edges = edgeCount(o.nodes);
    for (let e = 0; e < edges; e++) this.edgeWeights.push(new Map());
    for (let e = 0; e < edges; e++) {
      for (const opIndex of this.initialOps(e)) {
        const op = o.operations[opIndex];
        if (!hasWeights(op)) continue;
        const w = createOpWeights(store, `${o.name}/edge${e}/${op}`, op, this.partial);
        this.edgeWeights[e].set(opIndex, w);
        this.variables.push(...Object.values(w));
      }
    }
    this.out = store.add(`${o.name}/out/kernel`, [c * o.nodes, c], { kind: 'constant', value: 0 });
    this.variables.push(this.out);
    if (o.mode.kind === 'discrete') this.checkGenotype(o.mode.genotype);
  }

  private checkGenotype(g: GenotypeCell): void {
    if (g.nodes.length !== this.nodes) {
      throw new Error(`${this.name}: the genotype has ${g.nodes.length} nodes, the network ${this.nodes} (search.nodes)`);
    }
    g.nodes.forEach((edges, j) => {
      if (edges.length === 0) throw new Error(`${this.name}: genotype node ${j} has no incoming edges`);
      for (const { input, op } of edges) {
        if (!Number.isInteger(input) || input < 0 || input > j + 1)
          throw new Error(`${this.name}: genotype node ${j} reads input ${input}; valid inputs are 0..${j + 1}`);
        if (!this.operations.includes(op)) throw new Error(`${this.name}: genotype operation ${op} is not one of ${this.operations.join(', ')}`);
      }
    });
  }

  /** Operation indices that ever run on edge e (all for a supernet, the genotype's for a discrete cell). */
  private initialOps(e: number): number[] {
    if (this.mode.kind === 'supernet') return this.operations.map((_, i) => i);
    return this.discreteActive(e);
  }

  private discreteActive(e: number): number[] {
    if (this.mode.kind !== 'discrete') throw new Error('not a discrete cell');
    const out: number[] = [];
    this.mode.genotype.nodes.forEach((edges, j) => {
      for (const { input, op } of edges) if (edgeIndex(j, input) === e) out.push(this.operations.indexOf(op));
    });
    return [...new Set(out)].sort((a, b) => a - b);
  }

  private active(e: number): readonly number[] {
    return this.mode.kind === 'supernet' ? this.mode.arch.active(this.mode.index, e) : this.discreteActive(e);
  }

  /** Whether edge e exists at all (discrete cells keep only the genotype's edges). */
  private edgeExists(e: number): boolean {
    return this.mode.kind === 'supernet' || this.discreteActive(e).length > 0;
  }

  private version(): number {
    return this.mode.kind === 'supernet' ? this.mode.arch.version : 0;
  }

  private buildPlan(): Plan {
    const n = this.nodes;
    const ops = this.operations.length;
    const edges = edgeCount(n);
    const inputs: InputPlan[] = [];
    for (let i = 0; i <= n; i++) {
      const out: { e: number; j: number }[] = [];
      for (let j = Math.max(0, i - 1); j < n; j++) out.push({ e: edgeIndex(j, i), j });
      const plan: InputPlan = { normed: [], normedBlocks: 0 };
      const normedEntries: [number, number, number][] = []; // (coefficient, node, block)
      for (let o = 0; o < ops; o++) {
        const op = this.operations[o];
        if (op === 'none') continue;
        const where = out.filter(({ e }) => this.active(e).includes(o));
        if (where.length === 0) continue;
        const shared = isShared(op);
        const group: OpGroup = {
          op,
          edges: where.map((w) => w.e),
          weights: shared ? [] : where.map(({ e }) => this.edgeWeights[e].get(o)!),
          shared,
          blocks: shared ? 1 : where.length,
        };
        if (OP_SPECS[op].kind === 'identity') {
          const m = new Float32Array(edges * ops * n);
          for (const { e, j } of where) m[(e * ops + o) * n + j] = 1;
          plan.identity = group;
          plan.identityRoute = tf.keep(tf.tensor2d(m, [edges * ops, n]));
          continue;
        }
        for (const [t, { e, j }] of where.entries()) normedEntries.push([e * ops + o, j, plan.normedBlocks + (shared ? 0 : t)]);
        plan.normed.push(group);
        plan.normedBlocks += group.blocks;
      }
      if (plan.normedBlocks > 0) {
        const nb = plan.normedBlocks;
        const m = new Float32Array(edges * ops * n * nb);
        for (const [row, j, t] of normedEntries) m[row * n * nb + j * nb + t] = 1;
        plan.normedRoute = tf.keep(tf.tensor2d(m, [edges * ops, n * nb]));
      }
      if (this.k > 1) {
        const b = new Float32Array(edges * n);
        for (const { e, j } of out) if (this.edgeExists(e)) b[e * n + j] = 1;
        plan.bypass = tf.keep(tf.tensor2d(b, [edges, n]));
      }
      inputs.push(plan);
    }
    return { version: this.version(), inputs };
  }

  private currentPlan(): Plan {
    if (this.plan && this.plan.version === this.version()) return this.plan;
    if (this.plan) this.disposePlan(this.plan);
    this.plan = this.buildPlan();
    return this.plan;
  }

  private disposePlan(p: Plan): void {
    for (const i of p.inputs) {
      for (const t of [i.normedRoute, i.identityRoute, i.bypass]) t?.dispose();
    }
  }

  /** Coefficients c [1, E*O] (edge weight * operation weight) and edge weights ew [1, E]. */
  private coefficients(): { c: tf.Tensor2D; ew: tf.Tensor2D } {
    const n = this.nodes;
    const edges = edgeCount(n);
    const ops = this.operations.length;
    if (this.mode.kind === 'discrete') {
      if (!this.discreteCoefficients) {
        const c = new Float32Array(edges * ops);
        const ew = new Float32Array(edges);
        for (let e = 0; e < edges; e++) {
          for (const o of this.discreteActive(e)) c[e * ops + o] = 1;
          if (this.discreteActive(e).length > 0) ew[e] = 1;
        }
        this.discreteCoefficients = { c: tf.keep(tf.tensor2d(c, [1, edges * ops])), ew: tf.keep(tf.tensor2d(ew, [1, edges])) };
        this.constants.push(this.discreteCoefficients.c, this.discreteCoefficients.ew);
      }
      return this.discreteCoefficients;
    }
    const { arch, index } = this.mode;
    if (!this.nodeMask) {
      const m = new Float32Array(n * edges).fill(MASKED);
      for (let j = 0; j < n; j++) for (let i = 0; i < j + 2; i++) m[j * edges + edgeIndex(j, i)] = 0;
      this.nodeMask = tf.keep(tf.tensor2d(m, [n, edges]));
      this.constants.push(this.nodeMask);
    }
    if (!this.alphaMask || this.alphaMask.version !== arch.version) {
      if (this.alphaMask) this.alphaMask.mask.dispose();
      const m = new Float32Array(edges * ops).fill(MASKED);
      for (let e = 0; e < edges; e++) for (const o of arch.active(index, e)) m[e * ops + o] = 0;
      this.alphaMask = { version: arch.version, mask: tf.keep(tf.tensor2d(m, [edges, ops])) };
    }
    // Softmax over each edge's active operations; inactive ones get exactly 0.
    const opWeights = tf.softmax(tf.add(arch.alphas[index], this.alphaMask.mask));
    // Softmax over each node's incoming edges, folded back to one weight per edge.
    const edgeWeights = tf.sum(tf.softmax(tf.add(tf.reshape(arch.betas[index], [1, edges]), this.nodeMask)), 0);
    const c = tf.reshape(tf.mul(opWeights, tf.reshape(edgeWeights, [edges, 1])), [1, edges * ops]) as tf.Tensor2D;
    return { c, ew: tf.reshape(edgeWeights, [1, edges]) as tf.Tensor2D };
  }

  /**
   * The channel shuffle of PC-DARTS as a [C, C] 0/1 matrix: with a node's channels
   * U = [P | Q] (P: the C/K channels that went through operations, Q: the bypass),
   * the shuffled node is U S. One matrix product between a concatenation and a
   * split, instead of gathering channels one by one.
   */
  private shuffleMatrix(): tf.Tensor2D {
    if (!this.shuffle) {
      const c = this.channels;
      const cp = this.partial;
      const k = this.k;
      const m = new Float32Array(c * c);
      for (let to = 0; to < c; to++) m[((to % k) * cp + Math.floor(to / k)) * c + to] = 1;
      this.shuffle = tf.keep(tf.tensor2d(m, [c, c]));
      this.constants.push(this.shuffle);
    }
    return this.shuffle;
  }

  /** s0: encoder skip feature [B, H, W, C]; s1: upsampled decoder feature [B, H, W, C1]. */
  apply(s0: tf.Tensor4D, s1: tf.Tensor4D): tf.Tensor4D {
    const plan = this.currentPlan();
    const [b, h, w] = s0.shape;
    const c = this.channels;
    const cp = this.partial;
    const cb = c - cp;
    const n = this.nodes;
    const bhw = b * h * w;
    const split = splitChannels ?? tf.getBackend() === 'tensorflow';
    // Preprocessing (ReLU-1x1-norm) yields the partial and bypass channels. With
    // `split`, one product and one norm, then a split along the channel axis; else
    // each part from its columns of the kernel (instance norm is per channel, so
    // that is exact), which avoids the channel-axis split: a JS loop on wasm.
    const pre = (x: tf.Tensor4D, k: tf.Variable): [tf.Tensor2D, tf.Tensor2D | undefined] => {
      const kernel = k as unknown as tf.Tensor2D;
      if (split || this.k === 1) {
        const y = tf.reshape(instanceNorm(pointwise(tf.relu(x), kernel)), [bhw, c]) as tf.Tensor2D;
        if (this.k === 1) return [y, undefined];
        return tf.split(y, [cp, cb], 1) as [tf.Tensor2D, tf.Tensor2D];
      }
      const r = tf.relu(x);
      const part = (from: number, width: number) =>
        tf.reshape(instanceNorm(pointwise(r, tf.slice(kernel, [0, from], [-1, width]) as tf.Tensor2D)), [bhw, width]) as tf.Tensor2D;
      return [part(0, cp), part(cp, cb)];
    };
    const states: [tf.Tensor2D, tf.Tensor2D | undefined][] = [pre(s0, this.pre0), pre(s1, this.pre1)];
    const { c: coef, ew } = this.coefficients();
    const accP: tf.Tensor2D[] = []; // contributions [N, BHW*C'] to the operated channels
    const accQ: tf.Tensor2D[] = []; // contributions [N, BHW*(C-C')] to the bypass channels
    let sumP: tf.Tensor2D | undefined;
    let sumQ: tf.Tensor2D | undefined;
    const total = () => {
      sumP = accP.length === 0 ? undefined : accP.length === 1 ? accP[0] : (tf.addN(accP) as tf.Tensor2D);
      sumQ = accQ.length === 0 ? undefined : accQ.length === 1 ? accQ[0] : (tf.addN(accQ) as tf.Tensor2D);
      accP.length = 0;
      accQ.length = 0;
      if (sumP) accP.push(sumP);
      if (sumQ) accQ.push(sumQ);
    };
    for (let i = 0; i <= n; i++) {
      if (i >= 2) {
        total();
        states.push(this.nodeState(sumP, sumQ, i - 2, [b, h * w, bhw], split));
      }
      const [xp2, xb2] = states[i];
      const xp = tf.reshape(xp2, [b, h, w, cp]) as tf.Tensor4D;
      const p = plan.inputs[i];
      const fused = p.normed.filter((g) => !g.shared).length;
      const r = fused > 1 ? tf.relu(xp) : undefined;
      if (p.normedBlocks > 0) {
        // Every operation's output as rows [blocks * B * C', H*W] (channel-first within
        // a block), all normalised at once, then added into the nodes by one matrix
        // product. Node contributions are kept in this (b, c, hw) order.
        const blocks = p.normed.map((g) => tf.transpose(tf.reshape(rawOutput(g.op, xp, g.weights, r), [b, h * w, g.blocks, cp]), [2, 0, 3, 1]));
        const all = blocks.length === 1 ? blocks[0] : tf.concat(blocks, 0);
        const normed = normalizeRows(tf.reshape(all, [p.normedBlocks * b * cp, h * w]) as tf.Tensor2D);
        const cmat = tf.reshape(tf.matMul(coef, p.normedRoute!), [n, p.normedBlocks]) as tf.Tensor2D;
        accP.push(tf.matMul(cmat, tf.reshape(normed, [p.normedBlocks, bhw * cp]) as tf.Tensor2D));
      }
      if (p.identity) {
        const cmat = tf.reshape(tf.matMul(coef, p.identityRoute!), [n, 1]) as tf.Tensor2D;
        accP.push(tf.mul(cmat, tf.reshape(tf.transpose(tf.reshape(xp2, [b, h * w, cp]), [0, 2, 1]), [1, bhw * cp])) as tf.Tensor2D);
      }
      if (xb2 && plan.inputs[i].bypass) {
        const wb = tf.reshape(tf.matMul(ew, plan.inputs[i].bypass!), [n, 1]) as tf.Tensor2D;
        // An outer product by broadcasting: as a matrix product the large operand would
        // be re-packed by XNNPACK on every call (forward and backward).
        accQ.push(tf.mul(wb, tf.reshape(xb2, [1, bhw * cb])) as tf.Tensor2D);
      }
    }
    total();
    if (!sumP && !sumQ) throw new Error(`${this.name}: the cell has no active edges`);
    // Output: 1x1 conv of the concatenated nodes; kernel rows are [P of every node | Q of every node].
    const outKernel = this.out as unknown as tf.Tensor2D;
    const nodesFirst = (sum: tf.Tensor2D, width: number) =>
      tf.reshape(tf.transpose(tf.reshape(sum, [n, bhw, width]), [1, 0, 2]), [bhw, n * width]) as tf.Tensor2D;
    let y: tf.Tensor2D | undefined;
    if (sumP) {
      // [N, B, C', HW] -> [B, HW, N, C']: pixels by (node, channel).
      const p = tf.reshape(tf.transpose(tf.reshape(sumP, [n, b, cp, h * w]), [1, 3, 0, 2]), [bhw, n * cp]) as tf.Tensor2D;
      y = tf.matMul(p, tf.slice(outKernel, [0, 0], [n * cp, c]) as tf.Tensor2D) as tf.Tensor2D;
    }
    if (sumQ) {
      const q = tf.matMul(nodesFirst(sumQ, cb), tf.slice(outKernel, [n * cp, 0], [n * cb, c]) as tf.Tensor2D);
      y = (y ? tf.add(y, q) : q) as tf.Tensor2D;
    }
    return tf.add(s0, tf.reshape(y!, [b, h, w, c]));
  }

  /** Node j as an input: its shuffled channels split into (partial [BHW, C'], bypass [BHW, C-C']). */
  private nodeState(
    sumP: tf.Tensor2D | undefined,
    sumQ: tf.Tensor2D | undefined,
    j: number,
    shape: [number, number, number],
    split: boolean,
  ): [tf.Tensor2D, tf.Tensor2D | undefined] {
    const [b, hw, bhw] = shape;
    const cp = this.partial;
    const cb = this.channels - cp;
    const row = (sum: tf.Tensor2D | undefined, width: number) =>
      sum ? (tf.reshape(tf.slice(sum, [j, 0], [1, -1]), [bhw, width]) as tf.Tensor2D) : (tf.zeros([bhw, width]) as tf.Tensor2D);
    // The operated channels arrive in (b, c, hw) order; the convolutions read NHWC.
    const p = sumP
      ? (tf.reshape(tf.transpose(tf.reshape(tf.slice(sumP, [j, 0], [1, -1]), [b, cp, hw]), [0, 2, 1]), [bhw, cp]) as tf.Tensor2D)
      : (tf.zeros([bhw, cp]) as tf.Tensor2D);
    if (this.k === 1) return [p, undefined];
    const q = row(sumQ, cb);
    if (split) return tf.split(tf.matMul(tf.concat([p, q], 1) as tf.Tensor2D, this.shuffleMatrix()), [cp, cb], 1) as [tf.Tensor2D, tf.Tensor2D];
    // The same product by blocks: [P | Q] S = [P S11 + Q S21 | P S12 + Q S22].
    const [s11, s12, s21, s22] = this.shuffleBlocks();
    return [tf.add(tf.matMul(p, s11), tf.matMul(q, s21)) as tf.Tensor2D, tf.add(tf.matMul(p, s12), tf.matMul(q, s22)) as tf.Tensor2D];
  }

  private shuffleBlocks(): tf.Tensor2D[] {
    if (!this.shuffleParts) {
      const s = this.shuffleMatrix();
      const [c, cp] = [this.channels, this.partial];
      const block = (r0: number, r1: number, c0: number, c1: number) => tf.keep(tf.slice(s, [r0, c0], [r1 - r0, c1 - c0])) as tf.Tensor2D;
      this.shuffleParts = [block(0, cp, 0, cp), block(0, cp, cp, c), block(cp, c, 0, cp), block(cp, c, cp, c)];
      this.constants.push(...this.shuffleParts);
    }
    return this.shuffleParts;
  }

  dispose(): void {
    if (this.plan) this.disposePlan(this.plan);
    this.plan = undefined;
    if (this.alphaMask) this.alphaMask.mask.dispose();
    tf.dispose(this.constants);
  }
}
