// The two optimizers of the search (and the Adam of plain training), written out
// so their state is plain named tensors that a checkpoint can save and restore
// exactly. Every update runs on the backend without reading values back.
import * as tf from '@tensorflow/tfjs-core';

/** A trainable tensor and the stable name its optimizer slots are saved under. */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
}

export interface Optimizer {
  /**
   * Applies one update. `grads[i]` belongs to `vars[i]`; a variable without a
   * gradient (a pruned operation) is left alone, slots included. The caller disposes grads.
   */
  apply(grads: readonly (tf.Tensor | undefined)[], learningRate: number): void;
  /** Slot tensors by "<variable name>/<slot>" plus the step counter, for checkpoints. */
  slots(): Map<string, tf.Variable>;
  step: number;
  dispose(): void;
}

function zerosLike(vars: readonly NamedVariable[], slot: string): Map<string, tf.Variable> {
  return new Map(vars.map((v) => [`${v.name}/${slot}`, tf.variable(tf.zerosLike(v.variable), false)]));
}

/** Scale that brings the global L2 norm of `grads` down to at most `clip` (a scalar tensor). */
export function clipScale(grads: readonly (tf.Tensor | undefined)[], clip: number): tf.Scalar {
  return tf.tidy(() => {
    const present = grads.filter((g): g is tf.Tensor => g !== undefined);
    if (present.length === 0) return tf.scalar(1);
    return scaleFromSquares(present.map((g) => tf.sum(tf.square(g))), clip);
  });
}

function scaleFromSquares(squares: tf.Tensor[], clip: number): tf.Scalar {
  const sq = squares.length === 1 ? squares[0] : tf.addN(squares);
  return tf.div(clip, tf.maximum(tf.sqrt(sq), clip)) as tf.Scalar;
}

/**
 * The indices of the variables that have a gradient, grouped by shape. Each group is
 * updated as one stacked tensor: a search step has about 600 cell weights in about
 * 20 shapes, and updating them one by one took ~9 kernel calls each, a fifth of the
 * step's calls, for a few thousand numbers apiece. The arithmetic is the same,
 * element by element.
 */
function shapeGroups(vars: readonly NamedVariable[], grads: readonly (tf.Tensor | undefined)[]): number[][] {
  const groups = new Map<string, number[]>();
  vars.forEach((v, i) => {
    if (!grads[i]) return;
    const key = stackUpdates ? v.variable.shape.join('x') : String(i);
    const g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, [i]);
  });
  return [...groups.values()];
}

let stackUpdates = true;

/** Updates variable by variable (false) instead of stacked by shape: for before/after measurements. */
export function useStackedUpdates(on: boolean): void {
  stackUpdates = on;
}

const stacked = (ts: tf.Tensor[]): tf.Tensor => (ts.length === 1 ? ts[0] : tf.stack(ts));
const unstacked = (t: tf.Tensor, n: number): tf.Tensor[] => (n === 1 ? [t] : tf.unstack(t));

/** SGD with momentum and L2 weight decay (PyTorch semantics), global-norm gradient clipping. */
export class SgdMomentum implements Optimizer {
  step = 0;
  private readonly vars: readonly NamedVariable[];
  private readonly velocity: Map<string, tf.Variable>;
  private readonly opts: { momentum: number; weightDecay: number; gradClip?: number };

  constructor(vars: readonly NamedVariable[], opts: { momentum: number; weightDecay: number; gradClip?: number }) {
    this.vars = vars;
    this.opts = opts;
    this.velocity = zerosLike(vars, 'velocity');
  }

  apply(grads: readonly (tf.Tensor | undefined)[], learningRate: number): void {
    tf.tidy(() => {
      const groups = shapeGroups(this.vars, grads).map((idx) => ({ idx, g: stacked(idx.map((i) => grads[i]!)) }));
      const scale = this.opts.gradClip && groups.length > 0 ? scaleFromSquares(groups.map(({ g }) => tf.sum(tf.square(g))), this.opts.gradClip) : null;
      for (const { idx, g: raw } of groups) {
        const vels = idx.map((i) => this.velocity.get(`${this.vars[i].name}/velocity`)!);
        const w = stacked(idx.map((i) => this.vars[i].variable));
        let g = scale ? tf.mul(raw, scale) : raw;
        if (this.opts.weightDecay > 0) g = tf.add(g, tf.mul(w, this.opts.weightDecay));
        const next = tf.add(tf.mul(stacked(vels), this.opts.momentum), g);
        const nextW = tf.sub(w, tf.mul(next, learningRate));
        unstacked(next, idx.length).forEach((t, k) => vels[k].assign(t));
        unstacked(nextW, idx.length).forEach((t, k) => this.vars[idx[k]].variable.assign(t));
      }
    });
    this.step++;
  }

  slots(): Map<string, tf.Variable> {
    return this.velocity;
  }

  dispose(): void {
    for (const v of this.velocity.values()) v.dispose();
  }
}

/** Adam with L2 weight decay added to the gradient (PyTorch's Adam, not AdamW). */
export class Adam implements Optimizer {
  step = 0;
  private readonly vars: readonly NamedVariable[];
  private readonly m: Map<string, tf.Variable>;
  private readonly v: Map<string, tf.Variable>;
  private readonly opts: { beta1: number; beta2: number; weightDecay: number; epsilon: number; gradClip?: number };

  constructor(
    vars: readonly NamedVariable[],
    opts: { beta1?: number; beta2?: number; weightDecay?: number; epsilon?: number; gradClip?: number } = {},
  ) {
    this.vars = vars;
    this.opts = { beta1: opts.beta1 ?? 0.9, beta2: opts.beta2 ?? 0.999, weightDecay: opts.weightDecay ?? 0, epsilon: opts.epsilon ?? 1e-8, gradClip: opts.gradClip };
    this.m = zerosLike(vars, 'm');
    this.v = zerosLike(vars, 'v');
  }

  apply(grads: readonly (tf.Tensor | undefined)[], learningRate: number): void {
    const t = this.step + 1;
    const { beta1, beta2, weightDecay, epsilon } = this.opts;
    const stepSize = (learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    tf.tidy(() => {
      const groups = shapeGroups(this.vars, grads).map((idx) => ({ idx, g: stacked(idx.map((i) => grads[i]!)) }));
      const scale = this.opts.gradClip && groups.length > 0 ? scaleFromSquares(groups.map(({ g }) => tf.sum(tf.square(g))), this.opts.gradClip) : null;
      for (const { idx, g: raw } of groups) {
        const names = idx.map((i) => this.vars[i].name);
        const ms = names.map((n) => this.m.get(`${n}/m`)!);
        const vs = names.map((n) => this.v.get(`${n}/v`)!);
        const p = stacked(idx.map((i) => this.vars[i].variable));
        let g = scale ? tf.mul(raw, scale) : raw;
        if (weightDecay > 0) g = tf.add(g, tf.mul(p, weightDecay));
        const m1 = tf.add(tf.mul(stacked(ms), beta1), tf.mul(g, 1 - beta1));
        const v1 = tf.add(tf.mul(stacked(vs), beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.sqrt(v1), epsilon * Math.sqrt(1 - beta2 ** t));
        const nextP = tf.sub(p, tf.mul(tf.div(m1, denom), stepSize));
        unstacked(m1, idx.length).forEach((x, k) => ms[k].assign(x));
        unstacked(v1, idx.length).forEach((x, k) => vs[k].assign(x));
        unstacked(nextP, idx.length).forEach((x, k) => this.vars[idx[k]].variable.assign(x));
      }
    });
    this.step = t;
  }

  slots(): Map<string, tf.Variable> {
    return new Map([...this.m, ...this.v]);
  }

  dispose(): void {
    for (const x of this.m.values()) x.dispose();
    for (const x of this.v.values()) x.dispose();
  }
}

/** Cosine annealing from `max` to `min` over `total` epochs (epoch is 0-based). */
export function cosineLearningRate(epoch: number, total: number, max: number, min: number): number {
  if (total <= 1) return max;
  return min + ((max - min) * (1 + Math.cos((Math.PI * Math.min(epoch, total - 1)) / (total - 1)))) / 2;
}
