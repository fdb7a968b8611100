// Patient-level segmentation metrics on 3-D label volumes: Dice per class and the
// 95th-percentile Hausdorff distance (HD95) in millimetres.
//
// Conventions (docs/evaluation.md):
// - Dice of a class absent from both prediction and truth is 1 (nothing to find,
//   nothing wrongly found); absent from exactly one side it is 0.
// - HD95 follows MedPy's hd95: surface voxels are the mask minus its 6-connected
//   erosion (the volume edge counts as outside), distances go both ways between the
//   two surfaces, and the 95th percentile (linear interpolation) of all of them is
//   taken. A class absent from both sides has no HD95 (null, left out of means); a
//   class present on one side only gets the volume's diagonal in millimetres, the
//   largest distance possible, so a missed structure is penalised and not ignored.
//
// Volumes are laid out [d0][d1][d2] (d2 fastest) with the given spacing per axis.

export type Shape3 = readonly [number, number, number];

/** Dice of class `c`; 1 when the class is absent from both volumes. */
export function dice(pred: ArrayLike<number>, truth: ArrayLike<number>, c: number): number {
  let inter = 0;
  let p = 0;
  let t = 0;
  for (let i = 0; i < truth.length; i++) {
    const a = pred[i] === c;
    const b = truth[i] === c;
    if (a) p++;
    if (b) t++;
    if (a && b) inter++;
  }
  return p + t === 0 ? 1 : (2 * inter) / (p + t);
}

/** Surface voxels of a binary mask: in the mask with a 6-neighbour outside it (or the volume edge). */
export function surface(mask: Uint8Array, shape: Shape3): Uint8Array {
  const [n0, n1, n2] = shape;
  const out = new Uint8Array(mask.length);
  for (let a = 0; a < n0; a++) {
    for (let b = 0; b < n1; b++) {
      for (let c = 0; c < n2; c++) {
        const i = (a * n1 + b) * n2 + c;
        if (!mask[i]) continue;
        const edge =
          a === 0 ||
          a === n0 - 1 ||
          b === 0 ||
          b === n1 - 1 ||
          c === 0 ||
          c === n2 - 1 ||
          !mask[i - n1 * n2] ||
          !mask[i + n1 * n2] ||
          !mask[i - n2] ||
          !mask[i + n2] ||
          !mask[i - 1] ||
          !mask[i + 1];
        if (edge) out[i] = 1;
      }
    }
  }
  return out;
}

/**
 * Squared Euclidean distance (in mm^2) from every voxel to the nearest voxel where
 * `seeds` is set: the separable exact transform of Felzenszwalb and Huttenlocher,
 * with anisotropic spacing. Infinity everywhere when there is no seed.
 */
export function squaredDistanceTransform(seeds: Uint8Array, shape: Shape3, spacing: readonly number[]): Float64Array {
  const [n0, n1, n2] = shape;
  const d = new Float64Array(seeds.length);
  for (let i = 0; i < seeds.length; i++) d[i] = seeds[i] ? 0 : Infinity;
  const maxN = Math.max(n0, n1, n2);
  const f = new Float64Array(maxN);
  const out = new Float64Array(maxN);
  const v = new Int32Array(maxN);
  const z = new Float64Array(maxN + 1);
  const pass = (count: number, stride: number, start: number, s: number) => {
    for (let q = 0; q < count; q++) f[q] = d[start + q * stride];
    transform1d(f, count, s, v, z, out);
    for (let q = 0; q < count; q++) d[start + q * stride] = out[q];
  };
  for (let a = 0; a < n0; a++) for (let b = 0; b < n1; b++) pass(n2, 1, (a * n1 + b) * n2, spacing[2]);
  for (let a = 0; a < n0; a++) for (let c = 0; c < n2; c++) pass(n1, n2, a * n1 * n2 + c, spacing[1]);
  for (let b = 0; b < n1; b++) for (let c = 0; c < n2; c++) pass(n0, n1 * n2, b * n2 + c, spacing[0]);
  return d;
}

/** 1-D lower envelope of parabolas (s*(p - q))^2 + f(q). */
function transform1d(f: Float64Array, n: number, s: number, v: Int32Array, z: Float64Array, out: Float64Array): void {
  let k = -1;
  for (let q = 0; q < n; q++) {
    if (f[q] === Infinity) continue;
    const xq = s * q;
    while (k >= 0) {
      const xv = s * v[k];
      const cross = (f[q] + xq * xq - (f[v[k]] + xv * xv)) / (2 * (xq - xv));
      if (cross <= z[k]) k--;
      else {
        k++;
        v[k] = q;
        z[k] = cross;
        z[k + 1] = Infinity;
        break;
      }
    }
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -Infinity;
      z[1] = Infinity;
    }
  }
  if (k < 0) {
    for (let p = 0; p < n; p++) out[p] = Infinity;
    return;
  }
  let j = 0;
  for (let p = 0; p < n; p++) {
    const xp = s * p;
    while (z[j + 1] < xp) j++;
    const dx = xp - s * v[j];
    out[p] = dx * dx + f[v[j]];
  }
}

/** Linear-interpolation percentile (numpy's default) of unsorted values. */
export function percentile(values: Float64Array, q: number): number {
  const sorted = Float64Array.from(values).sort();
  const pos = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * HD95 in mm of class `c` (see the conventions above); null when the class is absent
 * from both. The work is done on the bounding box of both masks, so a small structure
 * in a large scan stays cheap; the surfaces and distances are those of the whole
 * volume: a mask voxel on the box's border is on its surface either way (its neighbour
 * beyond the border is in neither mask, or beyond the volume's edge), and the exact
 * distance transform does not depend on how far the grid extends.
 */
export function hd95(pred: ArrayLike<number>, truth: ArrayLike<number>, c: number, shape: Shape3, spacing: readonly number[]): number | null {
  const [n0, n1, n2] = shape;
  const lo = [n0, n1, n2];
  const hi = [-1, -1, -1];
  let pc = 0;
  let tc = 0;
  for (let a = 0, i = 0; a < n0; a++) {
    for (let b = 0; b < n1; b++) {
      for (let d = 0; d < n2; d++, i++) {
        const p = pred[i] === c;
        const t = truth[i] === c;
        if (p) pc++;
        if (t) tc++;
        if (p || t) {
          if (a < lo[0]) lo[0] = a;
          if (a > hi[0]) hi[0] = a;
          if (b < lo[1]) lo[1] = b;
          if (b > hi[1]) hi[1] = b;
          if (d < lo[2]) lo[2] = d;
          if (d > hi[2]) hi[2] = d;
        }
      }
    }
  }
  if (pc === 0 && tc === 0) return null;
  if (pc === 0 || tc === 0) return Math.hypot(n0 * spacing[0], n1 * spacing[1], n2 * spacing[2]);
  const from = lo;
  const crop: Shape3 = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
  const m = crop[0] * crop[1] * crop[2];
  const pm = new Uint8Array(m);
  const tm = new Uint8Array(m);
  for (let a = 0, j = 0; a < crop[0]; a++) {
    for (let b = 0; b < crop[1]; b++) {
      const row = ((a + from[0]) * n1 + (b + from[1])) * n2 + from[2];
      for (let d = 0; d < crop[2]; d++, j++) {
        if (pred[row + d] === c) pm[j] = 1;
        if (truth[row + d] === c) tm[j] = 1;
      }
    }
  }
  const ps = surface(pm, crop);
  const ts = surface(tm, crop);
  const toTruth = squaredDistanceTransform(ts, crop, spacing);
  const toPred = squaredDistanceTransform(ps, crop, spacing);
  const distances: number[] = [];
  for (let i = 0; i < m; i++) {
    if (ps[i]) distances.push(Math.sqrt(toTruth[i]));
    if (ts[i]) distances.push(Math.sqrt(toPred[i]));
  }
  return percentile(Float64Array.from(distances), 95);
}
