// NIfTI-1 reading and writing (.nii and .nii.gz), single 3-D volumes.
//
// The header is parsed here rather than through a generic reader so that every
// problem a real file can have (truncation, a NIfTI-2 or Analyze file, 4-D data, an
// unknown datatype, labels stored as floats) comes out as one error naming the file
// and what to do about it.
import { closeSync, openSync, readFileSync, readSync, fstatSync, writeFileSync } from 'node:fs';
import { constants as zc, gunzipSync, gzipSync } from 'node:zlib';

/** NIfTI-1 datatype codes that can be read and written. */
export const NIFTI_DATATYPES = {
  uint8: 2,
  int16: 4,
  int32: 8,
  float32: 16,
  float64: 64,
  int8: 256,
  uint16: 512,
  uint32: 768,
} as const;
export type NiftiDatatype = keyof typeof NIFTI_DATATYPES;

const BYTES: Record<NiftiDatatype, number> = {
  uint8: 1,
  int16: 2,
  int32: 4,
  float32: 4,
  float64: 8,
  int8: 1,
  uint16: 2,
  uint32: 4,
};

const HEADER_BYTES = 348;

/** A problem with a data file; the message names the file and the fix. */
export class DataError extends Error {
  override name = 'DataError';
  readonly file?: string;
  constructor(message: string, file?: string) {
    super(message);
    this.file = file;
  }
}

export interface NiftiHeader {
  /** Voxels along i, j, k. */
  shape: [number, number, number];
  /** Voxel size in millimetres along i, j, k. */
  spacing: [number, number, number];
  datatype: NiftiDatatype;
  /** Scaling applied to stored values: value = stored * slope + inter (slope 1, inter 0 when unset). */
  sclSlope: number;
  sclInter: number;
  voxOffset: number;
  littleEndian: boolean;
  /** Bytes of voxel data the header promises. */
  dataBytes: number;
}

export interface NiftiVolume {
  header: NiftiHeader;
  /** Voxel values after scl_slope/scl_inter, i fastest, then j, then k. */
  data: Float32Array;
}

function datatypeName(code: number): NiftiDatatype | undefined {
  for (const [name, c] of Object.entries(NIFTI_DATATYPES)) if (c === code) return name as NiftiDatatype;
  return undefined;
}

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Parses the 348-byte NIfTI-1 header. */
export function parseNiftiHeader(bytes: Uint8Array, file: string): NiftiHeader {
  if (bytes.length < HEADER_BYTES) {
    throw new DataError(`${file}: not a NIfTI-1 file (only ${bytes.length} bytes, a header needs ${HEADER_BYTES}); the file is truncated or empty`, file);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le = true;
  const sizeLE = view.getInt32(0, true);
  if (sizeLE !== HEADER_BYTES) {
    if (view.getInt32(0, false) === HEADER_BYTES) le = false;
    else if (sizeLE === 540 || view.getInt32(0, false) === 540) {
      throw new DataError(`${file}: NIfTI-2 files are not supported; convert it to NIfTI-1 (e.g. nibabel: nib.Nifti1Image(img.dataobj, img.affine))`, file);
    } else {
      throw new DataError(`${file}: not a NIfTI-1 file (header size field is ${sizeLE}, expected 348)`, file);
    }
  }
  const magic = String.fromCharCode(bytes[344], bytes[345], bytes[346]);
  if (magic !== 'n+1' && magic !== 'ni1') {
    throw new DataError(`${file}: not a NIfTI-1 file (magic '${magic.replace(/\0/g, '')}' instead of 'n+1'); Analyze 7.5 .hdr/.img pairs are not supported`, file);
  }
  if (magic === 'ni1') {
    throw new DataError(`${file}: a NIfTI-1 header with separate .img data (magic 'ni1') is not supported; store it as a single .nii or .nii.gz`, file);
  }
  const dim: number[] = [];
  for (let d = 0; d < 8; d++) dim.push(view.getInt16(40 + 2 * d, le));
  const ndim = dim[0];
  if (ndim < 2 || ndim > 7) throw new DataError(`${file}: invalid dim[0] = ${ndim} (number of dimensions must be 2..7)`, file);
  for (let d = 1; d <= ndim; d++) {
    if (dim[d] < 1) throw new DataError(`${file}: invalid size ${dim[d]} along dimension ${d}`, file);
  }
  for (let d = 4; d <= ndim; d++) {
    if (dim[d] !== 1) {
      throw new DataError(
        `${file}: a ${ndim}-D volume with ${dim[d]} entries along dimension ${d}; only single 3-D volumes are supported (split channels into separate _000N files, nnU-Net style)`,
        file,
      );
    }
  }
  const shape: [number, number, number] = [dim[1], dim[2], ndim >= 3 ? dim[3] : 1];
  const code = view.getInt16(70, le);
  const datatype = datatypeName(code);
  if (!datatype) {
    throw new DataError(
      `${file}: unsupported NIfTI datatype code ${code}; supported: ${Object.entries(NIFTI_DATATYPES).map(([n, c]) => `${n} (${c})`).join(', ')}`,
      file,
    );
  }
  const spacing: [number, number, number] = [1, 1, 1];
  for (let d = 0; d < 3; d++) {
    const p = Math.abs(view.getFloat32(80 + 4 * d, le)); // pixdim[1..3]
    spacing[d] = Number.isFinite(p) && p > 0 ? p : 1;
  }
  const voxOffset = Math.max(HEADER_BYTES, Math.round(view.getFloat32(108, le)));
  let sclSlope = view.getFloat32(112, le);
  let sclInter = view.getFloat32(116, le);
  // The standard: slope 0 (or not a number) means "no scaling".
  if (!Number.isFinite(sclSlope) || sclSlope === 0) {
    sclSlope = 1;
    sclInter = 0;
  }
  if (!Number.isFinite(sclInter)) sclInter = 0;
  return {
    shape,
    spacing,
    datatype,
    sclSlope,
    sclInter,
    voxOffset,
    littleEndian: le,
    dataBytes: shape[0] * shape[1] * shape[2] * BYTES[datatype],
  };
}

function gunzip(bytes: Uint8Array, file: string, partial: boolean): Uint8Array {
  try {
    // A partial read decompresses only what the given bytes hold (for the header).
    return gunzipSync(bytes, partial ? { finishFlush: zc.Z_SYNC_FLUSH } : {});
  } catch (e) {
    throw new DataError(`${file}: gzip data is corrupt or truncated (${(e as Error).message}); re-export or re-download the file`, file);
  }
}

/**
 * Reads only the header, cheaply: the first 64 KiB of a file. For .nii.gz the gzip
 * trailer's uncompressed size is compared with what the header promises, which
 * catches a truncated download without decompressing the whole file.
 */
export function readNiftiHeader(file: string): NiftiHeader {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new DataError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  }
  try {
    const size = fstatSync(fd).size;
    const head = new Uint8Array(Math.min(size, 65536));
    readSync(fd, head, 0, head.length, 0);
    if (isGzip(head)) {
      const header = parseNiftiHeader(gunzip(head, file, true), file);
      if (size < 18) throw new DataError(`${file}: gzip file is truncated (${size} bytes)`, file);
      const tail = new Uint8Array(4);
      readSync(fd, tail, 0, 4, size - 4);
      const isize = new DataView(tail.buffer).getUint32(0, true);
      const expected = (header.voxOffset + header.dataBytes) % 2 ** 32;
      // A mismatch means truncation, trailing bytes or a multi-member gzip: decompressing
      // the whole file tells them apart (and throws a clear error for truncation).
      if (isize !== expected) readNiftiRaw(file);
      return header;
    }
    const header = parseNiftiHeader(head, file);
    if (size < header.voxOffset + header.dataBytes) {
      throw new DataError(
        `${file}: truncated: the header promises ${header.voxOffset + header.dataBytes} bytes (shape ${header.shape.join('x')} ${header.datatype}) but the file holds ${size}; re-export or re-download the file`,
        file,
      );
    }
    return header;
  } finally {
    closeSync(fd);
  }
}

/** Reads the stored values (before scaling) of a whole file into a typed array. */
export function readNiftiRaw(file: string): { header: NiftiHeader; raw: ArrayLike<number> } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new DataError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  }
  if (isGzip(bytes)) bytes = gunzip(bytes, file, false);
  const header = parseNiftiHeader(bytes, file);
  const end = header.voxOffset + header.dataBytes;
  if (bytes.length < end) {
    throw new DataError(
      `${file}: truncated: the header promises ${end} bytes (shape ${header.shape.join('x')} ${header.datatype}) but the file holds ${bytes.length}; re-export or re-download the file`,
      file,
    );
  }
  const n = header.shape[0] * header.shape[1] * header.shape[2];
  const view = new DataView(bytes.buffer, bytes.byteOffset + header.voxOffset, header.dataBytes);
  const le = header.littleEndian;
  let raw: ArrayLike<number>;
  switch (header.datatype) {
    case 'uint8':
      raw = bytes.slice(header.voxOffset, end);
      break;
    case 'int8': {
      const a = new Int8Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getInt8(i);
      raw = a;
      break;
    }
    case 'int16': {
      const a = new Int16Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getInt16(2 * i, le);
      raw = a;
      break;
    }
    case 'uint16': {
      const a = new Uint16Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getUint16(2 * i, le);
      raw = a;
      break;
    }
    case 'int32': {
      const a = new Int32Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getInt32(4 * i, le);
      raw = a;
      break;
    }
    case 'uint32': {
      const a = new Uint32Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getUint32(4 * i, le);
      raw = a;
      break;
    }
    case 'float32': {
      const a = new Float32Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getFloat32(4 * i, le);
      raw = a;
      break;
    }
    case 'float64': {
      const a = new Float64Array(n);
      for (let i = 0; i < n; i++) a[i] = view.getFloat64(8 * i, le);
      raw = a;
      break;
    }
  }
  return { header, raw };
}

/** Reads a whole volume as floats, scl_slope/scl_inter applied. */
export function readNifti(file: string): NiftiVolume {
  const { header, raw } = readNiftiRaw(file);
  const data = new Float32Array(raw.length);
  const { sclSlope: s, sclInter: b } = header;
  for (let i = 0; i < raw.length; i++) data[i] = raw[i] * s + b;
  return { header, data };
}

/**
 * Reads a label volume. Labels stored as floats (it happens in real datasets) are
 * accepted when every value is a whole number in 0..255; anything else is refused
 * with the first offending voxel named, since rounding would silently change the
 * segmentation.
 */
export function readNiftiLabels(file: string): { header: NiftiHeader; labels: Uint8Array } {
  const { header, raw } = readNiftiRaw(file);
  const labels = new Uint8Array(raw.length);
  const { sclSlope: s, sclInter: b } = header;
  const [nx, ny] = header.shape;
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i] * s + b;
    // float32 labels may carry rounding noise from the writer; 1e-3 is far below any label step.
    const r = Math.round(v);
    if (!(Math.abs(v - r) <= 1e-3) || r < 0 || r > 255) {
      const x = i % nx;
      const y = Math.floor(i / nx) % ny;
      const z = Math.floor(i / (nx * ny));
      throw new DataError(
        `${file}: label value ${v} at voxel (${x}, ${y}, ${z}) is not a whole number in 0..255; a label map must hold class indices (was it resampled with linear instead of nearest-neighbour interpolation?)`,
        file,
      );
    }
    labels[i] = r;
  }
  return { header, labels };
}

export interface NiftiWriteOptions {
  shape: [number, number, number];
  spacing?: [number, number, number];
  datatype: NiftiDatatype;
  /** Stored values (before scaling), i fastest. */
  data: ArrayLike<number>;
  sclSlope?: number;
  sclInter?: number;
  /** Write big-endian (for tests of foreign files). */
  bigEndian?: boolean;
  description?: string;
}

/** Encodes a NIfTI-1 single-file image (gzip-compressed when `gzip`). */
export function encodeNifti(opts: NiftiWriteOptions, gzip: boolean): Uint8Array {
  const n = opts.shape[0] * opts.shape[1] * opts.shape[2];
  if (opts.data.length !== n) throw new Error(`encodeNifti: data has ${opts.data.length} values, shape ${opts.shape.join('x')} needs ${n}`);
  const bpv = BYTES[opts.datatype];
  const voxOffset = 352;
  const bytes = new Uint8Array(voxOffset + n * bpv);
  const view = new DataView(bytes.buffer);
  const le = !opts.bigEndian;
  const sp = opts.spacing ?? [1, 1, 1];
  view.setInt32(0, HEADER_BYTES, le);
  bytes[38] = 'r'.charCodeAt(0); // regular
  const dims = [3, opts.shape[0], opts.shape[1], opts.shape[2], 1, 1, 1, 1];
  dims.forEach((d, i) => view.setInt16(40 + 2 * i, d, le));
  view.setInt16(70, NIFTI_DATATYPES[opts.datatype], le);
  view.setInt16(72, bpv * 8, le);
  const pixdim = [1, sp[0], sp[1], sp[2], 1, 1, 1, 1];
  pixdim.forEach((p, i) => view.setFloat32(76 + 4 * i, p, le));
  view.setFloat32(108, voxOffset, le);
  view.setFloat32(112, opts.sclSlope ?? 1, le);
  view.setFloat32(116, opts.sclInter ?? 0, le);
  bytes[123] = 2; // xyzt_units: millimetres
  const descrip = (opts.description ?? 'iacnas').slice(0, 79);
  for (let i = 0; i < descrip.length; i++) bytes[148 + i] = descrip.charCodeAt(i) & 0x7f;
  // sform: a diagonal affine with the voxel spacing, so viewers show the right size.
  view.setInt16(254, 1, le);
  view.setFloat32(280, sp[0], le);
  view.setFloat32(296 + 4, sp[1], le);
  view.setFloat32(312 + 8, sp[2], le);
  bytes.set([0x6e, 0x2b, 0x31, 0x00], 344); // "n+1\0"
  // bytes 348..351: no extensions.
  const dv = new DataView(bytes.buffer, voxOffset);
  for (let i = 0; i < n; i++) {
    const v = opts.data[i];
    switch (opts.datatype) {
      case 'uint8':
        dv.setUint8(i, v);
        break;
      case 'int8':
        dv.setInt8(i, v);
        break;
      case 'int16':
        dv.setInt16(2 * i, v, le);
        break;
      case 'uint16':
        dv.setUint16(2 * i, v, le);
        break;
      case 'int32':
        dv.setInt32(4 * i, v, le);
        break;
      case 'uint32':
        dv.setUint32(4 * i, v, le);
        break;
      case 'float32':
        dv.setFloat32(4 * i, v, le);
        break;
      case 'float64':
        dv.setFloat64(8 * i, v, le);
        break;
    }
  }
  return gzip ? gzipSync(bytes, { level: 6 }) : bytes;
}

/** Writes a NIfTI-1 file; `.nii.gz` paths are gzip-compressed. */
export function writeNifti(file: string, opts: NiftiWriteOptions): void {
  writeFileSync(file, encodeNifti(opts, file.endsWith('.gz')));
}
