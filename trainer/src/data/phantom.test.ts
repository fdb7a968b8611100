import { describe, expect, it } from 'vitest';
import { phantomCase, phantomVolume } from './phantom.ts';

describe('phantom', () => {
  it('is deterministic by (seed, patient)', () => {
    const a = phantomVolume(5, 3);
    const b = phantomVolume(5, 3);
    expect(a.image).toEqual(b.image);
    expect(a.labels).toEqual(b.labels);
    expect(phantomCase(5, 3)).toEqual({ id: a.id, shape: a.shape, spacing: a.spacing });
  });

  it('varies between patients and seeds', () => {
    const a = phantomVolume(0, 0);
    const b = phantomVolume(0, 1);
    const c = phantomVolume(1, 0);
    expect(a.id).toBe('phantom_000');
    expect(b.shape).not.toEqual(a.shape);
    expect(c.image).not.toEqual(a.image);
  });

  it('has the three structures with blood brighter than myocardium, and realistic geometry', () => {
    for (let p = 0; p < 4; p++) {
      const v = phantomVolume(0, p);
      const sum = [0, 0, 0, 0];
      const count = [0, 0, 0, 0];
      v.labels.forEach((l, i) => {
        sum[l] += v.image[i];
        count[l]++;
      });
      for (const c of count) expect(c).toBeGreaterThan(0);
      const mean = sum.map((s, i) => s / count[i]);
      expect(mean[1]).toBeGreaterThan(1.5 * mean[2]); // LV blood vs myocardium
      expect(mean[3]).toBeGreaterThan(1.5 * mean[2]); // RV blood vs myocardium
      expect(count[1]).toBeGreaterThan(count[3] * 0.8); // the LV cavity is the larger pool
      expect(v.spacing[2]).toBeGreaterThan(v.spacing[0] * 4); // short-axis stack: thick slices
    }
  });

  it('is not trivially separable by intensity: background holds blood-bright voxels', () => {
    const v = phantomVolume(0, 0);
    let lvMean = 0;
    let lvN = 0;
    v.labels.forEach((l, i) => {
      if (l === 1) {
        lvMean += v.image[i];
        lvN++;
      }
    });
    lvMean /= lvN;
    let brightBackground = 0;
    v.labels.forEach((l, i) => {
      if (l === 0 && v.image[i] > 0.8 * lvMean) brightBackground++;
    });
    expect(brightBackground).toBeGreaterThan(20);
  });
});
