import { describe, expect, it } from 'vitest';
import { splitPatients } from './split.ts';

const ids = Array.from({ length: 37 }, (_, i) => `case_${String(i).padStart(3, '0')}`);
const fractions = { train: 0.6, val: 0.2, test: 0.2 };

describe('patient-level split', () => {
  it('puts every patient on exactly one side, in the configured proportions', () => {
    const s = splitPatients(ids, fractions, 0);
    const all = [...s.train, ...s.val, ...s.test];
    expect(all.sort()).toEqual([...ids].sort());
    expect(new Set(all).size).toBe(ids.length);
    expect(s.test.length).toBe(Math.round(0.2 * 37));
    expect(s.val.length).toBe(Math.round(0.2 * 37));
  });

  it('is deterministic by seed and independent of listing order', () => {
    const a = splitPatients(ids, fractions, 7);
    const b = splitPatients([...ids].reverse(), fractions, 7);
    expect(b).toEqual(a);
    const c = splitPatients(ids, fractions, 8);
    expect(c.test).not.toEqual(a.test);
  });

  it('gives each side at least one patient for tiny datasets', () => {
    for (const n of [3, 4, 5]) {
      const s = splitPatients(ids.slice(0, n), fractions, 1);
      expect(s.train.length).toBeGreaterThanOrEqual(1);
      expect(s.val.length).toBeGreaterThanOrEqual(1);
      expect(s.test.length).toBeGreaterThanOrEqual(1);
      expect(s.train.length + s.val.length + s.test.length).toBe(n);
    }
  });

  it('refuses duplicate patient ids (a patient must not land twice)', () => {
    expect(() => splitPatients(['a', 'b', 'a'], fractions, 0)).toThrow(/unique/);
  });
});
