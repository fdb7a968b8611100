// Networks with a known answer, for the evaluation tests: 'sign' segments class 1
// wherever the normalised image is above its volume mean (a perfect segmenter of a
// two-class image whose foreground is brighter), 'shift' does the same one column to
// the right (so its error is known exactly), 'background' finds nothing.
import * as tf from '@tensorflow/tfjs-core';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Network, NetworkOptions } from '../../src/model/api.ts';
import type { ModelKit } from '../../src/training/model-kit.ts';

export type FakeMode = 'sign' | 'shift' | 'background';

export interface FakeNetwork extends Network {
  mode: FakeMode;
}

export function fakeNet(options: NetworkOptions, mode: FakeMode = 'sign'): FakeNetwork {
  const net: FakeNetwork = {
    options,
    mode,
    apply(x: tf.Tensor4D): tf.Tensor4D {
      return tf.tidy(() => {
        const k = options.numClasses;
        const [n, h, w] = x.shape;
        let input: tf.Tensor4D = x;
        if (net.mode === 'shift') input = tf.concat([tf.fill([n, h, 1, 1], -1), tf.slice(x, [0, 0, 0, 0], [n, h, w - 1, 1])], 2);
        const cls = net.mode === 'background' ? tf.zeros([n, h, w], 'int32') : tf.cast(tf.greater(tf.squeeze(input, [3]), 0), 'int32');
        return tf.mul(tf.oneHot(cls as tf.Tensor3D, k), 10) as tf.Tensor4D;
      });
    },
    backboneVariables: [],
    cellVariables: [],
    namedWeights: () => new Map(),
    dispose() {},
  };
  return net;
}

/** A model kit whose networks are fake; "weights" are {"mode": ...} in <dir>/weights.json. */
export function fakeKit(created: NetworkOptions[] = []): ModelKit {
  return {
    createNetwork(options: NetworkOptions) {
      created.push(options);
      return fakeNet(options);
    },
    async loadWeights(net: Network, dir: string) {
      (net as FakeNetwork).mode = JSON.parse(readFileSync(join(dir, 'weights.json'), 'utf8')).mode;
    },
  } as unknown as ModelKit;
}
