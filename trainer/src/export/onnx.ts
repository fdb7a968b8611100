// Export of a trained network (the U-Net with its discrete IAC cells) as an ONNX
// model, opset 17, that computes what UNet.apply computes at inference.
//
// The graph is written edge by edge, the way the cell is defined, not the way
// trainer/src/model/cell.ts computes it (fused convolutions, block matrices, channel
// permutations as matrix products): per node j, the operated channels P_j are the
// sum of its edges' operations on the first C/K channels of their inputs, the bypass
// channels Q_j the sum of those inputs' other channels (once per edge); node j as an
// input is [P_j | Q_j] after the PC-DARTS channel shuffle; the cell's output is
// s0 + 1x1 conv of [P_0 .. P_{n-1} | Q_0 .. Q_{n-1}].
//
// Layout is NCHW, ONNX's own: input `image` [N, channels, H, W], outputs `logits` and
// `probabilities` (softmax over the class axis) [N, classes, H, W]. Every
// convolution and pooling is stride 1 with TensorFlow 'same' padding (begin =
// floor(total / 2), the extra pixel at the end), average pooling excludes the padding
// from its divisor as TensorFlow does (count_include_pad = 0), and nearest-neighbour
// 2x up-sampling is Resize(asymmetric, floor), TensorFlow's resizeNearestNeighbor
// without half-pixel centres.
import type * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS, type Operation } from '../config/index.ts';
import type { Genotype, GenotypeCell, Network } from '../model/api.ts';
import { OP_SPECS } from '../model/operations.ts';
import { edgeIndex } from '../model/topology.ts';
import {
  attr,
  DataType,
  encodeModel,
  tensorFloat,
  tensorInt64,
  type AttributeProto,
  type Dim,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './onnx-proto.ts';

export const OPSET = 17;
/** IR version 8 is the one that came with opset 17 (ONNX 1.12). */
export const IR_VERSION = 8;
export const INPUT_NAME = 'image';
export const LOGITS_NAME = 'logits';
export const PROBABILITIES_NAME = 'probabilities';
/** Epsilon of instance normalisation in trainer/src/model/layers.ts. */
const NORM_EPS = 1e-5;

export interface OnnxExportOptions {
  /** Input height (and width unless `width` is given): dataset.sliceSize. */
  height: number;
  width?: number;
  /** Names of the classes by label value; class_<i> when omitted. */
  classNames?: readonly string[];
  /** Metadata added to (and overriding) the model's own entries. */
  metadata?: Readonly<Record<string, string>>;
  /** Graph name (default 'iacnas'). */
  name?: string;
  producerVersion?: string;
}

export interface OnnxTensorInfo {
  name: string;
  shape: Dim[];
}

export interface OnnxExport {
  bytes: Uint8Array;
  opset: number;
  irVersion: number;
  inputs: OnnxTensorInfo[];
  outputs: OnnxTensorInfo[];
  metadata: Record<string, string>;
  nodes: number;
  /** Number of nodes per op_type. */
  opTypes: Record<string, number>;
  /** Elements of all weight initializers. */
  parameters: number;
}

interface Weight {
  shape: number[];
  values: Float32Array;
}

/** Collects nodes and initializers; names stay unique. */
class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly names = new Set<string>();
  private readonly cache = new Map<string, string>();
  private counter = 0;

  unique(base: string): string {
    let name = base;
    while (this.names.has(name)) name = `${base}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /** A float initializer under `name` (exactly that name). */
  float(name: string, dims: readonly number[], values: Float32Array | readonly number[]): string {
    if (this.names.has(name)) throw new Error(`ONNX export: initializer ${name} defined twice`);
    this.names.add(name);
    this.initializers.push(tensorFloat(name, dims, values));
    return name;
  }

  /** A shared constant, created once per key. */
  constant(key: string, make: (name: string) => TensorProto): string {
    let name = this.cache.get(key);
    if (!name) {
      name = this.unique(key);
      this.initializers.push(make(name));
      this.cache.set(key, name);
    }
    return name;
  }

  int64s(key: string, values: readonly number[]): string {
    return this.constant(`const/${key}`, (name) => tensorInt64(name, [values.length], values));
  }

  ones(c: number): string {
    return this.constant(`const/ones${c}`, (name) => tensorFloat(name, [c], new Float32Array(c).fill(1)));
  }

  zeros(c: number): string {
    return this.constant(`const/zeros${c}`, (name) => tensorFloat(name, [c], new Float32Array(c)));
  }

  /** Adds a node and returns the name of its (single) output. */
  op(opType: string, inputs: readonly string[], out: string, attributes: readonly AttributeProto[] = []): string {
    const output = this.unique(out);
    this.nodes.push({ opType, inputs, outputs: [output], name: output, attributes });
    return output;
  }
}

// ---- Weight layout: tfjs (NHWC kernels) to ONNX (OIHW) ----

/** conv2d kernel [kh, kw, cin, cout] -> [cout, cin, kh, kw]. */
function convKernel(w: Weight): { dims: number[]; values: Float32Array } {
  const [kh, kw, cin, cout] = w.shape;
  const out = new Float32Array(w.values.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let ci = 0; ci < cin; ci++)
        for (let co = 0; co < cout; co++) out[((co * cin + ci) * kh + y) * kw + x] = w.values[((y * kw + x) * cin + ci) * cout + co];
  return { dims: [cout, cin, kh, kw], values: out };
}

/** depthwise kernel [kh, kw, c, 1] -> [c, 1, kh, kw] (a grouped convolution with group = c). */
function depthwiseKernel(w: Weight): { dims: number[]; values: Float32Array } {
  const [kh, kw, c, m] = w.shape;
  if (m !== 1) throw new Error(`ONNX export: depthwise kernel with channel multiplier ${m}; expected 1`);
  const out = new Float32Array(w.values.length);
  for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) for (let ci = 0; ci < c; ci++) out[(ci * kh + y) * kw + x] = w.values[(y * kw + x) * c + ci];
  return { dims: [c, 1, kh, kw], values: out };
}

/** 1x1 kernel [cin, cout] (a matrix product in tfjs) -> [cout, cin, 1, 1]. */
function pointwiseKernel(w: Weight): { dims: number[]; values: Float32Array } {
  const [cin, cout] = w.shape;
  const out = new Float32Array(w.values.length);
  for (let ci = 0; ci < cin; ci++) for (let co = 0; co < cout; co++) out[co * cin + ci] = w.values[ci * cout + co];
  return { dims: [cout, cin, 1, 1], values: out };
}

/** TensorFlow 'same' padding of a stride-1 window: [top, left, bottom, right] (ONNX order), the odd pixel at the end. */
export function samePads(k: number, dilation = 1): [number, number, number, number] {
  const total = (k - 1) * dilation;
  const begin = Math.floor(total / 2);
  const end = total - begin;
  return [begin, begin, end, end];
}

/** The genotype of a network's discrete cells, or undefined for a plain U-Net. */
function discreteCells(net: Network): Genotype | undefined {
  const cells = net.options.cells;
  if (cells === 'none') return undefined;
  if (cells === 'supernet') {
    throw new Error('ONNX export needs the discrete network (the retrained model with the cells of genotype.json), not the search supernet');
  }
  return cells;
}

/**
 * Builds the ONNX model of a network with discrete cells (or of a plain U-Net) from
 * its current weights. The network is only read: nothing is computed with tfjs.
 */
export function networkToOnnx(net: Network, options: OnnxExportOptions): OnnxExport {
  const { backbone, inChannels, numClasses } = net.options;
  const { depth, baseFilters } = backbone;
  const height = options.height;
  const width = options.width ?? options.height;
  const step = 2 ** depth;
  for (const [what, v] of [
    ['height', height],
    ['width', width],
  ] as const) {
    if (!Number.isInteger(v) || v < step || v % step !== 0) {
      throw new Error(`ONNX export: input ${what} ${v} is not a positive multiple of 2^backbone.depth = ${step} (dataset.sliceSize must be one)`);
    }
  }
  const genotype = discreteCells(net);
  const k = net.options.space?.partialChannels ?? 1;
  const classNames = options.classNames ? [...options.classNames] : Array.from({ length: numClasses }, (_, i) => `class_${i}`);
  if (classNames.length !== numClasses) {
    throw new Error(`ONNX export: ${classNames.length} class names (${classNames.join(', ')}) for a network with ${numClasses} classes`);
  }

  const named = net.namedWeights();
  const used = new Set<string>();
  const weight = (name: string): Weight => {
    const v: tf.Variable | undefined = named.get(name);
    if (!v) throw new Error(`ONNX export: the network has no weight ${name}`);
    used.add(name);
    return { shape: [...v.shape], values: v.dataSync() as Float32Array };
  };
  const g = new GraphBuilder();
  g.unique(INPUT_NAME);
  const init = (name: string, t: { dims: number[]; values: Float32Array }) => g.float(name, t.dims, t.values);

  const conv = (x: string, w: string, out: string, kernel: number, extra: AttributeProto[] = [], bias?: string) =>
    g.op('Conv', bias ? [x, w, bias] : [x, w], out, [attr.ints('kernel_shape', [kernel, kernel]), attr.ints('strides', [1, 1]), ...extra]);
  const norm = (x: string, c: number, out: string, scale?: string, bias?: string) =>
    g.op('InstanceNormalization', [x, scale ?? g.ones(c), bias ?? g.zeros(c)], out, [attr.f('epsilon', NORM_EPS)]);
  const relu = (x: string, out: string) => g.op('Relu', [x], out);
  /** 1x1 convolution with a [cin, cout] kernel. */
  const pointwise = (x: string, wname: string, out: string) => conv(x, init(wname, pointwiseKernel(weight(wname))), out, 1);

  const block = (x: string, prefix: string): string => {
    let h = x;
    for (const i of [1, 2]) {
      const kname = `${prefix}/conv${i}/kernel`;
      const kw = weight(kname);
      const c = kw.shape[3];
      h = conv(h, init(kname, convKernel(kw)), `${prefix}.conv${i}`, 3, [attr.ints('pads', samePads(3))]);
      const gamma = `${prefix}/norm${i}/gamma`;
      const beta = `${prefix}/norm${i}/beta`;
      h = norm(h, c, `${prefix}.norm${i}`, g.float(gamma, [c], weight(gamma).values), g.float(beta, [c], weight(beta).values));
      h = relu(h, `${prefix}.relu${i}`);
    }
    return h;
  };

  const ch = (l: number) => baseFilters * 2 ** l;
  const skips: string[] = [];
  let cur = INPUT_NAME;
  for (let l = 0; l < depth; l++) {
    const s = block(cur, `enc${l}`);
    skips.push(s);
    cur = g.op('MaxPool', [s], `enc${l}.pool`, [attr.ints('kernel_shape', [2, 2]), attr.ints('strides', [2, 2])]);
  }
  cur = block(cur, 'bottleneck');
  for (let l = depth - 1; l >= 0; l--) {
    const scales = g.constant('const/scales2x', (name) => tensorFloat(name, [4], [1, 1, 2, 2]));
    const resized = g.op('Resize', [cur, '', scales], `up${l}.resize`, [
      attr.s('mode', 'nearest'),
      attr.s('coordinate_transformation_mode', 'asymmetric'),
      attr.s('nearest_mode', 'floor'),
    ]);
    const up = pointwise(resized, `up${l}/kernel`, `up${l}.out`);
    const skip = genotype ? cellGraph(g, { name: `cell${l}`, channels: ch(l), k, cell: genotype.cells[l] }, skips[l], up, weight, init) : skips[l];
    const cat = g.op('Concat', [skip, up], `dec${l}.concat`, [attr.i('axis', 1)]);
    cur = block(cat, `dec${l}`);
  }
  const headW = weight('head/kernel');
  const headB = weight('head/bias');
  const logits = conv(cur, init('head/kernel', pointwiseKernel(headW)), LOGITS_NAME, 1, [], g.float('head/bias', [numClasses], headB.values));
  const probabilities = g.op('Softmax', [logits], PROBABILITIES_NAME, [attr.i('axis', 1)]);
  if (logits !== LOGITS_NAME || probabilities !== PROBABILITIES_NAME) throw new Error('ONNX export: output names taken');

  const unusedWeights = [...named.keys()].filter((n) => !used.has(n));
  if (unusedWeights.length > 0) throw new Error(`ONNX export: weights not in the exported graph: ${unusedWeights.join(', ')}`);

  const inputShape: Dim[] = ['N', inChannels, height, width];
  const outputShape: Dim[] = ['N', numClasses, height, width];
  const inputs: ValueInfoProto[] = [
    { name: INPUT_NAME, elemType: DataType.FLOAT, shape: inputShape, doc: 'Normalised 2-D slices, NCHW (see the metadata: normalization, slice_size).' },
  ];
  const outputs: ValueInfoProto[] = [
    { name: LOGITS_NAME, elemType: DataType.FLOAT, shape: outputShape, doc: 'Per-pixel class scores, NCHW; argmax over axis 1 gives the label map.' },
    { name: PROBABILITIES_NAME, elemType: DataType.FLOAT, shape: outputShape, doc: 'Softmax of the logits over axis 1 (the classes).' },
  ];
  const metadata: Record<string, string> = {
    layout: 'NCHW',
    input: `${INPUT_NAME}: float32 [N, ${inChannels}, ${height}, ${width}]`,
    outputs: `${LOGITS_NAME}: float32 [N, ${numClasses}, ${height}, ${width}]; ${PROBABILITIES_NAME}: softmax of ${LOGITS_NAME} over axis 1`,
    slice_size: height === width ? String(height) : `${height}x${width}`,
    num_classes: String(numClasses),
    class_names: JSON.stringify(classNames),
    backbone: JSON.stringify({ depth, baseFilters }),
    cells: genotype ? 'discrete' : 'none',
    ...(genotype ? { genotype: JSON.stringify(genotype), partial_channels: String(k) } : {}),
    ...options.metadata,
  };
  const name = options.name ?? 'iacnas';
  const bytes = encodeModel({
    irVersion: IR_VERSION,
    opsetImports: [{ domain: '', version: OPSET }],
    producerName: 'iacnas',
    producerVersion: options.producerVersion ?? '',
    domain: 'dev.iac.nas',
    modelVersion: 1,
    doc: `2-D U-Net (depth ${depth}, ${baseFilters} base filters)${genotype ? ' with discrete Implantable Adaptive Cells in its skip connections' : ''}; ${numClasses} classes.`,
    graph: { name, nodes: g.nodes, initializers: g.initializers, inputs, outputs },
    metadata,
  });
  const opTypes: Record<string, number> = {};
  for (const n of g.nodes) opTypes[n.opType] = (opTypes[n.opType] ?? 0) + 1;
  const parameters = [...named.values()].reduce((a, v) => a + v.size, 0);
  return {
    bytes,
    opset: OPSET,
    irVersion: IR_VERSION,
    inputs: inputs.map((v) => ({ name: v.name, shape: [...v.shape] })),
    outputs: outputs.map((v) => ({ name: v.name, shape: [...v.shape] })),
    metadata,
    nodes: g.nodes.length,
    opTypes,
    parameters,
  };
}

interface CellSpec {
  name: string;
  channels: number;
  k: number;
  cell: GenotypeCell;
}

/** One input of the cell's nodes: its operated channels (C/K) and, when K > 1, its bypass channels. */
interface State {
  p: string;
  q?: string;
  relu?: string;
}

/** The discrete cell on skip feature s0 and up-sampled decoder feature s1 (both C channels); returns its output. */
function cellGraph(
  g: GraphBuilder,
  spec: CellSpec,
  s0: string,
  s1: string,
  weight: (name: string) => Weight,
  init: (name: string, t: { dims: number[]; values: Float32Array }) => string,
): string {
  const { name, channels: c, k, cell } = spec;
  const cp = c / k;
  if (!Number.isInteger(cp)) throw new Error(`ONNX export: ${name}: ${c} channels cannot be split into ${k} partial-channel groups`);
  const n = cell.nodes.length;
  const pointwise = (x: string, wname: string, out: string) =>
    g.op('Conv', [x, init(wname, pointwiseKernel(weight(wname)))], out, [attr.ints('kernel_shape', [1, 1]), attr.ints('strides', [1, 1])]);
  const norm = (x: string, ch: number, out: string) => g.op('InstanceNormalization', [x, g.ones(ch), g.zeros(ch)], out, [attr.f('epsilon', NORM_EPS)]);
  const channelSlice = (x: string, from: number, to: number, out: string) =>
    g.op('Slice', [x, g.int64s(`start${from}`, [from]), g.int64s(`end${to}`, [to]), g.int64s('axis1', [1])], out);

  // Inputs 0 and 1: ReLU - 1x1 conv - instance norm (per channel, so slicing after it is exact).
  const pre = (x: string, which: 'pre0' | 'pre1'): State => {
    const y = norm(pointwise(g.op('Relu', [x], `${name}.${which}.relu`), `${name}/${which}/kernel`, `${name}.${which}.conv`), c, `${name}.${which}`);
    if (k === 1) return { p: y };
    return { p: channelSlice(y, 0, cp, `${name}.${which}.partial`), q: channelSlice(y, cp, c, `${name}.${which}.bypass`) };
  };
  const states: State[] = [pre(s0, 'pre0'), pre(s1, 'pre1')];

  const relu = (s: State, label: string) => (s.relu ??= g.op('Relu', [s.p], `${label}.relu`));
  const depthwise = (x: string, wname: string, kernel: number, dilation: number, out: string) =>
    g.op('Conv', [x, init(wname, depthwiseKernel(weight(wname)))], out, [
      attr.ints('kernel_shape', [kernel, kernel]),
      attr.ints('strides', [1, 1]),
      attr.ints('dilations', [dilation, dilation]),
      attr.ints('pads', samePads(kernel, dilation)),
      attr.i('group', cp),
    ]);

  /** The output of `op` on edge e reading state s (normalised, except the identity). */
  const operation = (op: Operation, s: State, e: number, input: number): string => {
    const spec = OP_SPECS[op];
    const w = `${name}/edge${e}/${op}`;
    const label = `${name}.edge${e}.${op}`;
    const inLabel = `${name}.in${input}`;
    switch (spec.kind) {
      case 'identity':
        return s.p;
      case 'pool': {
        const attrs = [attr.ints('kernel_shape', [spec.k, spec.k]), attr.ints('strides', [1, 1]), attr.ints('pads', samePads(spec.k))];
        const pooled =
          spec.pool === 'avg'
            ? g.op('AveragePool', [s.p], `${label}.pool`, [...attrs, attr.i('count_include_pad', 0)])
            : g.op('MaxPool', [s.p], `${label}.pool`, attrs);
        return norm(pooled, cp, label);
      }
      case 'conv': {
        const kname = `${w}/kernel`;
        const y = g.op('Conv', [relu(s, inLabel), init(kname, convKernel(weight(kname)))], `${label}.conv`, [
          attr.ints('kernel_shape', [spec.k, spec.k]),
          attr.ints('strides', [1, 1]),
          attr.ints('pads', samePads(spec.k)),
        ]);
        return norm(y, cp, label);
      }
      case 'dil': {
        const dw = depthwise(relu(s, inLabel), `${w}/dw`, spec.k, spec.dilation, `${label}.dw`);
        return norm(pointwise(dw, `${w}/pw`, `${label}.pw`), cp, label);
      }
      case 'sep': {
        const dw1 = depthwise(relu(s, inLabel), `${w}/dw1`, spec.k, 1, `${label}.dw1`);
        const h = norm(pointwise(dw1, `${w}/pw1`, `${label}.pw1`), cp, `${label}.norm1`);
        const dw2 = depthwise(g.op('Relu', [h], `${label}.relu2`), `${w}/dw2`, spec.k, 1, `${label}.dw2`);
        return norm(pointwise(dw2, `${w}/pw2`, `${label}.pw2`), cp, label);
      }
      case 'none':
        throw new Error("operation 'none' has no output");
    }
  };

  const sum = (terms: string[], out: string) => (terms.length === 1 ? terms[0] : g.op('Sum', terms, out));
  // The PC-DARTS channel shuffle: shuffled channel t comes from channel (t % K) * C/K + floor(t / K) of [P | Q].
  const shuffle = Array.from({ length: c }, (_, t) => (t % k) * cp + Math.floor(t / k));
  const nodesP: string[] = [];
  const nodesQ: string[] = [];
  for (let j = 0; j < n; j++) {
    // As in the model: an (input, operation) pair counts once, and so does an input's bypass.
    const pairs = new Map<string, { input: number; op: Operation }>();
    for (const { input, op } of cell.nodes[j]) {
      if (!(OPERATIONS as readonly string[]).includes(op)) throw new Error(`ONNX export: ${name}: unknown operation ${op}`);
      if (!Number.isInteger(input) || input < 0 || input > j + 1)
        throw new Error(`ONNX export: ${name}: node ${j} reads input ${input}; valid inputs are 0..${j + 1}`);
      pairs.set(`${input}/${op}`, { input, op });
    }
    const inputs = [...new Set([...pairs.values()].map((p) => p.input))].sort((a, b) => a - b);
    const pTerms: string[] = [];
    for (const { input, op } of pairs.values()) {
      if (op === 'none') continue;
      pTerms.push(operation(op, states[input], edgeIndex(j, input), input));
    }
    // A node whose edges are all 'none' has operated channels of zero.
    const p =
      pTerms.length > 0
        ? sum(pTerms, `${name}.node${j}.operated`)
        : g.op('ConstantOfShape', [g.op('Shape', [states[0].p], `${name}.node${j}.shape`)], `${name}.node${j}.zeros`);
    nodesP.push(p);
    if (k > 1) {
      const q = sum(
        inputs.map((i) => states[i].q!),
        `${name}.node${j}.bypass`,
      );
      nodesQ.push(q);
      const cat = g.op('Concat', [p, q], `${name}.node${j}.unshuffled`, [attr.i('axis', 1)]);
      states.push({
        p: g.op('Gather', [cat, g.int64s(`${name}/shuffle/partial`, shuffle.slice(0, cp))], `${name}.node${j}.partial`, [attr.i('axis', 1)]),
        q: g.op('Gather', [cat, g.int64s(`${name}/shuffle/bypass`, shuffle.slice(cp))], `${name}.node${j}.shuffled_bypass`, [attr.i('axis', 1)]),
      });
    } else {
      states.push({ p });
    }
  }
  // Output: s0 + 1x1 conv of [P_0 .. P_{n-1} | Q_0 .. Q_{n-1}] (the kernel's rows are in that order).
  const all = g.op('Concat', [...nodesP, ...nodesQ], `${name}.nodes`, [attr.i('axis', 1)]);
  const y = pointwise(all, `${name}/out/kernel`, `${name}.out`);
  return g.op('Add', [s0, y], `${name}.output`);
}
