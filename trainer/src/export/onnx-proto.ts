// The ONNX messages an exported network needs, encoded with the protobuf writer of
// protobuf.ts. Field numbers are those of onnx/onnx.proto (github.com/onnx/onnx):
//   ModelProto           ir_version 1, producer_name 2, producer_version 3, domain 4,
//                        model_version 5, doc_string 6, graph 7, opset_import 8,
//                        metadata_props 14
//   OperatorSetIdProto   domain 1, version 2
//   StringStringEntryProto key 1, value 2
//   GraphProto           node 1, name 2, initializer 5, doc_string 10, input 11, output 12
//   NodeProto            input 1, output 2, name 3, op_type 4, attribute 5, doc_string 6, domain 7
//   AttributeProto       name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, strings 9,
//                        type 20 (FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7, STRINGS 8)
//   TensorProto          dims 1, data_type 2 (FLOAT 1, INT64 7), name 8, raw_data 9, doc_string 12
//   ValueInfoProto       name 1, type 2, doc_string 3
//   TypeProto            tensor_type 1; TypeProto.Tensor elem_type 1, shape 2
//   TensorShapeProto     dim 1; Dimension dim_value 1, dim_param 2
// Tensor contents go to raw_data: fixed-width little-endian values, as onnx.proto requires.
import { ProtoWriter, readFields, readPackedVarints, type ProtoField } from './protobuf.ts';

export const DataType = { FLOAT: 1, INT64: 7 } as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

const AttrType = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;

export interface TensorProto {
  name: string;
  dataType: DataType;
  dims: readonly number[];
  /** Little-endian values (see tensorFloat / tensorInt64). */
  raw: Uint8Array;
  doc?: string;
}

export type AttributeProto =
  | { name: string; type: 'float'; value: number }
  | { name: string; type: 'int'; value: number }
  | { name: string; type: 'string'; value: string }
  | { name: string; type: 'tensor'; value: TensorProto }
  | { name: string; type: 'floats'; value: readonly number[] }
  | { name: string; type: 'ints'; value: readonly number[] }
  | { name: string; type: 'strings'; value: readonly string[] };

/** Attribute constructors: attr.ints('pads', [1, 1, 1, 1]). */
export const attr = {
  f: (name: string, value: number): AttributeProto => ({ name, type: 'float', value }),
  i: (name: string, value: number): AttributeProto => ({ name, type: 'int', value }),
  s: (name: string, value: string): AttributeProto => ({ name, type: 'string', value }),
  t: (name: string, value: TensorProto): AttributeProto => ({ name, type: 'tensor', value }),
  floats: (name: string, value: readonly number[]): AttributeProto => ({ name, type: 'floats', value }),
  ints: (name: string, value: readonly number[]): AttributeProto => ({ name, type: 'ints', value }),
  strings: (name: string, value: readonly string[]): AttributeProto => ({ name, type: 'strings', value }),
};

export interface NodeProto {
  opType: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  attributes?: readonly AttributeProto[];
  domain?: string;
  doc?: string;
}

/** A dimension: a size, or a symbolic name (dim_param) for a size known only at run time. */
export type Dim = number | string;

export interface ValueInfoProto {
  name: string;
  elemType: DataType;
  shape: readonly Dim[];
  doc?: string;
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
  doc?: string;
}

export interface ModelProto {
  irVersion: number;
  opsetImports: readonly { domain: string; version: number }[];
  producerName: string;
  producerVersion: string;
  domain?: string;
  modelVersion?: number;
  doc?: string;
  graph: GraphProto;
  metadata: Readonly<Record<string, string>>;
}

/** A float32 tensor (values copied to little-endian bytes). */
export function tensorFloat(name: string, dims: readonly number[], values: Float32Array | readonly number[]): TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  if (values.length !== n) throw new Error(`tensor ${name}: ${values.length} values for shape [${dims.join(', ')}] (${n})`);
  const raw = new Uint8Array(4 * n);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < n; i++) view.setFloat32(4 * i, values[i], true);
  return { name, dataType: DataType.FLOAT, dims: [...dims], raw };
}

/** An int64 tensor. */
export function tensorInt64(name: string, dims: readonly number[], values: readonly number[]): TensorProto {
  const n = dims.reduce((a, b) => a * b, 1);
  if (values.length !== n) throw new Error(`tensor ${name}: ${values.length} values for shape [${dims.join(', ')}] (${n})`);
  const raw = new Uint8Array(8 * n);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < n; i++) view.setBigInt64(8 * i, BigInt(values[i]), true);
  return { name, dataType: DataType.INT64, dims: [...dims], raw };
}

function encodeTensor(t: TensorProto): ProtoWriter {
  const w = new ProtoWriter();
  if (t.dims.length > 0) w.packedVarints(1, t.dims);
  w.varint(2, t.dataType);
  w.string(8, t.name);
  w.bytes(9, t.raw);
  if (t.doc) w.string(12, t.doc);
  return w;
}

function encodeAttribute(a: AttributeProto): ProtoWriter {
  const w = new ProtoWriter();
  w.string(1, a.name);
  switch (a.type) {
    case 'float':
      w.float(2, a.value).varint(20, AttrType.FLOAT);
      break;
    case 'int':
      w.varint(3, a.value).varint(20, AttrType.INT);
      break;
    case 'string':
      w.string(4, a.value).varint(20, AttrType.STRING);
      break;
    case 'tensor':
      w.message(5, encodeTensor(a.value)).varint(20, AttrType.TENSOR);
      break;
    case 'floats':
      for (const f of a.value) w.float(7, f);
      w.varint(20, AttrType.FLOATS);
      break;
    case 'ints':
      w.packedVarints(8, a.value).varint(20, AttrType.INTS);
      break;
    case 'strings':
      for (const s of a.value) w.string(9, s);
      w.varint(20, AttrType.STRINGS);
      break;
  }
  return w;
}

function encodeNode(n: NodeProto): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const a of n.attributes ?? []) w.message(5, encodeAttribute(a));
  if (n.doc) w.string(6, n.doc);
  if (n.domain) w.string(7, n.domain);
  return w;
}

function encodeValueInfo(v: ValueInfoProto): ProtoWriter {
  const shape = new ProtoWriter();
  for (const d of v.shape) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.varint(1, d);
    else dim.string(2, d);
    shape.message(1, dim);
  }
  const tensor = new ProtoWriter().varint(1, v.elemType).message(2, shape);
  const type = new ProtoWriter().message(1, tensor);
  const w = new ProtoWriter().string(1, v.name).message(2, type);
  if (v.doc) w.string(3, v.doc);
  return w;
}

function encodeGraph(g: GraphProto): ProtoWriter {
  const w = new ProtoWriter();
  for (const n of g.nodes) w.message(1, encodeNode(n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, encodeTensor(t));
  if (g.doc) w.string(10, g.doc);
  for (const i of g.inputs) w.message(11, encodeValueInfo(i));
  for (const o of g.outputs) w.message(12, encodeValueInfo(o));
  return w;
}

/** The serialised model (what a .onnx file holds). */
export function encodeModel(m: ModelProto): Uint8Array {
  const w = new ProtoWriter();
  w.varint(1, m.irVersion);
  w.string(2, m.producerName);
  w.string(3, m.producerVersion);
  if (m.domain) w.string(4, m.domain);
  if (m.modelVersion !== undefined) w.varint(5, m.modelVersion);
  if (m.doc) w.string(6, m.doc);
  w.message(7, encodeGraph(m.graph));
  for (const o of m.opsetImports) {
    const os = new ProtoWriter();
    if (o.domain) os.string(1, o.domain);
    os.varint(2, o.version);
    w.message(8, os);
  }
  for (const [key, value] of Object.entries(m.metadata)) w.message(14, new ProtoWriter().string(1, key).string(2, value));
  return w.finish();
}

// ---- Reading back: the parts of a model a caller inspects (tests, `iacnas export`). ----

const decoder = new TextDecoder();
const text = (f: ProtoField | undefined) => (f?.bytes ? decoder.decode(f.bytes) : '');
const first = (fields: ProtoField[], n: number) => fields.find((f) => f.field === n);
const all = (fields: ProtoField[], n: number) => fields.filter((f) => f.field === n);

export interface ModelSummary {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  opsetImports: { domain: string; version: number }[];
  metadata: Record<string, string>;
  graphName: string;
  inputs: { name: string; elemType: number; shape: Dim[] }[];
  outputs: { name: string; elemType: number; shape: Dim[] }[];
  /** Number of nodes per op_type. */
  opTypes: Record<string, number>;
  initializers: number;
  initializerNames: string[];
  /** Elements in all float initializers. */
  parameters: number;
}

function readValueInfo(buf: Uint8Array): { name: string; elemType: number; shape: Dim[] } {
  const f = readFields(buf);
  const type = readFields(first(f, 2)?.bytes ?? new Uint8Array());
  const tensor = readFields(first(type, 1)?.bytes ?? new Uint8Array());
  const shape = readFields(first(tensor, 2)?.bytes ?? new Uint8Array());
  return {
    name: text(first(f, 1)),
    elemType: Number(first(tensor, 1)?.varint ?? 0n),
    shape: all(shape, 1).map((d) => {
      const dim = readFields(d.bytes!);
      const v = first(dim, 1);
      return v ? Number(v.varint) : text(first(dim, 2));
    }),
  };
}

/** Decodes the header, inputs, outputs, metadata and node counts of a serialised model. */
export function readModelSummary(bytes: Uint8Array): ModelSummary {
  const m = readFields(bytes);
  const g = readFields(first(m, 7)?.bytes ?? new Uint8Array());
  const opTypes: Record<string, number> = {};
  for (const n of all(g, 1)) {
    const op = text(first(readFields(n.bytes!), 4));
    opTypes[op] = (opTypes[op] ?? 0) + 1;
  }
  let parameters = 0;
  const inits = all(g, 5);
  for (const t of inits) {
    const tf = readFields(t.bytes!);
    if (Number(first(tf, 2)?.varint ?? 0n) !== DataType.FLOAT) continue;
    const dims = all(tf, 1).flatMap((d) => (d.wire === 2 ? readPackedVarints(d.bytes!) : [d.varint!]));
    parameters += dims.reduce((a, b) => a * Number(b), 1);
  }
  const metadata: Record<string, string> = {};
  for (const e of all(m, 14)) {
    const kv = readFields(e.bytes!);
    metadata[text(first(kv, 1))] = text(first(kv, 2));
  }
  return {
    irVersion: Number(first(m, 1)?.varint ?? 0n),
    producerName: text(first(m, 2)),
    producerVersion: text(first(m, 3)),
    opsetImports: all(m, 8).map((o) => {
      const f = readFields(o.bytes!);
      return { domain: text(first(f, 1)), version: Number(first(f, 2)?.varint ?? 0n) };
    }),
    metadata,
    graphName: text(first(g, 2)),
    inputs: all(g, 11).map((v) => readValueInfo(v.bytes!)),
    outputs: all(g, 12).map((v) => readValueInfo(v.bytes!)),
    opTypes,
    initializers: inits.length,
    initializerNames: inits.map((t) => text(first(readFields(t.bytes!), 8))),
    parameters,
  };
}
