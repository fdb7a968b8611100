// The built-in synthetic dataset: cardiac-MRI-like short-axis stacks with the left
// ventricle cavity (1), the myocardium (2) and the right ventricle (3).
//
// What makes it learnable but not trivial: the blood pools are bright and the
// myocardium a dark ring, as in cine MRI, but the surrounding tissue has bright
// distractors (an unlabelled aorta and fat blobs) of the same intensity as blood,
// the myocardium is only slightly brighter than tissue, the heart shrinks towards
// the apex where the right ventricle disappears, and every patient differs in
// size, position, orientation, contrast, noise and a smooth bias field. Every
// volume is a function of (seed, patient index) only, so it can be generated on
// demand instead of being kept in memory.
import { gaussian, mixSeed, mulberry32 } from '../util/random.ts';

export const PHANTOM_CLASSES = ['background', 'LV', 'MYO', 'RV'] as const;
export const PHANTOM_DEFAULT_CASES = 24;

export interface PhantomCase {
  id: string;
  shape: [number, number, number];
  spacing: [number, number, number];
}

export interface PhantomVolume extends PhantomCase {
  /** Raw intensities (scanner units, not normalised), i fastest. */
  image: Float32Array;
  labels: Uint8Array;
}

interface Blob {
  x: number;
  y: number;
  r: number;
  value: number;
}

interface PhantomParams extends PhantomCase {
  cx: number;
  cy: number;
  /** LV cavity radius at the base, pixels. */
  radius: number;
  eccentricity: number;
  theta: number;
  /** Myocardium thickness, pixels. */
  wall: number;
  /** Direction of the RV from the LV centre, radians. */
  rvAngle: number;
  rvSize: number;
  /** First and last slice that cut the heart. */
  base: number;
  apex: number;
  blood: number;
  myo: number;
  tissue: number;
  gain: number;
  noise: number;
  bias: [number, number, number, number];
  blobs: Blob[];
  aorta: Blob;
  body: { rx: number; ry: number };
}

export function phantomId(index: number): string {
  return `phantom_${String(index).padStart(3, '0')}`;
}

function phantomParams(seed: number, index: number): PhantomParams {
  const rnd = mulberry32(mixSeed('phantom', seed, index));
  const u = (lo: number, hi: number) => lo + (hi - lo) * rnd();
  const nx = Math.round(u(56, 72));
  const ny = Math.round(nx * u(0.9, 1.1));
  const nz = Math.round(u(8, 12));
  // float32 like a NIfTI header, so the phantom on disk has exactly the same spacing.
  const inPlane = Math.fround(u(1.2, 1.6));
  const spacing: [number, number, number] = [inPlane, inPlane, Math.fround(u(7, 10))];
  const radius = u(0.11, 0.17) * nx;
  const wall = u(0.035, 0.06) * nx;
  const cx = nx / 2 + u(-0.08, 0.08) * nx;
  const cy = ny / 2 + u(-0.08, 0.08) * ny;
  const base = Math.floor(u(0, 2));
  const apex = nz - 1 - Math.floor(u(0, 2));
  const rvAngle = Math.PI + u(-0.5, 0.5);
  const blood = u(0.8, 1.0);
  const aortaAngle = rvAngle + Math.PI * u(0.45, 0.65);
  const aortaDist = radius + wall + u(4, 8);
  const blobs: Blob[] = [];
  const nBlobs = Math.floor(u(2, 5));
  for (let b = 0; b < nBlobs; b++) {
    const a = u(0, 2 * Math.PI);
    const d = u(0.28, 0.38) * nx;
    blobs.push({ x: nx / 2 + d * Math.cos(a), y: ny / 2 + d * Math.sin(a), r: u(1.5, 3.5), value: u(0.7, 1.0) });
  }
  return {
    id: phantomId(index),
    shape: [nx, ny, nz],
    spacing,
    cx,
    cy,
    radius,
    eccentricity: u(0, 0.15),
    theta: u(0, Math.PI),
    wall,
    rvAngle,
    rvSize: u(0.9, 1.3),
    base,
    apex,
    blood,
    myo: u(0.33, 0.42),
    tissue: u(0.24, 0.32),
    gain: u(200, 1200),
    noise: u(0.04, 0.08),
    bias: [u(-0.3, 0.3), u(-0.3, 0.3), u(-0.2, 0.2), u(-0.1, 0.1)],
    blobs,
    aorta: { x: cx + aortaDist * Math.cos(aortaAngle), y: cy + aortaDist * Math.sin(aortaAngle), r: u(0.4, 0.6) * radius, value: blood * u(0.9, 1.05) },
    body: { rx: u(0.42, 0.48) * nx, ry: u(0.36, 0.44) * ny },
  };
}

/** Shape, spacing and id of a phantom patient, without generating its voxels. */
export function phantomCase(seed: number, index: number): PhantomCase {
  const p = phantomParams(seed, index);
  return { id: p.id, shape: p.shape, spacing: p.spacing };
}

/** Generates one phantom patient. */
export function phantomVolume(seed: number, index: number): PhantomVolume {
  const p = phantomParams(seed, index);
  const [nx, ny, nz] = p.shape;
  const n = nx * ny * nz;
  const labels = new Uint8Array(n);
  const clean = new Float32Array(n);
  const cosT = Math.cos(p.theta);
  const sinT = Math.sin(p.theta);
  const rvDir = [Math.cos(p.rvAngle), Math.sin(p.rvAngle)];
  for (let z = 0; z < nz; z++) {
    // t: 0 at the base, 1 at the apex; the cavity narrows and closes towards the apex.
    const inHeart = z >= p.base && z <= p.apex;
    const t = p.apex > p.base ? (z - p.base) / (p.apex - p.base) : 0;
    const shrink = Math.sqrt(Math.max(0, 1 - 0.85 * t * t));
    const r = p.radius * shrink;
    const cavity = t < 0.95 ? r : 0;
    const outer = r + p.wall * (0.8 + 0.4 * t);
    const rvScale = Math.max(0, 1 - 1.3 * t);
    const rvR = outer * p.rvSize * rvScale;
    const rvCx = p.cx + rvDir[0] * (outer + 0.2 * rvR);
    const rvCy = p.cy + rvDir[1] * (outer + 0.2 * rvR);
    for (let y = 0; y < ny; y++) {
      for (let x = 0; x < nx; x++) {
        const i = x + nx * (y + ny * z);
        // Body: tissue inside an ellipse, air outside, dark lungs on both sides.
        const bx = (x - nx / 2) / p.body.rx;
        const by = (y - ny / 2) / p.body.ry;
        let v = bx * bx + by * by <= 1 ? p.tissue : 0.02;
        const lx = (Math.abs(x - nx / 2) - 0.25 * nx) / (0.12 * nx);
        const ly = (y - ny / 2) / (0.25 * ny);
        if (lx * lx + ly * ly <= 1 && Math.abs(x - p.cx) > outer + 3) v = 0.06;
        for (const b of p.blobs) if ((x - b.x) ** 2 + (y - b.y) ** 2 <= b.r * b.r) v = b.value * p.blood;
        if ((x - p.aorta.x) ** 2 + (y - p.aorta.y) ** 2 <= p.aorta.r ** 2) v = p.aorta.value;
        let label = 0;
        if (inHeart) {
          const dx = x - p.cx;
          const dy = y - p.cy;
          // Elliptic distance in the rotated frame of the LV.
          const ex = (dx * cosT + dy * sinT) / (1 + p.eccentricity);
          const ey = (-dx * sinT + dy * cosT) / (1 - p.eccentricity);
          const d = Math.sqrt(ex * ex + ey * ey);
          if (d <= cavity) label = 1;
          else if (d <= outer) label = 2;
          else if (rvR > 1) {
            const rx = x - rvCx;
            const ry = y - rvCy;
            // The RV: an ellipse elongated across its direction, minus the LV wall (a crescent).
            const along = (rx * rvDir[0] + ry * rvDir[1]) / (0.55 * rvR);
            const across = (-rx * rvDir[1] + ry * rvDir[0]) / (1.2 * rvR);
            if (along * along + across * across <= 1 && d > outer + 1) label = 3;
          }
        }
        if (label === 1 || label === 3) v = p.blood;
        else if (label === 2) v = p.myo;
        labels[i] = label;
        clean[i] = v;
      }
    }
  }
  // A slight in-plane blur (partial volume), a smooth multiplicative bias field and noise.
  const rnd = mulberry32(mixSeed('phantom-noise', p.id, p.gain));
  const image = new Float32Array(n);
  const [a, b, c, d] = p.bias;
  for (let z = 0; z < nz; z++) {
    for (let y = 0; y < ny; y++) {
      for (let x = 0; x < nx; x++) {
        let s = 0;
        let w = 0;
        for (let oy = -1; oy <= 1; oy++) {
          const yy = y + oy;
          if (yy < 0 || yy >= ny) continue;
          for (let ox = -1; ox <= 1; ox++) {
            const xx = x + ox;
            if (xx < 0 || xx >= nx) continue;
            const wt = ox === 0 && oy === 0 ? 4 : ox === 0 || oy === 0 ? 2 : 1;
            s += wt * clean[xx + nx * (yy + ny * z)];
            w += wt;
          }
        }
        const fx = x / nx - 0.5;
        const fy = y / ny - 0.5;
        const fz = nz > 1 ? z / (nz - 1) - 0.5 : 0;
        const bias = Math.exp(a * fx + b * fy + c * fx * fy * 4 + d * fz);
        const v = (s / w) * bias + p.noise * gaussian(rnd);
        image[x + nx * (y + ny * z)] = Math.max(0, v) * p.gain;
      }
    }
  }
  return { id: p.id, shape: p.shape, spacing: p.spacing, image, labels };
}
