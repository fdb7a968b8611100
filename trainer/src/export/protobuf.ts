// A minimal protocol-buffers encoder (and a field reader for checking what was
// written): varints, 64-bit two's-complement for negative int64, fixed32 floats and
// length-delimited fields. Enough for the ONNX messages of onnx-proto.ts; no schema,
// no reflection, no dependency.

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_BYTES = 2;
const WIRE_FIXED32 = 5;

const encoder = new TextEncoder();

/** Appends fields to a message; finish() returns its bytes. Nested messages are written as their own ProtoWriter. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private size = 0;
  /** Scratch space for tags and varints, flushed into chunks. */
  private scratch: number[] = [];

  get length(): number {
    return this.size + this.scratch.length;
  }

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    this.chunks.push(Uint8Array.from(this.scratch));
    this.size += this.scratch.length;
    this.scratch = [];
  }

  private rawVarint(value: number | bigint): void {
    let v: bigint;
    if (typeof value === 'bigint') v = value;
    else {
      if (!Number.isInteger(value)) throw new Error(`protobuf: varint ${value} is not an integer`);
      if (value >= 0 && value < 0x80000000) {
        // The common case without BigInt.
        let n = value;
        while (n >= 0x80) {
          this.scratch.push((n & 0x7f) | 0x80);
          n >>>= 7;
        }
        this.scratch.push(n);
        return;
      }
      v = BigInt(value);
    }
    // int64 semantics: negative values are their 64-bit two's complement (10 bytes).
    if (v < 0n) v = BigInt.asUintN(64, v);
    if (v >= 1n << 64n) throw new Error(`protobuf: varint ${value} does not fit in 64 bits`);
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  private tag(field: number, wire: number): void {
    this.rawVarint(field * 8 + wire);
  }

  /** int32 / int64 / enum / bool field. */
  varint(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(value);
    return this;
  }

  /** float field (fixed32, little-endian). */
  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
    return this;
  }

  /** bytes field. */
  bytes(field: number, data: Uint8Array): this {
    this.tag(field, WIRE_BYTES);
    this.rawVarint(data.length);
    this.flushScratch();
    if (data.length > 0) {
      this.chunks.push(data);
      this.size += data.length;
    }
    return this;
  }

  /** string field (UTF-8). */
  string(field: number, value: string): this {
    return this.bytes(field, encoder.encode(value));
  }

  /** Embedded message field. */
  message(field: number, m: ProtoWriter): this {
    return this.bytes(field, m.finish());
  }

  /** Packed repeated int64 field. */
  packedVarints(field: number, values: readonly (number | bigint)[]): this {
    const inner = new ProtoWriter();
    for (const v of values) inner.rawVarint(v);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    this.flushScratch();
    if (this.chunks.length === 1) return this.chunks[0];
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

/** One decoded field: varints as bigint, length-delimited fields as bytes, fixed32 as its raw 4 bytes. */
export interface ProtoField {
  field: number;
  wire: number;
  varint?: bigint;
  bytes?: Uint8Array;
}

/** Splits a message into its fields (no schema: nested messages stay bytes). Throws on a truncated or malformed message. */
export function readFields(buf: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('protobuf: varint longer than 10 bytes');
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new Error('protobuf: field number 0');
    switch (wire) {
      case WIRE_VARINT:
        out.push({ field, wire, varint: varint() });
        break;
      case WIRE_FIXED64:
        if (pos + 8 > buf.length) throw new Error('protobuf: truncated fixed64');
        out.push({ field, wire, bytes: buf.subarray(pos, pos + 8) });
        pos += 8;
        break;
      case WIRE_BYTES: {
        const n = Number(varint());
        if (pos + n > buf.length) throw new Error(`protobuf: field ${field} claims ${n} bytes, ${buf.length - pos} left`);
        out.push({ field, wire, bytes: buf.subarray(pos, pos + n) });
        pos += n;
        break;
      }
      case WIRE_FIXED32:
        if (pos + 4 > buf.length) throw new Error('protobuf: truncated fixed32');
        out.push({ field, wire, bytes: buf.subarray(pos, pos + 4) });
        pos += 4;
        break;
      default:
        throw new Error(`protobuf: unsupported wire type ${wire} (field ${field})`);
    }
  }
  return out;
}

/** The varints of a packed repeated field. */
export function readPackedVarints(buf: Uint8Array): bigint[] {
  const out: bigint[] = [];
  let pos = 0;
  while (pos < buf.length) {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('protobuf: truncated packed varint');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) break;
      shift += 7n;
    }
    out.push(result);
  }
  return out;
}
