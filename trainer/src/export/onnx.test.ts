// The ONNX export against the tfjs network it comes from: networks whose discrete cells
// use every candidate operation, with random weights everywhere, run in
// onnxruntime-node and in tfjs (training: false) on the same random slices.
import * as ort from 'onnxruntime-node';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { OPERATIONS, parseTrainerConfig, type Operation } from '../config/index.ts';
import type { Genotype, Network } from '../model/api.ts';
import { createNetwork } from '../model/network.ts';
import { networkToOnnx, samePads } from './onnx.ts';
import { readModelSummary } from './onnx-proto.ts';
import { ProtoWriter, readFields, readPackedVarints } from './protobuf.ts';
import { genotypeOf, randomizeWeights, silenceCells } from '../../testing/export.ts';
import { compareWithOnnxRuntime, randomSlices, toNchw } from './verify.ts';

/** The real MSD Task04 hippocampus data beside the checkout (198 cases; the test reads 3), as in trainer/src/data/dataset.test.ts. */
const HIPPOCAMPUS = '../shared/data/msd-hippocampus';

/**
 * Bound on max |ONNX logit - tfjs logit| / max |logit| for the networks here (depth
 * 1-3, 4-8 base filters, 5x5 pixels and more at the bottleneck). float32 has a rounding
 * unit of 6e-8; the two sides sum in other orders with other convolution algorithms,
 * and the ~20 instance normalisations in a row can scale a rounding error up by a
 * channel's magnitude over its spread. Measured: 1e-6 to 7e-6 on wasm and native
 * TensorFlow, so 1e-4 leaves a margin of 15x, while a wrong count_include_pad gives
 * 6e-2 and a wrong channel shuffle or dilation far more. (--verify of `iacnas export`
 * accepts 1e-3: it has to hold for the largest configurations too, see verify.ts.)
 */
const RELATIVE_TOLERANCE = 1e-4;

interface Case {
  title: string;
  depth: number;
  baseFilters: number;
  k: number;
  genotype: Genotype;
  n: number;
  height: number;
  width: number;
}

const CASES: Case[] = [
  {
    // Level 0: 8 channels (2 operated), level 1: 16 (4 operated); 24x20 input, 6x5 at the bottleneck.
    title: 'all 10 operations, K=4, 4 nodes, depth 2, 24x20 slices (odd 6x5 bottleneck)',
    depth: 2,
    baseFilters: 8,
    k: 4,
    genotype: genotypeOf([
      [
        [
          [0, 'conv_3x3'],
          [1, 'sep_conv_3x3'],
        ],
        [
          [0, 'dil_conv_3x3'],
          [2, 'avg_pool_3x3'],
        ],
        [
          [1, 'max_pool_3x3'],
          [3, 'skip_connect'],
        ],
        [
          [2, 'conv_5x5'],
          [4, 'none'],
        ],
      ],
      [
        [
          [0, 'sep_conv_5x5'],
          [1, 'dil_conv_5x5'],
        ],
        [
          [1, 'none'],
          [2, 'skip_connect'],
        ],
        [
          [0, 'avg_pool_3x3'],
          [3, 'max_pool_3x3'],
        ],
        [
          [3, 'conv_3x3'],
          [4, 'sep_conv_3x3'],
        ],
      ],
    ]),
    n: 2,
    height: 24,
    width: 20,
  },
  {
    title: 'all 10 operations, K=1 (no bypass, no shuffle), 3 nodes, depth 2, 20x20 slices (odd 5x5 bottleneck)',
    depth: 2,
    baseFilters: 8,
    k: 1,
    genotype: genotypeOf([
      [
        [
          [0, 'sep_conv_5x5'],
          [1, 'avg_pool_3x3'],
        ],
        [
          [0, 'none'],
          [2, 'dil_conv_5x5'],
        ],
        [
          [1, 'conv_5x5'],
          [3, 'max_pool_3x3'],
        ],
      ],
      [
        [
          [0, 'skip_connect'],
          [1, 'conv_3x3'],
        ],
        [
          [2, 'dil_conv_3x3'],
          [1, 'sep_conv_3x3'],
        ],
        [
          [3, 'skip_connect'],
          [0, 'avg_pool_3x3'],
        ],
      ],
    ]),
    n: 3,
    height: 20,
    width: 20,
  },
  {
    // A node with only 'none' edges (operated channels of zero) and a node with two operations on one edge.
    title: "all 10 operations, K=2, 2 nodes, depth 3, 32x32 slices, an all-'none' node and two operations on one edge",
    depth: 3,
    baseFilters: 8,
    k: 2,
    genotype: genotypeOf([
      [
        [
          [0, 'none'],
          [1, 'none'],
        ],
        [
          [2, 'conv_3x3'],
          [0, 'sep_conv_3x3'],
        ],
      ],
      [
        [
          [1, 'max_pool_3x3'],
          [1, 'dil_conv_3x3'],
        ],
        [
          [0, 'avg_pool_3x3'],
          [2, 'skip_connect'],
        ],
      ],
      [
        [
          [0, 'conv_5x5'],
          [1, 'skip_connect'],
        ],
        [
          [2, 'sep_conv_5x5'],
          [1, 'dil_conv_5x5'],
        ],
      ],
    ]),
    n: 2,
    height: 32,
    width: 32,
  },
];

function build(c: Case, seed = 11): Network {
  const net = createNetwork({
    backbone: { depth: c.depth, baseFilters: c.baseFilters, pretrainEpochs: 1, learningRate: 1e-3 },
    inChannels: 1,
    numClasses: 3,
    cells: c.genotype,
    space: { operations: [...OPERATIONS], nodes: c.genotype.cells[0].nodes.length, partialChannels: c.k },
    seed,
  });
  randomizeWeights(net, seed);
  return net;
}

function opsOf(g: Genotype): Set<Operation> {
  return new Set(g.cells.flatMap((c) => c.nodes.flatMap((n) => n.map((e) => e.op))));
}

describe('the test networks', () => {
  it('use every candidate operation in every case', () => {
    for (const c of CASES) expect([...opsOf(c.genotype)].sort()).toEqual([...OPERATIONS].sort());
  });
});

describeEachBackend('ONNX export vs the tfjs forward pass', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  for (const c of CASES) {
    it(c.title, async () => {
      const net = build(c);
      const x = randomSlices(c.n, c.height, c.width, 1, 3);
      try {
        const exported = networkToOnnx(net, { height: c.height, width: c.width, classNames: ['background', 'a', 'b'] });
        const r = await compareWithOnnxRuntime(net, exported.bytes, x);
        console.log(
          `${backend}: ${c.title}: max |logit diff| ${r.maxAbsDiff.toExponential(2)} at max |logit| ${r.maxAbsLogit.toFixed(3)} ` +
            `(relative ${r.relative.toExponential(2)}), max |probability diff| ${r.maxProbabilityDiff.toExponential(2)}, argmax agreement ${(100 * r.argmaxAgreement).toFixed(3)}%`,
        );
        expect(r.shape).toEqual([c.n, 3, c.height, c.width]);
        expect(r.maxAbsLogit).toBeGreaterThan(0.5);
        expect(r.relative).toBeLessThan(RELATIVE_TOLERANCE);
        expect(r.maxProbabilityDiff).toBeLessThan(1e-5);
        expect(r.argmaxAgreement).toBeGreaterThanOrEqual(0.999);

        // The cells carry weight in these logits: without them the output moves by far
        // more than the tolerance, so a cell exported wrongly could not pass above.
        const full = tf.tidy(() => net.apply(x, { training: false }));
        silenceCells(net);
        const plain = tf.tidy(() => net.apply(x, { training: false }));
        const moved = tf.tidy(() => tf.max(tf.abs(tf.sub(full, plain))).dataSync()[0]);
        tf.dispose([full, plain]);
        expect(moved).toBeGreaterThan(1000 * RELATIVE_TOLERANCE * r.maxAbsLogit);
      } finally {
        x.dispose();
        net.dispose();
      }
    });
  }

  it('agrees on real MSD hippocampus slices, normalised and resized by the data layer', async () => {
    const { loadDataset } = await import('../data/index.ts');
    const dataset = parseTrainerConfig({ dataset: { format: 'msd', path: HIPPOCAMPUS, cases: 3, sliceSize: 32 } }).dataset;
    const data = await loadDataset(dataset);
    const slices = data.test.patients[0].slices;
    const b = await data.test.batch(slices.slice(Math.floor(slices.length / 2) - 4, Math.floor(slices.length / 2) + 4));
    const c = CASES[0];
    const net = build(c);
    const x = tf.tensor4d(b.images, [b.n, 32, 32, 1]);
    try {
      const r = await compareWithOnnxRuntime(net, networkToOnnx(net, { height: 32 }).bytes, x);
      console.log(
        `${backend}: ${b.n} hippocampus slices, 32x32, case 1 network: max |logit diff| ${r.maxAbsDiff.toExponential(2)} at max |logit| ${r.maxAbsLogit.toFixed(3)} (relative ${r.relative.toExponential(2)})`,
      );
      expect(b.n).toBe(8);
      expect(r.relative).toBeLessThan(RELATIVE_TOLERANCE);
      expect(r.argmaxAgreement).toBeGreaterThanOrEqual(0.999);
    } finally {
      x.dispose();
      net.dispose();
    }
  });

  it('exports the plain U-Net (no cells) too', async () => {
    const net = createNetwork({
      backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1, learningRate: 1e-3 },
      inChannels: 2,
      numClasses: 2,
      cells: 'none',
      seed: 2,
    });
    randomizeWeights(net, 2);
    const x = randomSlices(2, 18, 14, 2, 4);
    try {
      const r = await compareWithOnnxRuntime(net, networkToOnnx(net, { height: 18, width: 14 }).bytes, x);
      console.log(
        `${backend}: plain U-Net, 2 input channels, 18x14 (odd 9x7 bottleneck): max |logit diff| ${r.maxAbsDiff.toExponential(2)} (relative ${r.relative.toExponential(2)})`,
      );
      expect(r.shape).toEqual([2, 2, 18, 14]);
      expect(r.relative).toBeLessThan(RELATIVE_TOLERANCE);
    } finally {
      x.dispose();
      net.dispose();
    }
  });
});

describe('the exported model', () => {
  let net: Network;
  let bytes: Uint8Array;
  const c = CASES[2];

  beforeAll(async () => {
    await initBackend({ backend: 'cpu', quiet: true });
    net = build(c);
    bytes = networkToOnnx(net, { height: 32, classNames: ['background', 'LV', 'RV'], metadata: { modality: 'MRI', slice_size: '32' } }).bytes;
  });
  afterAll(() => net.dispose());

  it('is opset 17 with input image [N, 1, H, W] and outputs logits and probabilities [N, classes, H, W]', async () => {
    const s = readModelSummary(bytes);
    expect(s.irVersion).toBe(8);
    expect(s.opsetImports).toEqual([{ domain: '', version: 17 }]);
    expect(s.producerName).toBe('iacnas');
    expect(s.inputs).toEqual([{ name: 'image', elemType: 1, shape: ['N', 1, 32, 32] }]);
    expect(s.outputs).toEqual([
      { name: 'logits', elemType: 1, shape: ['N', 3, 32, 32] },
      { name: 'probabilities', elemType: 1, shape: ['N', 3, 32, 32] },
    ]);
    // Every weight of the network is an initializer under its own name, once.
    const weights = [...net.namedWeights().keys()];
    expect(new Set(s.initializerNames).size).toBe(s.initializerNames.length);
    for (const w of weights) expect(s.initializerNames).toContain(w);
    expect(s.parameters).toBeGreaterThanOrEqual([...net.namedWeights().values()].reduce((a, v) => a + v.size, 0));
    for (const op of [
      'Conv',
      'InstanceNormalization',
      'Relu',
      'MaxPool',
      'AveragePool',
      'Resize',
      'Concat',
      'Gather',
      'Sum',
      'ConstantOfShape',
      'Add',
      'Softmax',
    ]) {
      expect(s.opTypes[op], op).toBeGreaterThan(0);
    }
    const session = await ort.InferenceSession.create(bytes);
    expect(session.inputNames).toEqual(['image']);
    expect(session.outputNames).toEqual(['logits', 'probabilities']);
    await session.release();
  });

  it('carries the preprocessing, classes and genotype in metadata_props', () => {
    const m = readModelSummary(bytes).metadata;
    expect(m.layout).toBe('NCHW');
    expect(m.slice_size).toBe('32');
    expect(m.modality).toBe('MRI');
    expect(JSON.parse(m.class_names)).toEqual(['background', 'LV', 'RV']);
    expect(JSON.parse(m.genotype)).toEqual(c.genotype);
    expect(JSON.parse(m.backbone)).toEqual({ depth: 3, baseFilters: 8 });
    expect(m.partial_channels).toBe('2');
  });

  it('rejects what it cannot export', () => {
    expect(() => networkToOnnx(net, { height: 36 })).toThrow(/not a positive multiple of 2\^backbone.depth = 8/);
    expect(() => networkToOnnx(net, { height: 32, classNames: ['a', 'b'] })).toThrow(/2 class names .* 3 classes/);
    const supernet = createNetwork({
      backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 1, learningRate: 1e-3 },
      inChannels: 1,
      numClasses: 2,
      cells: 'supernet',
      space: { operations: ['conv_3x3', 'skip_connect'], nodes: 1, partialChannels: 1 },
      seed: 0,
    });
    expect(() => networkToOnnx(supernet, { height: 16 })).toThrow(/needs the discrete network/);
    supernet.dispose();
  });
});

describe('TensorFlow padding and pooling conventions in ONNX terms', () => {
  it("puts the odd pixel of 'same' padding at the end", () => {
    expect(samePads(3)).toEqual([1, 1, 1, 1]);
    expect(samePads(5, 2)).toEqual([4, 4, 4, 4]);
    expect(samePads(2)).toEqual([0, 0, 1, 1]);
    expect(samePads(4)).toEqual([1, 1, 2, 2]);
  });

  it('toNchw moves channels in front of rows and columns', () => {
    // [1, 2, 2, 2] NHWC: value = 10 * channel + pixel
    const nhwc = Float32Array.from([0, 10, 1, 11, 2, 12, 3, 13]);
    expect(Array.from(toNchw(nhwc, [1, 2, 2, 2]))).toEqual([0, 1, 2, 3, 10, 11, 12, 13]);
  });
});

describe('protobuf writer', () => {
  it('encodes varints as protobuf does, negative int64 as ten bytes', () => {
    const cases: [number | bigint, number[]][] = [
      [0, [0x08, 0x00]],
      [1, [0x08, 0x01]],
      [127, [0x08, 0x7f]],
      [128, [0x08, 0x80, 0x01]],
      [300, [0x08, 0xac, 0x02]],
      [2 ** 31, [0x08, 0x80, 0x80, 0x80, 0x80, 0x08]],
      [-1, [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]],
    ];
    for (const [v, bytes] of cases) expect(Array.from(new ProtoWriter().varint(1, v).finish()), String(v)).toEqual(bytes);
    expect(() => new ProtoWriter().varint(1, 0.5)).toThrow(/not an integer/);
  });

  it('writes length-delimited, packed and float fields that read back', () => {
    const inner = new ProtoWriter().string(1, 'Grüße').packedVarints(2, [3, 270, 2 ** 40]);
    const msg = new ProtoWriter().message(7, inner).float(2, 1.5).varint(20, 7).finish();
    const f = readFields(msg);
    expect(f.map((x) => [x.field, x.wire])).toEqual([
      [7, 2],
      [2, 5],
      [20, 0],
    ]);
    expect(new DataView(f[1].bytes!.buffer, f[1].bytes!.byteOffset, 4).getFloat32(0, true)).toBe(1.5);
    expect(f[2].varint).toBe(7n);
    const g = readFields(f[0].bytes!);
    expect(new TextDecoder().decode(g[0].bytes)).toBe('Grüße');
    expect(readPackedVarints(g[1].bytes!)).toEqual([3n, 270n, 2n ** 40n]);
    expect(() => readFields(msg.subarray(0, msg.length - 1))).toThrow(/truncated/);
  });
});
