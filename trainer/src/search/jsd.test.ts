import { describe, expect, it } from 'vitest';
import { edgeDistribution, edgeDivergence, jensenShannon, softmaxAt } from './jsd.ts';

describe('jensenShannon (base 2)', () => {
  it('is 0 for identical and 1 for disjoint distributions', () => {
    expect(jensenShannon([0.2, 0.3, 0.5], [0.2, 0.3, 0.5])).toBe(0);
    expect(jensenShannon([1, 0], [0, 1])).toBeCloseTo(1, 12);
  });

  it('matches hand-computed values', () => {
    // m = (.75, .25); KL(p||m) = .5 log2(.5/.75) + .5 log2(.5/.25) = 0.2075187;
    // KL(q||m) = log2(1/.75) = 0.4150375; JS = 0.3112781
    expect(jensenShannon([0.5, 0.5], [1, 0])).toBeCloseTo(0.3112781, 6);
    // m = (.375, .625); KL(p||m) = 0.0465547, KL(q||m) = 0.0510352; JS = 0.0487949
    expect(jensenShannon([0.5, 0.5], [0.25, 0.75])).toBeCloseTo(0.0487949, 6);
  });

  it('is symmetric', () => {
    const p = [0.1, 0.6, 0.3];
    const q = [0.5, 0.25, 0.25];
    expect(jensenShannon(p, q)).toBeCloseTo(jensenShannon(q, p), 14);
  });

  it('rejects distributions of different length', () => {
    expect(() => jensenShannon([1], [0.5, 0.5])).toThrow(/differ in length/);
  });
});

describe('edge distributions', () => {
  it('softmax over the chosen indices only', () => {
    const p = softmaxAt([7, 0, Math.log(3)], [1, 2]);
    expect(p[0]).toBeCloseTo(0.25, 12);
    expect(p[1]).toBeCloseTo(0.75, 12);
  });

  it('leaves none out of p(e, t)', () => {
    // none (index 0) has the largest alpha but does not take any probability mass.
    const p = edgeDistribution([5, 0, Math.log(3)], [0, 1, 2], 0);
    expect(p).toHaveLength(2);
    expect(p[0]).toBeCloseTo(0.25, 12);
  });

  it('divergence between epochs uses the active candidates', () => {
    const js = edgeDivergence([5, 0, 0, 9], [-3, 0, Math.log(3), -9], [0, 1, 2], 0);
    expect(js).toBeCloseTo(0.0487949, 6); // op 3 is pruned: uniform vs (.25, .75)
    expect(edgeDivergence([0, 1], [0, 5], [0, 1], 0)).toBe(0); // one candidate left
  });
});
