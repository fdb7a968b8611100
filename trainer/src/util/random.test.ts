import { describe, expect, it } from 'vitest';
import { mixSeed, mulberry32, weightInitSeed } from './random.ts';

// Stored splits, initial weights and benchmark results depend on these exact numbers.
describe('seeded random sources', () => {
  it('keep their values', () => {
    expect(mixSeed(1, 'split')).toBe(1615276464);
    expect(mixSeed('sample-workdir')).toBe(1857005447);
    expect(weightInitSeed(1, 'cell0/edge1/conv/kernel')).toBe(281377323);
    const r = mulberry32(mixSeed(1, 'split'));
    const first = r();
    expect(first).toBeGreaterThanOrEqual(0);
    expect(first).toBe(mulberry32(1615276464)());
  });

  it('are two different hashes: a weight seed is not the mixed seed of the same parts', () => {
    expect(weightInitSeed(1, 'a')).not.toBe(mixSeed(1, 'a'));
  });
});
