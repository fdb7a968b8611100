// Jensen-Shannon divergence of an edge's operation-importance distributions, the
// IAC-LTH stability signal. Base 2, so values lie in [0, 1].

/** Softmax of `logits` restricted to `indices` (in that order); numerically stable. */
export function softmaxAt(logits: ArrayLike<number>, indices: readonly number[]): number[] {
  if (indices.length === 0) return [];
  let max = -Infinity;
  for (const i of indices) max = Math.max(max, logits[i]);
  const exps = indices.map((i) => Math.exp(logits[i] - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** Kullback-Leibler divergence KL(p || q) in bits; terms with p_i = 0 contribute 0. */
function klBits(p: readonly number[], q: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i] > 0) s += p[i] * Math.log2(p[i] / q[i]);
  }
  return s;
}

/** JS(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, base 2. */
export function jensenShannon(p: readonly number[], q: readonly number[]): number {
  if (p.length !== q.length) throw new Error(`jensenShannon: distributions differ in length (${p.length} vs ${q.length})`);
  const m = p.map((pi, i) => (pi + q[i]) / 2);
  const js = (klBits(p, m) + klBits(q, m)) / 2;
  // Rounding can leave a tiny negative value for identical inputs.
  return Math.min(1, Math.max(0, js));
}

/**
 * The distribution p(e, t) of one edge: softmax of its alphas over its active
 * operations other than `none` (`none` never wins an edge, so it does not count
 * towards stability).
 */
export function edgeDistribution(alphas: ArrayLike<number>, active: readonly number[], noneIndex: number): number[] {
  return softmaxAt(alphas, candidateOps(active, noneIndex));
}

/** Active operations of an edge that are candidates for keeping (all but `none`). */
export function candidateOps(active: readonly number[], noneIndex: number): number[] {
  return active.filter((i) => i !== noneIndex);
}

/**
 * JS divergence of one edge between the previous and the current epoch, both
 * taken over the edge's current candidate operations (after a pruning step the
 * previous distribution is renormalised over the operations that are left).
 */
export function edgeDivergence(previousAlphas: ArrayLike<number>, currentAlphas: ArrayLike<number>, active: readonly number[], noneIndex: number): number {
  const ops = candidateOps(active, noneIndex);
  if (ops.length <= 1) return 0;
  return jensenShannon(softmaxAt(previousAlphas, ops), softmaxAt(currentAlphas, ops));
}
