import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import type { NetworkOptions } from './api.ts';
import { createNetwork } from './network.ts';
import { loadNamedTensors, loadWeights, MANIFEST, saveNamedTensors, saveWeights } from './serialize.ts';

const base: Omit<NetworkOptions, 'cells'> = {
  backbone: { depth: 2, baseFilters: 4, pretrainEpochs: 1, learningRate: 1e-3 },
  inChannels: 1,
  numClasses: 3,
  space: { operations: ['none', 'skip_connect', 'conv_3x3', 'sep_conv_3x3'], nodes: 2, partialChannels: 2 },
  seed: 1,
};

describeEachBackend('weight serialisation', (backend) => {
  let dir: string;
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
    dir = mkdtempSync(path.join(tmpdir(), 'iacnas-weights-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips named float and int tensors with metadata', () => {
    const d = path.join(dir, 'named');
    const a = tf.tensor2d([1, 2, 3, 4.5], [2, 2]);
    const b = tf.tensor1d([7, -1], 'int32');
    saveNamedTensors(
      d,
      new Map<string, tf.Tensor>([
        ['a', a],
        ['opt/step', b],
      ]),
      { epoch: 3 },
    );
    const { tensors, meta } = loadNamedTensors(d);
    expect(meta).toEqual({ epoch: 3 });
    expect(tensors.get('a')!.arraySync()).toEqual([
      [1, 2],
      [3, 4.5],
    ]);
    expect(tensors.get('opt/step')!.dtype).toBe('int32');
    expect(Array.from(tensors.get('opt/step')!.dataSync())).toEqual([7, -1]);
    tf.dispose([a, b, ...tensors.values()]);
  });

  it('restores a network exactly and leaves one data file after overwriting', () => {
    const d = path.join(dir, 'net');
    const n1 = createNetwork({ ...base, cells: 'supernet', seed: 1 });
    const n2 = createNetwork({ ...base, cells: 'supernet', seed: 2 });
    const x = tf.randomNormal([1, 8, 8, 1], 0, 1, 'float32', 3) as tf.Tensor4D;
    // Make the cells non-trivial so the comparison covers them.
    n1.namedWeights().forEach((v, name) => {
      if (name.endsWith('out/kernel')) v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', 4));
    });
    saveWeights(n1, d);
    saveWeights(n1, d); // same content: same data file
    const y1 = n1.apply(x);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(n2.apply(x), y1))).dataSync()[0])).toBeGreaterThan(1e-3);
    const report = loadWeights(n2, d);
    // Architecture parameters are not weights: the search checkpoints them apart.
    n2.arch!.restore(n1.arch!.snapshot());
    expect(report.missing).toEqual([]);
    expect(report.loaded.length).toBe(n1.namedWeights().size);
    expect(tf.tidy(() => tf.max(tf.abs(tf.sub(n2.apply(x), y1))).dataSync()[0])).toBe(0);
    n1.namedWeights()
      .get('head/bias')!
      .assign(tf.ones([3]));
    saveWeights(n1, d);
    const bins = readdirSync(d).filter((f) => f.endsWith('.bin'));
    expect(bins).toHaveLength(1);
    tf.dispose([x, y1]);
    n1.dispose();
    n2.dispose();
  });

  it('loads a plain U-Net into a supernet by name when not strict, and names what differs when strict', () => {
    const d = path.join(dir, 'plain');
    const plain = createNetwork({ ...base, cells: 'none' });
    saveWeights(plain, d);
    const supernet = createNetwork({ ...base, cells: 'supernet', seed: 9 });
    expect(() => loadWeights(supernet, d)).toThrow(/missing from the checkpoint: .*cell0\/pre0\/kernel/);
    const report = loadWeights(supernet, d, { strict: false });
    expect(report.loaded.length).toBe(plain.namedWeights().size);
    expect(report.missing.every((n) => n.startsWith('cell'))).toBe(true);
    expect(Array.from(supernet.namedWeights().get('enc0/conv1/kernel')!.dataSync())).toEqual(
      Array.from(plain.namedWeights().get('enc0/conv1/kernel')!.dataSync()),
    );
    const wider = createNetwork({ ...base, backbone: { ...base.backbone, baseFilters: 8 }, cells: 'none' });
    expect(() => loadWeights(wider, d, { strict: false })).toThrow(/shapes differ:\n {2}enc0\/conv1\/kernel: checkpoint \[3,3,1,4\] vs network \[3,3,1,8\]/);
    plain.dispose();
    supernet.dispose();
    wider.dispose();
  });

  it('keeps the previous checkpoint readable when a write is interrupted, and detects corruption', () => {
    const d = path.join(dir, 'torn');
    const a = tf.tensor1d([1, 2, 3]);
    saveNamedTensors(d, new Map([['a', a]]));
    // An interrupted later save leaves only temporary files behind.
    writeFileSync(path.join(d, `${MANIFEST}.tmp-999`), '{"format": "iacnas-ten');
    writeFileSync(path.join(d, 'weights.0123456789abcdef.bin.tmp-999'), Buffer.alloc(5));
    const { tensors } = loadNamedTensors(d);
    expect(Array.from(tensors.get('a')!.dataSync())).toEqual([1, 2, 3]);
    const manifest = JSON.parse(readFileSync(path.join(d, MANIFEST), 'utf8'));
    writeFileSync(path.join(d, manifest.data), Buffer.alloc(12, 1));
    expect(() => loadNamedTensors(d)).toThrow(/corrupt/);
    tf.dispose([a, ...tensors.values()]);
  });
});
