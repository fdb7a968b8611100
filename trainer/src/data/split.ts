// Patient-level split: every patient lands in exactly one of train / val / test, so
// no slice of a test patient is ever seen in training.
import { mixSeed, mulberry32, shuffled } from '../util/random.ts';

export interface SplitFractions {
  train: number;
  val: number;
  test: number;
}

export interface PatientSplit {
  train: string[];
  val: string[];
  test: string[];
}

/**
 * Splits patient ids deterministically by seed. The ids are sorted first, so the
 * result does not depend on the order files were listed in. With 3 or more patients
 * every side gets at least one.
 */
export function splitPatients(ids: readonly string[], fractions: SplitFractions, seed: number): PatientSplit {
  const unique = [...new Set(ids)].sort();
  if (unique.length !== ids.length) throw new Error('splitPatients: patient ids must be unique');
  const n = unique.length;
  const order = shuffled(unique, mulberry32(mixSeed('split', seed)));
  let nTest = Math.round(fractions.test * n);
  let nVal = Math.round(fractions.val * n);
  if (n >= 3) {
    nTest = Math.max(1, nTest);
    nVal = Math.max(1, nVal);
    while (n - nTest - nVal < 1) {
      if (nTest >= nVal && nTest > 1) nTest--;
      else nVal--;
    }
  }
  const test = order.slice(0, nTest).sort();
  const val = order.slice(nTest, nTest + nVal).sort();
  const train = order.slice(nTest + nVal).sort();
  return { train, val, test };
}
