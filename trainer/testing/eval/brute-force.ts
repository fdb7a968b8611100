// Reference implementations for the metric tests, written from the definitions and
// sharing no code with metrics.ts: Dice by counting, HD95 by measuring every pair of
// surface voxels. Quadratic in the surface size: for small volumes only.
//
// Volumes are [d0][d1][d2] with d2 fastest, as in metrics.ts.

export type Shape = readonly [number, number, number];

/** Dice of class c: 2|P∩T| / (|P| + |T|), 1 when both are empty. */
export function bruteDice(pred: ArrayLike<number>, truth: ArrayLike<number>, c: number): number {
  let both = 0;
  let sum = 0;
  for (let i = 0; i < truth.length; i++) {
    if (pred[i] === c && truth[i] === c) both++;
    if (pred[i] === c) sum++;
    if (truth[i] === c) sum++;
  }
  return sum === 0 ? 1 : (2 * both) / sum;
}

/** Coordinates of the surface voxels of class c: in the class, with a face neighbour outside it or outside the volume. */
export function bruteSurface(vol: ArrayLike<number>, c: number, shape: Shape): [number, number, number][] {
  const [n0, n1, n2] = shape;
  const at = (a: number, b: number, d: number) => a >= 0 && b >= 0 && d >= 0 && a < n0 && b < n1 && d < n2 && vol[(a * n1 + b) * n2 + d] === c;
  const out: [number, number, number][] = [];
  for (let a = 0; a < n0; a++) {
    for (let b = 0; b < n1; b++) {
      for (let d = 0; d < n2; d++) {
        if (!at(a, b, d)) continue;
        const faces = [
          [a - 1, b, d],
          [a + 1, b, d],
          [a, b - 1, d],
          [a, b + 1, d],
          [a, b, d - 1],
          [a, b, d + 1],
        ];
        if (faces.some(([x, y, z]) => !at(x, y, z))) out.push([a, b, d]);
      }
    }
  }
  return out;
}

/** numpy.percentile(values, q) with its default linear interpolation. */
export function numpyPercentile(values: number[], q: number): number {
  const s = [...values].sort((x, y) => x - y);
  const pos = (q / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/**
 * HD95 in mm as MedPy's hd95 defines it: the 95th percentile of the distances from
 * every surface voxel of each mask to the nearest surface voxel of the other, both
 * ways together. null when the class is in neither volume; the volume diagonal when in
 * one only (the project's convention).
 */
export function bruteHd95(pred: ArrayLike<number>, truth: ArrayLike<number>, c: number, shape: Shape, spacing: readonly number[]): number | null {
  const ps = bruteSurface(pred, c, shape);
  const ts = bruteSurface(truth, c, shape);
  if (ps.length === 0 && ts.length === 0) return null;
  if (ps.length === 0 || ts.length === 0) return Math.hypot(shape[0] * spacing[0], shape[1] * spacing[1], shape[2] * spacing[2]);
  const dist = (p: number[], q: number[]) => Math.hypot((p[0] - q[0]) * spacing[0], (p[1] - q[1]) * spacing[1], (p[2] - q[2]) * spacing[2]);
  const nearest = (from: number[][], to: number[][]) => from.map((p) => Math.min(...to.map((q) => dist(p, q))));
  return numpyPercentile([...nearest(ps, ts), ...nearest(ts, ps)], 95);
}
