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

/**
 * The variables that have a gradient, grouped by shape. Each group is updated as one
 * stacked tensor: a search step has about 600 cell weights in about 20 shapes, and
 * updating them one by one took ~9 kernel calls each, a fifth of the step's calls, for
 * a few thousand numbers apiece. The arithmetic is the same, element by element.
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

/** Assigns the slices of a stacked tensor to `targets`, in order. */
function assignStacked(t: tf.Tensor, targets: readonly tf.Variable[]): void {
  const parts = targets.length === 1 ? [t] : tf.unstack(t);
  for (const [k, x] of parts.entries()) targets[k].assign(x);
}

/**
 * One group of variables of a shape, stacked: their indices, values `w`, and gradient
 * `g` as both optimizers use it (scaled so that the global L2 norm over all groups is at
 * most `gradClip`, then L2 weight decay added). Call inside tf.tidy.
 */
function gradientGroups(
  vars: readonly NamedVariable[],
  grads: readonly (tf.Tensor | undefined)[],
  o: { gradClip?: number; weightDecay: number },
): { idx: number[]; w: tf.Tensor; g: tf.Tensor }[] {
  const groups = shapeGroups(vars, grads).map((idx) => ({ idx, g: stacked(idx.map((i) => grads[i]!)) }));
  let scale: tf.Scalar | undefined;
  if (o.gradClip && groups.length > 0) {
    const squares = groups.map(({ g }) => tf.sum(tf.square(g)));
    const norm = tf.sqrt(squares.length === 1 ? squares[0] : tf.addN(squares));
    scale = tf.div(o.gradClip, tf.maximum(norm, o.gradClip)) as tf.Scalar;
  }
  return groups.map(({ idx, g }) => {
    const w = stacked(idx.map((i) => vars[i].variable));
    let scaled = scale ? tf.mul(g, scale) : g;
    if (o.weightDecay > 0) scaled = tf.add(scaled, tf.mul(w, o.weightDecay));
    return { idx, w, g: scaled };
  });
}

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
      for (const { idx, w, g } of gradientGroups(this.vars, grads, this.opts)) {
        const vels = idx.map((i) => this.velocity.get(`${this.vars[i].name}/velocity`)!);
        const next = tf.add(tf.mul(stacked(vels), this.opts.momentum), g);
        assignStacked(next, vels);
        assignStacked(
          tf.sub(w, tf.mul(next, learningRate)),
          idx.map((i) => this.vars[i].variable),
        );
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

  constructor(vars: readonly NamedVariable[], opts: { beta1?: number; beta2?: number; weightDecay?: number; epsilon?: number; gradClip?: number } = {}) {
    this.vars = vars;
    this.opts = {
      beta1: opts.beta1 ?? 0.9,
      beta2: opts.beta2 ?? 0.999,
      weightDecay: opts.weightDecay ?? 0,
      epsilon: opts.epsilon ?? 1e-8,
      gradClip: opts.gradClip,
    };
    this.m = zerosLike(vars, 'm');
    this.v = zerosLike(vars, 'v');
  }

  apply(grads: readonly (tf.Tensor | undefined)[], learningRate: number): void {
    const t = this.step + 1;
    const { beta1, beta2, epsilon } = this.opts;
    const stepSize = (learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    tf.tidy(() => {
      for (const { idx, w, g } of gradientGroups(this.vars, grads, this.opts)) {
        const ms = idx.map((i) => this.m.get(`${this.vars[i].name}/m`)!);
        const vs = idx.map((i) => this.v.get(`${this.vars[i].name}/v`)!);
        const m1 = tf.add(tf.mul(stacked(ms), beta1), tf.mul(g, 1 - beta1));
        const v1 = tf.add(tf.mul(stacked(vs), beta2), tf.mul(tf.square(g), 1 - beta2));
        const denom = tf.add(tf.sqrt(v1), epsilon * Math.sqrt(1 - beta2 ** t));
        assignStacked(m1, ms);
        assignStacked(v1, vs);
        assignStacked(
          tf.sub(w, tf.mul(tf.div(m1, denom), stepSize)),
          idx.map((i) => this.vars[i].variable),
        );
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
