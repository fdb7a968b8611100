// Helpers of the export tests and test/bench/onnx-inference.ts: compact genotypes and
// random weights in which every weight, every cell operation included, matters.
import * as tf from '@tensorflow/tfjs-core';
import type { Operation } from '../src/config/index.ts';
import type { Genotype, Network } from '../src/model/api.ts';
import { genotypeFromJson } from '../src/model/genotype.ts';
import { seededNormal } from '../src/model/init.ts';

/** [[input, op], ...] per node, per cell -> Genotype. */
export function genotypeOf(cells: readonly (readonly (readonly [number, Operation])[])[][]): Genotype {
  const genotype = genotypeFromJson({ cells });
  if ('error' in genotype) throw new Error(genotype.error);
  return genotype;
}

/**
 * Replaces every weight with seeded random values: He-scaled kernels (the cells'
 * zero-initialised output kernels too, so every cell operation reaches the logits),
 * norm scales around 1, shifts and biases around 0.
 */
export function randomizeWeights(net: Network, seed: number): void {
  for (const [name, v] of net.namedWeights()) {
    const s = [...v.shape] as number[];
    let values: Float32Array;
    if (s.length === 1) {
      const gamma = name.endsWith('/gamma');
      values = seededNormal(seed, name, s, gamma ? 0.2 : 0.1);
      if (gamma) for (let i = 0; i < values.length; i++) values[i] += 1;
    } else {
      // [cin, cout] 1x1 kernels; [k, k, c, 1] depthwise; [k, k, cin, cout] convolutions.
      const depthwise = s.length === 4 && /\/dw\d?$/.test(name);
      const fanIn = s.length === 2 ? s[0] : depthwise ? s[0] * s[1] : s[0] * s[1] * s[2];
      values = seededNormal(seed, name, s, Math.sqrt(2 / fanIn));
    }
    tf.tidy(() => v.assign(tf.tensor(values, s)));
  }
}

/** The cells' output kernels set to zero: the network computes the plain U-Net (a fresh cell is the identity). */
export function silenceCells(net: Network): void {
  for (const [name, v] of net.namedWeights()) if (/^cell\d+\/out\/kernel$/.test(name)) tf.tidy(() => v.assign(tf.zerosLike(v)));
}
