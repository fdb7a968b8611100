import { describe, expect, it } from 'vitest';
import { chooseAxis, extractSlice, normalizeVolume, quantile, resizeLinear, resizeNearest, sliceVolume, slicedSpacing } from './slicing.ts';

describe('slicing axis', () => {
  it("'auto' takes the axis with the largest spacing, the last one on ties", () => {
    expect(chooseAxis('auto', [1, 1, 5])).toBe(2);
    expect(chooseAxis('auto', [6, 1, 1])).toBe(0);
    expect(chooseAxis('auto', [1, 3, 1])).toBe(1);
    expect(chooseAxis('auto', [1, 1, 1])).toBe(2);
    expect(chooseAxis('auto', [2, 2, 1])).toBe(1);
    expect(chooseAxis('j', [1, 1, 9])).toBe(1);
  });

  it('extracts the plane across the axis, rows along the first remaining axis', () => {
    // vol[i + 2*(j + 3*k)] = 100*i + 10*j + k, shape 2x3x4
    const shape = [2, 3, 4];
    const vol = new Float32Array(24);
    for (let k = 0; k < 4; k++) for (let j = 0; j < 3; j++) for (let i = 0; i < 2; i++) vol[i + 2 * (j + 3 * k)] = 100 * i + 10 * j + k;
    expect(Array.from(extractSlice(vol, shape, 2, 3, new Float32Array(6)))).toEqual([3, 13, 23, 103, 113, 123]);
    expect(Array.from(extractSlice(vol, shape, 0, 1, new Float32Array(12)))).toEqual([100, 101, 102, 103, 110, 111, 112, 113, 120, 121, 122, 123]);
    expect(Array.from(extractSlice(vol, shape, 1, 2, new Float32Array(8)))).toEqual([20, 21, 22, 23, 120, 121, 122, 123]);
  });

  it('gives the spacing of the resized, stacked slices', () => {
    expect(slicedSpacing([64, 32, 10], [1, 2, 8], 2, 32)).toEqual([2, 2, 8]);
    expect(slicedSpacing([64, 32, 10], [1, 2, 8], 0, 16)).toEqual([4, 5, 1]);
  });
});

describe('resampling', () => {
  it('nearest keeps label values and upsamples by repetition', () => {
    const src = new Uint8Array([1, 2, 3, 4]);
    expect(Array.from(resizeNearest(src, 2, 2, 4))).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    expect(Array.from(resizeNearest(new Uint8Array([0, 0, 5, 5, 0, 0, 5, 5]), 2, 4, 2))).toEqual([0, 5, 0, 5]);
  });

  it('linear interpolates between pixel centres and is exact for identity size', () => {
    const src = new Float32Array([0, 4, 8, 12]);
    expect(Array.from(resizeLinear(src, 2, 2, 2))).toEqual([0, 4, 8, 12]);
    // 1x2 -> 4 columns: centres at -0.25, 0.25, 0.75, 1.25 of the source (clamped).
    const row = resizeLinear(new Float32Array([0, 4, 0, 4]), 2, 2, 4);
    expect(Array.from(row.subarray(0, 4))).toEqual([0, 1, 3, 4]);
    // down-sampling a 4x4 ramp to 2x2 averages neighbouring pairs.
    const ramp = new Float32Array(16).map((_, i) => i % 4);
    expect(Array.from(resizeLinear(ramp, 4, 4, 2))).toEqual([0.5, 2.5, 0.5, 2.5]);
  });
});

describe('normalisation', () => {
  it('MRI: zero mean, unit variance per volume; constant volumes become zeros', () => {
    const v = normalizeVolume(new Float32Array([1, 2, 3, 4, 5]), 'MRI');
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
    expect(mean).toBeCloseTo(0, 6);
    expect(variance).toBeCloseTo(1, 5);
    expect(Array.from(normalizeVolume(new Float32Array([7, 7, 7]), 'MRI'))).toEqual([0, 0, 0]);
  });

  it('CT: clips to the 0.5-99.5 percentiles before the z-score', () => {
    const data = new Float32Array(1000).map((_, i) => i);
    data[999] = 1e6; // a metal artefact must not dominate the scale
    const lo = quantile(data, 0.005);
    const hi = quantile(data, 0.995);
    expect(lo).toBeCloseTo(4.995, 3);
    expect(hi).toBeLessThan(1000);
    const v = normalizeVolume(Float32Array.from(data), 'CT');
    expect(Math.max(...v)).toBeLessThan(2);
    expect(v[999]).toBe(v[998]);
  });
});

describe('sliceVolume', () => {
  it('turns a volume into resized slice stacks, labels by nearest neighbour', () => {
    const shape = [4, 4, 2];
    const img = new Float32Array(32).map((_, i) => i);
    const lbl = new Uint8Array(32).map((_, i) => (i >= 16 ? 2 : i % 2));
    const s = sliceVolume(img, lbl, shape, 2, 2);
    expect(s.count).toBe(2);
    // slice 0: label = i % 2 (rows are i); nearest picks rows 1 and 3. Slice 1: all 2.
    expect(Array.from(s.labels)).toEqual([1, 1, 1, 1, 2, 2, 2, 2]);
    // image (r, c) = r + 4c (+16 on slice 1); linear 4 -> 2 averages 2x2 blocks.
    expect(Array.from(s.images)).toEqual([2.5, 10.5, 4.5, 12.5, 18.5, 26.5, 20.5, 28.5]);
  });
});
