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
    const sq = tf.addN(present.map((g) => tf.sum(tf.square(g))));
    return tf.div(clip, tf.maximum(tf.sqrt(sq), clip)) as tf.Scalar;
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
      const scale = this.opts.gradClip ? clipScale(grads, this.opts.gradClip) : null;
      this.vars.forEach((v, i) => {
        const raw = grads[i];
        if (!raw) return;
        let g = scale ? tf.mul(raw, scale) : raw;
        if (this.opts.weightDecay > 0) g = tf.add(g, tf.mul(v.variable, this.opts.weightDecay));
        const vel = this.velocity.get(`${v.name}/velocity`)!;
        const next = tf.add(tf.mul(vel, this.opts.momentum), g);
        vel.assign(next);
        v.variable.assign(tf.sub(v.variable, tf.mul(next, learningRate)));
      });
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
      const scale = this.opts.gradClip ? clipScale(grads, this.opts.gradClip) : null;
      this.vars.forEach((p, i) => {
        const raw = grads[i];
        if (!raw) return;
        let g = scale ? tf.mul(raw, scale) : raw;
        if (weightDecay > 0) g = tf.add(g, tf.mul(p.variable, weightDecay));
        const m = this.m.get(`${p.name}/m`)!;
        const v = this.v.get(`${p.name}/v`)!;
        const m1 = tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1));
        const v1 = tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2));
        m.assign(m1);
        v.assign(v1);
        const denom = tf.add(tf.sqrt(v1), epsilon * Math.sqrt(1 - beta2 ** t));
        p.variable.assign(tf.sub(p.variable, tf.mul(tf.div(m1, denom), stepSize)));
      });
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
