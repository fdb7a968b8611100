import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { OPERATIONS } from '../config/index.ts';
import type { Genotype, NetworkOptions } from './api.ts';
import { deriveGenotype } from './genotype.ts';
import { diceCrossEntropyLoss } from './loss.ts';
import { createNetwork } from './network.ts';

const backbone = { depth: 2, baseFilters: 8, pretrainEpochs: 1, learningRate: 1e-3 };
const space = { operations: [...OPERATIONS], nodes: 2, partialChannels: 4 };
const opts = (cells: NetworkOptions['cells'], seed = 7): NetworkOptions => ({ backbone, inChannels: 1, numClasses: 3, cells, space, seed });

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

describeEachBackend('U-Net with IAC cells', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('gives exactly the plain U-Net output with fresh cells (supernet and discrete)', () => {
    const plain = createNetwork(opts('none'));
    const supernet = createNetwork(opts('supernet'));
    const genotype: Genotype = {
      cells: [0, 1].map(() => ({
        nodes: [
          [
            { input: 0, op: 'sep_conv_3x3' },
            { input: 1, op: 'max_pool_3x3' },
          ],
          [
            { input: 2, op: 'dil_conv_5x5' },
            { input: 0, op: 'skip_connect' },
          ],
        ],
      })),
    };
    const discrete = createNetwork(opts(genotype));
    const x = tf.randomNormal([2, 16, 16, 1], 0, 1, 'float32', 1) as tf.Tensor4D;
    const y = plain.apply(x);
    expect(y.shape).toEqual([2, 16, 16, 3]);
    expect(maxAbsDiff(supernet.apply(x), y)).toBe(0);
    expect(maxAbsDiff(discrete.apply(x), y)).toBe(0);
    // The backbone weights carry the same names and values in all three modes.
    for (const [name, v] of plain.namedWeights()) {
      expect(Array.from(supernet.namedWeights().get(name)!.dataSync())).toEqual(Array.from(v.dataSync()));
    }
    expect(plain.cellVariables).toHaveLength(0);
    expect(supernet.backboneVariables.length).toBe(plain.backboneVariables.length);
    tf.dispose([x, y]);
    for (const n of [plain, supernet, discrete]) n.dispose();
  });

  it('initialises weights from the seed: same seed same weights, other seed other weights', () => {
    const a = createNetwork(opts('supernet', 1));
    const b = createNetwork(opts('supernet', 1));
    const c = createNetwork(opts('supernet', 2));
    const w = (n: typeof a, name: string) => Array.from(n.namedWeights().get(name)!.dataSync());
    for (const name of ['enc0/conv1/kernel', 'cell1/edge3/sep_conv_5x5/dw1']) {
      expect(w(a, name)).toEqual(w(b, name));
      expect(w(a, name)).not.toEqual(w(c, name));
    }
    expect(a.arch!.snapshot()).toEqual(b.arch!.snapshot());
    for (const n of [a, b, c]) n.dispose();
  });

  it('builds a discrete network with weights only for the genotype operations', () => {
    const supernet = createNetwork(opts('supernet'));
    const genotype = deriveGenotype(supernet.arch!.snapshot(), space);
    const discrete = createNetwork(opts(genotype));
    const names = [...discrete.namedWeights().keys()].filter((n) => n.includes('/edge'));
    const expected = new Set<string>();
    for (const [l, cell] of genotype.cells.entries()) {
      for (const [j, edges] of cell.nodes.entries()) {
        for (const { input, op } of edges) {
          if (!['skip_connect', 'avg_pool_3x3', 'max_pool_3x3', 'none'].includes(op)) expected.add(`cell${l}/edge${(j * (j + 3)) / 2 + input}/${op}/`);
        }
      }
    }
    for (const n of names) expect([...expected].some((p) => n.startsWith(p))).toBe(true);
    expect(discrete.arch).toBeUndefined();
    supernet.dispose();
    discrete.dispose();
  });

  it('trains: loss falls, architecture gradients reach every cell, no tensors leak', () => {
    const net = createNetwork(opts('supernet'));
    const x = tf.randomNormal([2, 16, 16, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    const labels = tf.tidy(() => tf.reshape(tf.cast(tf.greater(x, 0.3), 'int32'), [2, 16, 16]));
    const wOpt = tf.train.adam(1e-2);
    const aOpt = tf.train.adam(1e-2);
    const loss = () => diceCrossEntropyLoss(net.apply(x, { training: true }), labels);
    const first = tf.tidy(() => loss().dataSync()[0]);
    const step = () => {
      tf.dispose(wOpt.minimize(loss, true, net.cellVariables as tf.Variable[]) ?? []);
      tf.dispose(aOpt.minimize(loss, true, [...net.arch!.alphas, ...net.arch!.betas]) ?? []);
    };
    step(); // optimizer slots and cell plans are created once
    const live = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(live);
    const { grads, value } = tf.variableGrads(loss, [...net.arch!.alphas]);
    for (const g of Object.values(grads)) expect(tf.tidy(() => tf.max(tf.abs(g)).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads)]);
    const last = tf.tidy(() => loss().dataSync()[0]);
    expect(last).toBeLessThan(first);
    tf.dispose([x, labels]);
    wOpt.dispose();
    aOpt.dispose();
    net.dispose();
  });

  it('makes pruned operations cost nothing: fewer kernels after pruning, and none for a pruned kind', async () => {
    const net = createNetwork(opts('supernet'));
    const x = tf.randomNormal([1, 16, 16, 1], 0, 1, 'float32', 4) as tf.Tensor4D;
    const kernels = async () => (await tf.profile(() => net.apply(x).dispose())).kernels.map((k) => k.name);
    const before = await kernels();
    expect(before.filter((k) => k === 'DepthwiseConv2dNative').length).toBeGreaterThan(0);
    const ops = space.operations;
    for (let c = 0; c < 2; c++) for (let e = 0; e < 5; e++) net.arch!.prune(c, e, [ops.indexOf('conv_3x3'), ops.indexOf('skip_connect')]);
    const after = await kernels();
    expect(after.length).toBeLessThan(before.length * 0.7);
    expect(after.filter((k) => k === 'DepthwiseConv2dNative' || k === 'AvgPool')).toEqual([]);
    expect(after.filter((k) => k === 'MaxPool')).toHaveLength(2); // the backbone's down-sampling only
    x.dispose();
    net.dispose();
  });

  it('rejects bad options with messages that name the setting', () => {
    expect(() => createNetwork({ ...opts('supernet'), space: undefined })).toThrow(/options.space/);
    expect(() => createNetwork({ ...opts('supernet'), space: { ...space, partialChannels: 3 } })).toThrow(/search.partialChannels/);
    const net = createNetwork(opts('none'));
    expect(() => net.apply(tf.zeros([1, 18, 18, 1]))).toThrow(/dataset.sliceSize/);
    net.dispose();
    expect(() => createNetwork(opts({ cells: [{ nodes: [[{ input: 0, op: 'conv_3x3' }]] }] }))).toThrow(/backbone.depth/);
  });
});
