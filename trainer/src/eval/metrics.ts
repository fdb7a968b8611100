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
          a === 0 || a === n0 - 1 || b === 0 || b === n1 - 1 || c === 0 || c === n2 - 1 ||
          !mask[i - n1 * n2] || !mask[i + n1 * n2] || !mask[i - n2] || !mask[i + n2] || !mask[i - 1] || !mask[i + 1];
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

/** HD95 in mm of class `c` (see the conventions above); null when the class is absent from both. */
export function hd95(pred: ArrayLike<number>, truth: ArrayLike<number>, c: number, shape: Shape3, spacing: readonly number[]): number | null {
  const n = truth.length;
  const pm = new Uint8Array(n);
  const tm = new Uint8Array(n);
  let pc = 0;
  let tc = 0;
  for (let i = 0; i < n; i++) {
    if (pred[i] === c) {
      pm[i] = 1;
      pc++;
    }
    if (truth[i] === c) {
      tm[i] = 1;
      tc++;
    }
  }
  if (pc === 0 && tc === 0) return null;
  if (pc === 0 || tc === 0) return Math.hypot(shape[0] * spacing[0], shape[1] * spacing[1], shape[2] * spacing[2]);
  const ps = surface(pm, shape);
  const ts = surface(tm, shape);
  const toTruth = squaredDistanceTransform(ts, shape, spacing);
  const toPred = squaredDistanceTransform(ps, shape, spacing);
  const distances: number[] = [];
  for (let i = 0; i < n; i++) {
    if (ps[i]) distances.push(Math.sqrt(toTruth[i]));
    if (ts[i]) distances.push(Math.sqrt(toPred[i]));
  }
  return percentile(Float64Array.from(distances), 95);
}
