import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../util/random.ts';
import { dice, hd95, percentile, squaredDistanceTransform, surface } from './metrics.ts';
import { bruteDice, bruteHd95 } from '../../testing/eval/brute-force.ts';

describe('Dice', () => {
  it('matches hand-computed values', () => {
    const truth = [0, 1, 1, 1, 2, 2, 0, 0];
    const pred = [0, 1, 1, 0, 2, 0, 2, 1];
    expect(dice(pred, truth, 1)).toBeCloseTo((2 * 2) / (3 + 3), 12); // 2 shared, 3 predicted, 3 true
    expect(dice(pred, truth, 2)).toBeCloseTo((2 * 1) / (2 + 2), 12);
  });

  it('is 1 for a class absent from both, 0 when absent from one side', () => {
    expect(dice([0, 0, 1], [0, 0, 1], 3)).toBe(1);
    expect(dice([0, 0, 0], [0, 0, 1], 1)).toBe(0);
    expect(dice([1, 0, 0], [0, 0, 0], 1)).toBe(0);
  });
});

describe('distance transform', () => {
  it('equals brute force on an anisotropic volume', () => {
    const shape = [4, 5, 6] as const;
    const spacing = [2.5, 1, 0.7];
    const seeds = new Uint8Array(120);
    for (const i of [3, 47, 61, 118]) seeds[i] = 1;
    const d = squaredDistanceTransform(seeds, shape, spacing);
    const pos = (i: number) => [Math.floor(i / 30), Math.floor(i / 6) % 5, i % 6];
    for (let i = 0; i < 120; i++) {
      let best = Infinity;
      for (let j = 0; j < 120; j++) {
        if (!seeds[j]) continue;
        const [a, b, c] = pos(i);
        const [x, y, z] = pos(j);
        best = Math.min(best, ((a - x) * spacing[0]) ** 2 + ((b - y) * spacing[1]) ** 2 + ((c - z) * spacing[2]) ** 2);
      }
      expect(d[i]).toBeCloseTo(best, 9);
    }
  });

  it('marks surfaces as the mask minus its 6-connected erosion', () => {
    const shape = [3, 3, 3] as const;
    const full = new Uint8Array(27).fill(1);
    const s = surface(full, shape);
    expect(s.reduce((a, b) => a + b, 0)).toBe(26); // all but the centre
    expect(s[13]).toBe(0);
  });
});

describe('HD95', () => {
  it('matches a hand-computed value', () => {
    // A row of 5 voxels: truth {0, 1}, prediction {0, 1, 2, 3}. In a 1x1xN volume every
    // mask voxel is on the surface. Distances pred->truth 0, 0, 1, 2; truth->pred 0, 0.
    // Sorted [0, 0, 0, 0, 1, 2]: the 95th percentile is at 4.75 -> 1 + 0.75 * (2 - 1).
    const truth = [1, 1, 0, 0, 0];
    const pred = [1, 1, 1, 1, 0];
    expect(hd95(pred, truth, 1, [1, 1, 5], [1, 1, 1])).toBeCloseTo(1.75, 12);
    // The same in millimetres with 2 mm voxels along the row.
    expect(hd95(pred, truth, 1, [1, 1, 5], [1, 1, 2])).toBeCloseTo(3.5, 12);
  });

  it('measures a shift between two cubes in millimetres', () => {
    // 3x3x3 cubes shifted by 2 voxels along axis 0 (3 mm slices) in a 9x5x5 volume.
    const shape = [9, 5, 5] as const;
    const cube = (a0: number) => {
      const v = new Uint8Array(225);
      for (let a = a0; a < a0 + 3; a++) for (let b = 1; b < 4; b++) for (let c = 1; c < 4; c++) v[(a * 5 + b) * 5 + c] = 1;
      return v;
    };
    // Surface of a cube: 26 voxels (all but the centre). Truth [2..4] -> prediction [4..6]
    // along axis 0: the 9 voxels of slice 2 are 6 mm away, the 8 of slice 3 are 3 mm, the
    // 9 of the shared slice 4 are 0; the same the other way. 52 distances: 18 x 0, 16 x 3,
    // 18 x 6; the 95th percentile (position 48.45) is 6 mm.
    expect(hd95(cube(4), cube(2), 1, shape, [3, 1, 1])).toBeCloseTo(6, 12);
    // With 1 mm slices the far layers are 2 mm away.
    expect(hd95(cube(4), cube(2), 1, shape, [1, 1, 1])).toBeCloseTo(2, 12);
    expect(hd95(cube(2), cube(2), 1, shape, [3, 1, 1])).toBe(0);
  });

  it('is null for a class absent from both, the volume diagonal when missed', () => {
    expect(hd95([0, 0], [0, 0], 1, [1, 1, 2], [1, 1, 1])).toBeNull();
    expect(hd95([0, 0, 0], [0, 1, 0], 1, [1, 1, 3], [2, 3, 4])).toBeCloseTo(Math.hypot(2, 3, 12), 12);
  });

  it('percentile interpolates linearly like numpy', () => {
    expect(percentile(Float64Array.from([4, 1, 3, 2]), 50)).toBe(2.5);
    expect(percentile(Float64Array.from([10]), 95)).toBe(10);
  });
});

describe('Dice and HD95 on an anisotropic grid', () => {
  it('match values computed by hand', () => {
    // A 2 x 1 x 3 volume ([d0][d1][d2]) with 3 mm along d0, 1 mm along d1, 0.5 mm along d2.
    // Truth: voxel (0,0,0). Prediction: (0,0,0), (0,0,1) and (1,0,0).
    const shape = [2, 1, 3] as const;
    const spacing = [3, 1, 0.5];
    const truth = [1, 0, 0, 0, 0, 0];
    const pred = [1, 1, 0, 1, 0, 0];
    // Dice: 1 voxel shared, 3 predicted, 1 true: 2 * 1 / (3 + 1).
    expect(dice(pred, truth, 1)).toBe(0.5);
    // Every voxel of these thin masks is on their surface. Prediction -> truth: (0,0,0) 0 mm,
    // (0,0,1) one step along d2 = 0.5 mm, (1,0,0) one step along d0 = 3 mm; truth -> prediction:
    // 0 mm. Sorted [0, 0, 0.5, 3]: the 95th percentile is at position 0.95 * 3 = 2.85, so
    // 0.5 + 0.85 * (3 - 0.5) = 2.625 mm.
    expect(hd95(pred, truth, 1, shape, spacing)).toBeCloseTo(2.625, 12);
    // On a 1 mm grid the same voxels give [0, 0, 1, 1]: 1 mm. The spacing is what differs.
    expect(hd95(pred, truth, 1, shape, [1, 1, 1])).toBeCloseTo(1, 12);
    // Class 2 predicted nowhere but present: the volume diagonal, sqrt(6^2 + 1^2 + 1.5^2) mm.
    const truth2 = [0, 0, 2, 0, 0, 0];
    expect(hd95(pred, truth2, 2, shape, spacing)).toBeCloseTo(Math.sqrt(39.25), 12);
    expect(dice(pred, truth2, 2)).toBe(0);
  });

  it('agree with a brute-force HD95 over all surface voxel pairs', () => {
    // Random blobs on a 6 x 7 x 8 grid with 2.5 x 0.8 x 1.1 mm voxels: some touch the
    // volume's edges (which count as outside), some are small and far from the edges (the
    // bounding-box crop of hd95 must not change their surfaces).
    const shape = [6, 7, 8] as const;
    const spacing = [2.5, 0.8, 1.1];
    const n = 6 * 7 * 8;
    const random = mulberry32(1234);
    const blob = (vol: Uint8Array, c: number, centre: number[], r: number[]) => {
      for (let a = 0; a < 6; a++)
        for (let b = 0; b < 7; b++)
          for (let d = 0; d < 8; d++) {
            const q = ((a - centre[0]) / r[0]) ** 2 + ((b - centre[1]) / r[1]) ** 2 + ((d - centre[2]) / r[2]) ** 2;
            if (q <= 1 && random() < 0.9) vol[(a * 7 + b) * 8 + d] = c;
          }
    };
    let compared = 0;
    for (let trial = 0; trial < 12; trial++) {
      const truth = new Uint8Array(n);
      const pred = new Uint8Array(n);
      const place = () => [random() * 6, random() * 7, random() * 8];
      const radii = () => [0.6 + random() * 2.5, 0.6 + random() * 3, 0.6 + random() * 3];
      blob(truth, 1, place(), radii());
      blob(pred, 1, place(), radii());
      if (trial % 3 === 0) {
        // A small structure in the middle, found slightly off.
        blob(truth, 2, [3, 3, 4], [0.8, 1.2, 1.2]);
        blob(pred, 2, [3, 4, 4], [0.8, 1.2, 1.6]);
      }
      for (const c of [1, 2]) {
        expect(dice(pred, truth, c)).toBeCloseTo(bruteDice(pred, truth, c), 12);
        const reference = bruteHd95(pred, truth, c, shape, spacing);
        const value = hd95(pred, truth, c, shape, spacing);
        if (reference === null) expect(value).toBeNull();
        else {
          expect(value).toBeCloseTo(reference, 9);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThanOrEqual(14);
  });
});
