// Seeded weight initialisation. Each weight's values come from a JS generator seeded
// by (network seed, weight name), so they do not depend on the backend, on creation
// order, or on which other weights a network has: a supernet, a discrete network and
// a plain U-Net built with the same seed hold the same backbone weights.
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32, weightInitSeed } from '../util/random.ts';

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Normal values with the given standard deviation, truncated at two deviations. */
export function seededNormal(seed: number, name: string, shape: readonly number[], std: number): Float32Array {
  const rand = mulberry32(weightInitSeed(seed, name));
  const out = new Float32Array(size(shape));
  for (let i = 0; i < out.length; i++) {
    let z: number;
    do {
      const u = 1 - rand();
      const v = rand();
      z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    } while (Math.abs(z) > 2);
    out[i] = z * std;
  }
  return out;
}

export type Init = { kind: 'he'; fanIn: number } | { kind: 'normal'; std: number } | { kind: 'constant'; value: number };

export function initialValues(seed: number, name: string, shape: readonly number[], init: Init): Float32Array {
  switch (init.kind) {
    case 'he':
      return seededNormal(seed, name, shape, Math.sqrt(2 / init.fanIn));
    case 'normal':
      return seededNormal(seed, name, shape, init.std);
    case 'constant':
      return new Float32Array(size(shape)).fill(init.value);
  }
}

/**
 * A registry of a network's named weights. tfjs variable names are process-global,
 * so the tfjs variables get generated names and the stable names live here.
 */
export class WeightStore {
  readonly seed: number;
  readonly byName = new Map<string, tf.Variable>();
  constructor(seed: number) {
    this.seed = seed;
  }

  add(name: string, shape: number[], init: Init, trainable = true): tf.Variable {
    if (this.byName.has(name)) throw new Error(`duplicate weight name ${name}`);
    const v = tf.tidy(() => tf.variable(tf.tensor(initialValues(this.seed, name, shape, init), shape), trainable));
    this.byName.set(name, v);
    return v;
  }

  dispose(): void {
    for (const v of this.byName.values()) v.dispose();
    this.byName.clear();
  }
}
