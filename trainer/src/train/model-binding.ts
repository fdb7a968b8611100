// The real model behind ModelKit: trainer/src/model's network, with the loss,
// the genotype rule and weight files the loops and evaluate share.
import * as tf from '@tensorflow/tfjs-core';
import { createNetwork } from '../model/network.ts';
import type { Network } from '../model/api.ts';
import { deriveGenotype } from '../search/genotype.ts';
import { readCheckpoint, restoreVariables, writeCheckpoint } from './checkpoint.ts';
import type { ModelKit } from './model-kit.ts';

/** Cross-entropy plus (1 - mean soft Dice over the foreground classes). */
export function diceCrossEntropy(logits: tf.Tensor4D, labels: tf.Tensor3D, numClasses: number): tf.Scalar {
  return tf.tidy(() => {
    const flat = tf.reshape(logits, [-1, numClasses]);
    const truth = tf.oneHot(tf.reshape(labels, [-1]) as tf.Tensor1D, numClasses);
    const ce = tf.losses.softmaxCrossEntropy(truth, flat);
    const p = tf.softmax(flat);
    const inter = tf.sum(tf.mul(p, truth), 0);
    const denom = tf.add(tf.sum(p, 0), tf.sum(truth, 0));
    const dice = tf.div(tf.add(tf.mul(inter, 2), 1), tf.add(denom, 1));
    const fg = tf.slice(dice, [1], [numClasses - 1]);
    return tf.add(ce, tf.sub(1, tf.mean(fg))) as tf.Scalar;
  });
}


function backboneNames(net: Network): Set<string> {
  const vars = new Set(net.backboneVariables);
  return new Set([...net.namedWeights()].filter(([, v]) => vars.has(v)).map(([n]) => n));
}

export const modelKit: ModelKit = {
  createNetwork,
  loss: diceCrossEntropy,
  deriveGenotype,
  saveWeights: (net, dir) => writeCheckpoint(dir, { kind: 'weights' }, net.namedWeights()),
  loadWeights: async (net, dir) => {
    const ck = readCheckpoint(dir);
    if (!ck) throw new Error(`${dir} holds no weights`);
    restoreVariables(ck.tensors, net.namedWeights(), dir);
  },
  loadBackbone: async (net, dir) => {
    const ck = readCheckpoint(dir);
    if (!ck) throw new Error(`${dir} holds no weights`);
    const names = backboneNames(net);
    restoreVariables(ck.tensors, new Map([...net.namedWeights()].filter(([n]) => names.has(n))), dir);
  },
  checkMemory: () => null,
};
