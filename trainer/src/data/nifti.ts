// NIfTI-1 reading and writing (.nii and .nii.gz), single 3-D volumes.
//
// The header is parsed here rather than through a generic reader so that every
// problem a real file can have (truncation, a NIfTI-2 or Analyze file, 4-D data, an
// unknown datatype, labels stored as floats) comes out as one error naming the file
// and what to do about it.
import { BadInputError, ENV } from '../../../contract/src/index.ts';
import { closeSync, fstatSync, openSync, readSync, writeFileSync } from 'node:fs';
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

/** A problem with a dataset or a data file; the message names the file and the fix. */
export class DataError extends BadInputError {
  override name = 'DataError';
  readonly file?: string;
  constructor(message: string, file?: string) {
    super('data', message, [file !== undefined ? { file, message: message.startsWith(`${file}: `) ? message.slice(file.length + 2) : message } : { message }]);
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

// ---------------------------------------------------------------------------------
// Limits. A NIfTI header is 348 bytes that can promise terabytes, and a few MB of
// gzip can inflate to gigabytes, so every read checks what the header promises
// against these limits (and against the file) before allocating anything.

/** Upper bounds on one NIfTI file; see docs/data-limits.md. */
export interface DataLimits {
  /** Voxels in one volume (dim[1] x dim[2] x dim[3]). */
  maxVoxels: number;
  /** Bytes of one decompressed file (vox_offset + voxel data). */
  maxBytes: number;
}

/** 512 x 512 x 2000 voxels: a whole-body CT at 512 x 512 with 2000 slices. */
export const DEFAULT_MAX_VOXELS = 512 * 512 * 2000;
/** 2 GiB: the default voxel limit stored as float32, with its header. */
export const DEFAULT_MAX_BYTES = 2048 * 1024 * 1024;

let limitOverride: Partial<DataLimits> = {};

function envLimit(env: Record<string, string | undefined>, name: string, scale: number): number | undefined {
  const text = env[name];
  if (text === undefined || text.trim() === '') return undefined;
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < 1) throw new DataError(`${name}: '${text.slice(0, 40)}' is not a positive whole number`);
  return v * scale;
}

/**
 * The limits in force: those given to setDataLimits, else the environment
 * (IACNAS_MAX_VOXELS, IACNAS_MAX_DECOMPRESSED_MB), else the defaults.
 */
export function dataLimits(env: Record<string, string | undefined> = process.env): DataLimits {
  return {
    maxVoxels: limitOverride.maxVoxels ?? envLimit(env, ENV.maxVoxels, 1) ?? DEFAULT_MAX_VOXELS,
    maxBytes: limitOverride.maxBytes ?? envLimit(env, ENV.maxDecompressedMB, 1024 * 1024) ?? DEFAULT_MAX_BYTES,
  };
}

/**
 * Overrides the limits for this process (undefined fields fall back to the
 * environment and the defaults); returns the previous overrides so a caller can
 * restore them.
 */
export function setDataLimits(limits: Partial<DataLimits>): Partial<DataLimits> {
  for (const [k, v] of Object.entries(limits)) {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new RangeError(`setDataLimits: ${k} must be a positive whole number, got ${v}`);
  }
  const previous = limitOverride;
  limitOverride = { ...limits };
  return previous;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes < 1024 * 1024 ? 3 : 0)} MiB`;
}

/** Bytes of the whole decompressed file the header promises. */
function fileBytes(h: NiftiHeader): number {
  return h.voxOffset + h.dataBytes;
}

/** Refuses, from the header alone, a volume larger than the limits. */
function checkLimits(h: NiftiHeader, file: string): void {
  const { maxVoxels, maxBytes } = dataLimits();
  const voxels = h.shape[0] * h.shape[1] * h.shape[2];
  if (voxels > maxVoxels) {
    throw new DataError(
      `${file}: the header claims ${h.shape.join('x')} = ${voxels} voxels, more than the limit of ${maxVoxels} (IACNAS_MAX_VOXELS); refused before reading the data. If the volume is real, raise the limit`,
      file,
    );
  }
  if (fileBytes(h) > maxBytes) {
    throw new DataError(
      `${file}: the header claims ${fileBytes(h)} bytes of data (${h.shape.join('x')} ${h.datatype} from vox_offset ${h.voxOffset}), more than the limit of ${mib(maxBytes)} (IACNAS_MAX_DECOMPRESSED_MB); refused before reading the data. If the volume is real, raise the limit`,
      file,
    );
  }
}

/** Parses the 348-byte NIfTI-1 header. Messages never quote the file's bytes. */
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
      // Not even a NIfTI header: say so without quoting what the file holds.
      throw new DataError(`${file}: not a NIfTI-1 file (its first 4 bytes are not the header size 348)`, file);
    }
  }
  const magic = String.fromCharCode(bytes[344], bytes[345], bytes[346]);
  if (magic === 'ni1') {
    throw new DataError(`${file}: a NIfTI-1 header with separate .img data (magic 'ni1') is not supported; store it as a single .nii or .nii.gz`, file);
  }
  if (magic !== 'n+1') {
    throw new DataError(`${file}: not a NIfTI-1 file (no 'n+1' magic at byte 344); Analyze 7.5 .hdr/.img pairs are not supported`, file);
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
      `${file}: unsupported NIfTI datatype code ${code}; supported: ${Object.entries(NIFTI_DATATYPES)
        .map(([n, c]) => `${n} (${c})`)
        .join(', ')}`,
      file,
    );
  }
  const spacing: [number, number, number] = [1, 1, 1];
  for (let d = 0; d < 3; d++) {
    const p = Math.abs(view.getFloat32(80 + 4 * d, le)); // pixdim[1..3]
    spacing[d] = Number.isFinite(p) && p > 0 ? p : 1;
  }
  // vox_offset is a float in the header; in a single-file NIfTI-1 it must be a whole
  // number of bytes past the 348-byte header and the 4-byte extension flag. Anything
  // else (NaN, 0, 348, 352.5) would shift or misread every voxel, so it is refused.
  const voxOffset = view.getFloat32(108, le);
  if (!Number.isInteger(voxOffset) || voxOffset < HEADER_BYTES + 4) {
    throw new DataError(
      `${file}: invalid vox_offset ${voxOffset} (header field at byte 108): a single-file NIfTI-1 keeps its voxels at a whole-number offset >= 352; re-export the file`,
      file,
    );
  }
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

function corruptGzip(file: string, e: unknown): DataError {
  return new DataError(`${file}: gzip data is corrupt or truncated (${(e as Error).message}); re-export or re-download the file`, file);
}

/** Length of a gzip member header (RFC 1952), or undefined when `bytes` does not hold all of it. */
function gzipHeaderLength(bytes: Uint8Array): number | undefined {
  if (bytes.length < 10) return undefined;
  const flags = bytes[3];
  let pos = 10;
  if (flags & 0x04) {
    if (bytes.length < pos + 2) return undefined;
    pos += 2 + (bytes[pos] | (bytes[pos + 1] << 8)); // FEXTRA
  }
  for (const flag of [0x08, 0x10]) {
    // FNAME, FCOMMENT: zero-terminated
    if (flags & flag) {
      while (pos < bytes.length && bytes[pos] !== 0) pos++;
      pos++;
    }
  }
  if (flags & 0x02) pos += 2; // FHCRC
  return pos <= bytes.length ? pos : undefined;
}

/**
 * Decompresses only the start of a gzip file, enough for the header. The input is cut
 * to 4 KiB of deflate data so the output is bounded (deflate inflates at most ~1032:1)
 * whatever the file holds.
 */
function gunzipHead(head: Uint8Array, file: string): Uint8Array {
  const start = gzipHeaderLength(head);
  if (start === undefined) throw new DataError(`${file}: gzip data is corrupt or truncated (gzip header longer than ${head.length} bytes)`, file);
  try {
    return gunzipSync(head.subarray(0, start + 4096), { finishFlush: zc.Z_SYNC_FLUSH, maxOutputLength: 8 * 1024 * 1024 });
  } catch (e) {
    throw corruptGzip(file, e);
  }
}

/** An open regular file; anything else (a directory, a device, a FIFO) is refused by name. */
function openRegular(file: string): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new DataError(`${file}: cannot open (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new DataError(`${file}: is a directory, not a NIfTI file`, file);
    if (!st.isFile()) throw new DataError(`${file}: not a regular file (a device, socket or pipe); give a .nii or .nii.gz file`, file);
    return { fd, size: st.size };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

function readAt(fd: number, length: number, position: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done === length ? out : out.subarray(0, done);
}

/** Runs `body` on an open regular file; every error it throws names the file. */
function withFile<T>(file: string, body: (fd: number, size: number) => T): T {
  const { fd, size } = openRegular(file);
  try {
    return body(fd, size);
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  } finally {
    closeSync(fd);
  }
}

function truncated(file: string, h: NiftiHeader, holds: number): DataError {
  return new DataError(
    `${file}: truncated: the header promises ${fileBytes(h)} bytes (shape ${h.shape.join('x')} ${h.datatype}) but the file holds ${holds}; re-export or re-download the file`,
    file,
  );
}

function tooLong(file: string, h: NiftiHeader, holds: string): DataError {
  return new DataError(
    `${file}: holds ${holds} bytes but the header describes ${fileBytes(h)} (vox_offset ${h.voxOffset} + ${h.shape.join('x')} voxels x ${BYTES[h.datatype]} byte(s) of ${h.datatype}); the datatype or dimensions in the header do not match the data`,
    file,
  );
}

/** The largest a gzip file of `bytes` decompressed bytes can sensibly be (stored blocks, several members). */
function maxCompressed(bytes: number): number {
  return bytes + Math.ceil(bytes / 64) + 1024 * 1024;
}

interface Opened {
  header: NiftiHeader;
  gzip: boolean;
  size: number;
}

/** Reads and checks the header of an open file: limits, vox_offset, file size. */
function openHeader(file: string, fd: number, size: number): Opened {
  const head = readAt(fd, Math.min(size, 65536), 0);
  if (isGzip(head)) {
    if (size < 18) throw new DataError(`${file}: gzip file is truncated (${size} bytes)`, file);
    const header = parseNiftiHeader(gunzipHead(head, file), file);
    checkLimits(header, file);
    if (size > maxCompressed(fileBytes(header))) {
      throw tooLong(file, header, `${size} compressed`);
    }
    return { header, gzip: true, size };
  }
  const header = parseNiftiHeader(head, file);
  checkLimits(header, file);
  // The size on disk is checked against the header, not trusted: a sparse file can
  // claim any size, and a uint8 header on float32 data would otherwise pass.
  if (size < fileBytes(header)) throw truncated(file, header, size);
  if (size > fileBytes(header)) throw tooLong(file, header, String(size));
  return { header, gzip: false, size };
}

/**
 * Reads only the header, cheaply (at most 64 KiB of the file and 8 MiB of inflated
 * bytes), and checks it against the limits and the file size. For .nii.gz the gzip
 * trailer's uncompressed size is compared with what the header promises, which
 * catches a truncated download or a wrong datatype without decompressing the file.
 */
export function readNiftiHeader(file: string): NiftiHeader {
  return withFile(file, (fd, size) => {
    const { header, gzip } = openHeader(file, fd, size);
    if (gzip) {
      const tail = readAt(fd, 4, size - 4);
      const isize = new DataView(tail.buffer).getUint32(0, true);
      // A mismatch means truncation, a wrong header or a multi-member gzip: decompressing
      // the whole file (bounded by what the header promises) tells them apart.
      if (isize !== fileBytes(header) % 2 ** 32) readWhole(file, fd, size, header, true);
    }
    return header;
  });
}

/**
 * The 348 bytes of the NIfTI-1 header as stored (decompressed for .nii.gz), after the
 * checks of readNiftiHeader's parse. A label map written for a scan copies it, so it
 * keeps the scan's dimensions, pixdim and qform/sform exactly.
 */
export function readNiftiHeaderBytes(file: string): Uint8Array {
  return withFile(file, (fd, size) => {
    const head = readAt(fd, Math.min(size, 65536), 0);
    const bytes = isGzip(head) ? gunzipHead(head, file) : head;
    parseNiftiHeader(bytes, file);
    return bytes.slice(0, HEADER_BYTES);
  });
}

/**
 * The whole decompressed file. Decompression stops as soon as the output passes what
 * the header promises (at most the byte limit), so a bomb costs no more memory than an
 * honest file of the size its header claims.
 */
function readWhole(file: string, fd: number, size: number, header: NiftiHeader, gzip: boolean): Uint8Array {
  const bytes = readAt(fd, size, 0);
  const expected = fileBytes(header);
  if (!gzip) {
    if (bytes.length < expected) throw truncated(file, header, bytes.length); // shrank since fstat
    return bytes;
  }
  let out: Uint8Array;
  try {
    out = gunzipSync(bytes, { maxOutputLength: expected, chunkSize: 1024 * 1024 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
      throw tooLong(file, header, `more than ${expected} decompressed`);
    }
    throw corruptGzip(file, e);
  }
  if (out.length < expected) throw truncated(file, header, out.length);
  return out;
}

/** Reads the stored values (before scaling) of a whole file into a typed array. */
export function readNiftiRaw(file: string): { header: NiftiHeader; raw: ArrayLike<number> } {
  const { header, bytes } = withFile(file, (fd, size) => {
    const o = openHeader(file, fd, size);
    return { header: o.header, bytes: readWhole(file, fd, size, o.header, o.gzip) };
  });
  const end = fileBytes(header);
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
  for (const [i, d] of dims.entries()) view.setInt16(40 + 2 * i, d, le);
  view.setInt16(70, NIFTI_DATATYPES[opts.datatype], le);
  view.setInt16(72, bpv * 8, le);
  const pixdim = [1, sp[0], sp[1], sp[2], 1, 1, 1, 1];
  for (const [i, p] of pixdim.entries()) view.setFloat32(76 + 4 * i, p, le);
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
