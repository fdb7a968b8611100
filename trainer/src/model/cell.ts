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
// output channels), the outputs are stacked as blocks, and one matrix product with
// a [blocks, nodes] coefficient matrix (softmax(alpha) * softmax(beta), or 1 for a
// discrete cell) adds every block into the nodes it feeds. Pruned operations have no
// block at all, so pruning removes their cost. Because the channel shuffle is a fixed
// permutation it commutes with the weighted sum and is applied once per node.
import * as tf from '@tensorflow/tfjs-core';
import type { Operation } from '../config/index.ts';
import type { GenotypeCell } from './api.ts';
import type { SupernetArchitecture } from './arch.ts';
import type { WeightStore } from './init.ts';
import { instanceNorm, pointwise } from './layers.ts';
import { applyFused, applyShared, createOpWeights, hasWeights, isShared, type EdgeOpWeights } from './operations.ts';
import { edgeCount, edgeIndex, edgeOffset } from './topology.ts';

const MASKED = -1e30;

interface OpGroup {
  op: Operation;
  /** Edges (in order) whose output this group produces. */
  edges: number[];
  /** Weights per edge, for fused groups. */
  weights: EdgeOpWeights[];
  shared: boolean;
}

interface InputPlan {
  groups: OpGroup[];
  /** Number of output blocks (shared groups: 1; fused groups: one per edge). */
  blocks: number;
  /** [E*O, blocks*N] 0/1: coefficient (e, o) feeds block b into node j. */
  route?: tf.Tensor2D;
  /** [E, N] 0/1: edge e carries this input's bypass channels into node j. */
  bypass?: tf.Tensor2D;
}

interface Plan {
  version: number;
  inputs: InputPlan[];
}

export type CellMode =
  | { kind: 'supernet'; arch: SupernetArchitecture; index: number }
  | { kind: 'discrete'; genotype: GenotypeCell };

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
        if (!Number.isInteger(input) || input < 0 || input > j + 1) throw new Error(`${this.name}: genotype node ${j} reads input ${input}; valid inputs are 0..${j + 1}`);
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
      const groups: OpGroup[] = [];
      for (let o = 0; o < ops; o++) {
        const op = this.operations[o];
        if (op === 'none') continue;
        const where = out.filter(({ e }) => this.active(e).includes(o));
        if (where.length === 0) continue;
        const shared = isShared(op);
        groups.push({
          op,
          edges: where.map((w) => w.e),
          weights: shared ? [] : where.map(({ e }) => this.edgeWeights[e].get(o)!),
          shared,
        });
      }
      let blocks = 0;
      const routeRows: [number, number][] = []; // (coefficient index, column)
      for (const g of groups) {
        const o = this.operations.indexOf(g.op);
        if (g.shared) {
          // One block read by every edge of the group.
          for (const e of g.edges) routeRows.push([e * ops + o, blocks * n + this.nodeOf(e)]);
          blocks += 1;
        } else {
          // One block per edge, in the order of the fused output channels.
          for (const e of g.edges) routeRows.push([e * ops + o, blocks++ * n + this.nodeOf(e)]);
        }
      }
      const plan: InputPlan = { groups, blocks };
      if (blocks > 0) {
        const m = new Float32Array(edges * ops * blocks * n);
        for (const [row, col] of routeRows) m[row * blocks * n + col] = 1;
        plan.route = tf.keep(tf.tensor2d(m, [edges * ops, blocks * n]));
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

  private nodeOf(e: number): number {
    let j = 0;
    while (edgeOffset(j + 1) <= e) j++;
    return j;
  }

  private currentPlan(): Plan {
    if (this.plan && this.plan.version === this.version()) return this.plan;
    if (this.plan) this.disposePlan(this.plan);
    this.plan = this.buildPlan();
    return this.plan;
  }

  private disposePlan(p: Plan): void {
    for (const i of p.inputs) tf.dispose([i.route, i.bypass].filter((t): t is tf.Tensor2D => t !== undefined));
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

  private shuffle(x: tf.Tensor4D): tf.Tensor4D {
    if (this.k === 1) return x;
    const [b, h, w, c] = x.shape;
    const g = tf.reshape(x, [b, h, w, this.k, c / this.k]);
    return tf.reshape(tf.transpose(g, [0, 1, 2, 4, 3]), [b, h, w, c]);
  }

  /** s0: encoder skip feature [B, H, W, C]; s1: upsampled decoder feature [B, H, W, C1]. */
  apply(s0: tf.Tensor4D, s1: tf.Tensor4D): tf.Tensor4D {
    const plan = this.currentPlan();
    const [b, h, w] = s0.shape;
    const c = this.channels;
    const cp = this.partial;
    const n = this.nodes;
    const bhw = b * h * w;
    const pre = (x: tf.Tensor4D, k: tf.Variable) => instanceNorm(pointwise(tf.relu(x), k as unknown as tf.Tensor2D));
    const states: tf.Tensor4D[] = [pre(s0, this.pre0), pre(s1, this.pre1)];
    const { c: coef, ew } = this.coefficients();
    let acc: tf.Tensor | undefined; // [B, H, W, C, N]: nodes before the shuffle
    for (let i = 0; i <= n; i++) {
      if (i >= 2) states.push(this.node(acc, i - 2, [b, h, w, c]));
      const s = states[i];
      const p = plan.inputs[i];
      const xp = this.k > 1 ? tf.slice(s, [0, 0, 0, 0], [b, h, w, cp]) : s;
      let part: tf.Tensor | undefined;
      if (p.blocks > 0) {
        const outs = p.groups.map((g) => (g.shared ? applyShared(g.op, xp) : applyFused(g.op, xp, g.weights)));
        const y: tf.Tensor4D = outs.length === 1 ? outs[0] : tf.concat(outs, 3);
        const yt = tf.reshape(tf.transpose(tf.reshape(y, [bhw, p.blocks, cp]), [0, 2, 1]), [bhw * cp, p.blocks]);
        const cmat = tf.reshape(tf.matMul(coef, p.route!), [p.blocks, n]);
        part = tf.reshape(tf.matMul(yt as tf.Tensor2D, cmat as tf.Tensor2D), [b, h, w, cp, n]);
      }
      let contrib: tf.Tensor | undefined = part;
      if (this.k > 1) {
        const xb = tf.reshape(tf.slice(s, [0, 0, 0, cp], [b, h, w, c - cp]), [b, h, w, c - cp, 1]);
        const wb = tf.reshape(tf.matMul(ew, p.bypass!), [1, 1, 1, 1, n]);
        const q = tf.mul(xb, wb);
        contrib = tf.concat([part ?? tf.zeros([b, h, w, cp, n]), q], 3);
      }
      if (contrib) acc = acc ? tf.add(acc, contrib) : contrib;
    }
    if (!acc) throw new Error(`${this.name}: the cell has no active edges`);
    const nodes = tf.reshape(acc, [b, h, w, c * n]) as tf.Tensor4D;
    return tf.add(s0, pointwise(nodes, this.out as unknown as tf.Tensor2D));
  }

  private node(acc: tf.Tensor | undefined, j: number, shape: [number, number, number, number]): tf.Tensor4D {
    const [b, h, w, c] = shape;
    if (!acc) return tf.zeros(shape);
    const raw = tf.reshape(tf.slice(acc, [0, 0, 0, 0, j], [b, h, w, c, 1]), shape) as tf.Tensor4D;
    return this.shuffle(raw);
  }

  dispose(): void {
    if (this.plan) this.disposePlan(this.plan);
    this.plan = undefined;
    if (this.alphaMask) this.alphaMask.mask.dispose();
    tf.dispose(this.constants);
  }
}
