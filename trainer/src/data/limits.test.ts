// Decompression and size bombs: files whose header or gzip stream promises gigabytes
// are refused from the header (or as soon as the stream passes what the header
// promises), naming the file, before the memory is allocated. The bombs are built
// from repeated deflate blocks, so a 4 GiB bomb takes milliseconds and 4 MB of disk.
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zc, crc32, deflateRawSync, gunzipSync } from 'node:zlib';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_MAX_BYTES, DEFAULT_MAX_VOXELS, DataError, dataLimits, encodeNifti, readNifti, readNiftiHeader, setDataLimits, writeNifti } from './nifti.ts';

const dir = mkdtempSync(join(tmpdir(), 'limits-'));
const MiB = 1024 * 1024;

// --- building bombs ----------------------------------------------------------------

/** A 352-byte NIfTI-1 header (no data) claiming `shape` of `datatype`. */
function header(shape: [number, number, number], datatype: 'uint8' | 'float32' = 'uint8'): Uint8Array {
  const tiny = encodeNifti({ shape: [1, 1, 1], datatype, data: [0] }, false).slice(0, 352);
  const view = new DataView(tiny.buffer);
  for (const [d, s] of shape.entries()) view.setInt16(42 + 2 * d, s, true);
  return tiny;
}

// CRC-32 of `crc`'s data followed by `n` zero bytes, without feeding them (zlib's
// crc32_combine idea: appending zeros is a linear map, applied by repeated squaring).
function gf2Times(mat: number[], vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}
function gf2Square(mat: number[]): number[] {
  return mat.map((col) => gf2Times(mat, col));
}
function crc32Zeros(crc: number, n: number): number {
  let op = [0xedb88320, ...Array.from({ length: 31 }, (_, i) => (1 << i) >>> 0)]; // one zero bit
  for (let i = 0; i < 3; i++) op = gf2Square(op); // one zero byte
  let r = ~crc >>> 0;
  for (let k = n; k > 0; k = Math.floor(k / 2)) {
    if (k % 2 === 1) r = gf2Times(op, r);
    op = gf2Square(op);
  }
  return ~r >>> 0;
}

/**
 * A valid gzip file of `head` followed by `zeroBytes` zero bytes (any size, in 1 MiB
 * deflate blocks repeated, plus one block for the remainder), CRC and ISIZE correct.
 */
function gzipBomb(head: Uint8Array, zeroBytes: number): Buffer {
  const flush = { finishFlush: zc.Z_FULL_FLUSH, level: 9 };
  const mib = deflateRawSync(Buffer.alloc(MiB), flush);
  const parts: Uint8Array[] = [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3]), deflateRawSync(head, flush)];
  for (let i = 0; i < Math.floor(zeroBytes / MiB); i++) parts.push(mib);
  if (zeroBytes % MiB) parts.push(deflateRawSync(Buffer.alloc(zeroBytes % MiB), flush));
  parts.push(Buffer.from([0x03, 0x00])); // final, empty block
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32Zeros(crc32(head), zeroBytes), 0);
  trailer.writeUInt32LE((head.length + zeroBytes) % 2 ** 32, 4);
  parts.push(trailer);
  return Buffer.concat(parts);
}

/** Runs `call` of nifti.ts / check.ts on `file` in a fresh node process; its peak RSS. */
function probe(call: 'readNifti' | 'readNiftiHeader' | 'checkDataset', file: string, env: Record<string, string> = {}) {
  const nifti = join(import.meta.dirname, 'nifti.ts');
  const check = join(import.meta.dirname, 'check.ts');
  const code = `
    const m = ${JSON.stringify(call)} === 'checkDataset' ? await import(${JSON.stringify(check)}) : await import(${JSON.stringify(nifti)});
    const before = process.resourceUsage().maxRSS;
    const t0 = performance.now();
    let message = '';
    try {
      const r = m[${JSON.stringify(call)}](process.argv[1]);
      if (r && r.problems) message = r.problems.join('\\n');
    } catch (e) { message = e.name + ': ' + e.message; }
    const ms = performance.now() - t0;
    console.log(JSON.stringify({ message, ms, beforeMiB: before / 1024, peakMiB: process.resourceUsage().maxRSS / 1024 }));`;
  const r = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', code, file], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`probe failed (${r.status} ${r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { message: string; ms: number; beforeMiB: number; peakMiB: number };
}

/** An MSD dataset directory with one case whose image is `image` (bytes). */
function datasetWith(image: Uint8Array, name: string): string {
  const root = mkdtempSync(join(tmpdir(), 'bomb-ds-'));
  mkdirSync(join(root, 'imagesTr'));
  mkdirSync(join(root, 'labelsTr'));
  writeFileSync(join(root, 'imagesTr', name), image);
  writeNifti(join(root, 'labelsTr', name), { shape: [2, 2, 2], datatype: 'uint8', data: [0, 1, 0, 1, 0, 1, 0, 1] });
  const training = [{ image: `./imagesTr/${name}`, label: `./labelsTr/${name}` }];
  writeFileSync(join(root, 'dataset.json'), JSON.stringify({ name: 'bomb', modality: { 0: 'CT' }, labels: { 0: 'background', 1: 'x' }, training }));
  return root;
}

afterEach(() => {
  setDataLimits({});
});
afterAll(() => rmSync(dir, { recursive: true, force: true })); // the sparse files claim 3.6 GB

describe('bomb builder', () => {
  it('makes valid gzip files (checked against zlib on a small one)', () => {
    const head = header([4, 4, 4]);
    const small = gzipBomb(head, 3 * MiB + 64);
    const out = gunzipSync(small);
    expect(out.length).toBe(352 + 3 * MiB + 64);
    expect(Buffer.compare(out.subarray(0, 352), Buffer.from(head))).toBe(0);
    expect(out.subarray(352).every((b) => b === 0)).toBe(true);
    expect(crc32Zeros(crc32(head), 12345)).toBe(crc32(Buffer.concat([head, Buffer.alloc(12345)])));
  });
});

describe('size limits', () => {
  const GiB4 = 4 * 1024 * MiB;

  it('refuses a 4 GiB .nii.gz bomb (4 MB on disk) from its header, in a process that stays small', () => {
    const file = join(dir, 'bomb4g.nii.gz');
    writeFileSync(file, gzipBomb(header([2048, 2048, 1024]), GiB4));
    expect(() => readNiftiHeader(file)).toThrow(DataError);
    expect(() => readNiftiHeader(file)).toThrow(/bomb4g\.nii\.gz: the header claims 2048x2048x1024 = 4294967296 voxels, more than the limit of 524288000/);
    for (const call of ['readNifti', 'checkDataset'] as const) {
      const target = call === 'checkDataset' ? datasetWith(gzipBomb(header([2048, 2048, 1024]), GiB4), 'bomb.nii.gz') : file;
      const r = probe(call, target);
      console.log(
        `4 GiB header bomb, ${call}: refused in ${r.ms.toFixed(0)} ms, peak RSS ${r.peakMiB.toFixed(0)} MiB (${r.beforeMiB.toFixed(0)} MiB after start-up)`,
      );
      expect(r.message).toMatch(/bomb(4g)?\.nii\.gz: the header claims .* more than the limit/);
      expect(r.peakMiB - r.beforeMiB).toBeLessThan(50);
      expect(r.peakMiB).toBeLessThan(200);
      expect(r.ms).toBeLessThan(10_000); // loose: a loaded machine; measured figures in docs/data-limits.md
    }
  });

  it('stops inflating a bomb whose header claims a small volume as soon as the data passes it', () => {
    // 64x64x1024 uint8 claims 4 MiB; the stream holds 4 GiB + 4 MiB of zeros, so even the
    // gzip trailer's size (mod 2^32) agrees with the header: only decompression shows it.
    const claim = 64 * 64 * 1024;
    const file = join(dir, 'liar.nii.gz');
    writeFileSync(file, gzipBomb(header([64, 64, 1024]), GiB4 + claim));
    expect(readNiftiHeader(file).shape).toEqual([64, 64, 1024]);
    expect(() => readNifti(file)).toThrow(
      /liar\.nii\.gz: holds more than 4194656 decompressed bytes but the header describes 4194656 .* do not match the data/,
    );
    const r = probe('readNifti', file);
    console.log(
      `4 GiB stream behind a 4 MiB header, readNifti: refused in ${r.ms.toFixed(0)} ms, peak RSS ${r.peakMiB.toFixed(0)} MiB (${r.beforeMiB.toFixed(0)} MiB after start-up)`,
    );
    expect(r.message).toMatch(/liar\.nii\.gz: holds more than/);
    expect(r.peakMiB - r.beforeMiB).toBeLessThan(50);
    // Without the ISIZE coincidence the cheap header check already decompresses (as far
    // as the header promises) and refuses it.
    const plain = join(dir, 'liar2.nii.gz');
    writeFileSync(plain, gzipBomb(header([64, 64, 1024]), GiB4));
    expect(() => readNiftiHeader(plain)).toThrow(/liar2\.nii\.gz: holds more than 4194656 decompressed bytes/);
    // A file far larger than any gzip of what its header promises is refused unread.
    const tiny = join(dir, 'liar3.nii.gz');
    writeFileSync(tiny, gzipBomb(header([64, 64, 64]), GiB4));
    expect(() => readNiftiHeader(tiny)).toThrow(/liar3\.nii\.gz: holds \d+ compressed bytes but the header describes 262496/);
  });

  it('refuses a sparse .nii that claims gigabytes without reading it', () => {
    // 1200x1200x1250 uint8 = 1.8 GB of holes on disk: over the voxel limit.
    const big = join(dir, 'sparse.nii');
    const fd = openSync(big, 'w');
    writeSync(fd, header([1200, 1200, 1250]));
    ftruncateSync(fd, 352 + 1200 * 1200 * 1250);
    closeSync(fd);
    const r = probe('readNifti', big);
    console.log(`sparse 1.8 GB .nii, readNifti: refused in ${r.ms.toFixed(0)} ms, peak RSS ${r.peakMiB.toFixed(0)} MiB`);
    expect(r.message).toMatch(/sparse\.nii: the header claims 1200x1200x1250 = 1800000000 voxels/);
    expect(r.peakMiB - r.beforeMiB).toBeLessThan(50);
    // A small header on a 1.8 GB sparse file: the header's dims decide, the file size is refused.
    const small = join(dir, 'sparse-small.nii');
    const fd2 = openSync(small, 'w');
    writeSync(fd2, header([100, 100, 100], 'float32'));
    ftruncateSync(fd2, 1_800_000_000);
    closeSync(fd2);
    expect(() => readNiftiHeader(small)).toThrow(/sparse-small\.nii: holds 1800000000 bytes but the header describes 4000352/);
    expect(() => readNifti(small)).toThrow(/sparse-small\.nii: holds 1800000000 bytes/);
  });

  it('refuses a volume over the byte limit (a float64 within the voxel limit)', () => {
    const file = join(dir, 'wide.nii.gz');
    const h = header([1, 1, 1]);
    const view = new DataView(h.buffer);
    for (const [d, s] of [1024, 1024, 300].entries()) view.setInt16(42 + 2 * d, s, true);
    view.setInt16(70, 64, true); // float64: 2.4 GiB of data
    writeFileSync(file, gzipBomb(h, 0));
    expect(() => readNiftiHeader(file)).toThrow(
      /wide\.nii\.gz: the header claims 2516582752 bytes of data \(1024x1024x300 float64 from vox_offset 352\), more than the limit of 2048 MiB/,
    );
  });

  it('has defaults that fit real CT and MRI, and can be changed by the environment or setDataLimits', () => {
    expect(DEFAULT_MAX_VOXELS).toBe(512 * 512 * 2000);
    expect(DEFAULT_MAX_BYTES).toBe(2048 * MiB);
    expect(DEFAULT_MAX_BYTES).toBeGreaterThanOrEqual(352 + DEFAULT_MAX_VOXELS * 4); // float32 at the voxel limit
    expect(dataLimits({})).toEqual({ maxVoxels: DEFAULT_MAX_VOXELS, maxBytes: DEFAULT_MAX_BYTES });
    expect(dataLimits({ IACNAS_MAX_VOXELS: '1000', IACNAS_MAX_DECOMPRESSED_MB: '3' })).toEqual({ maxVoxels: 1000, maxBytes: 3 * MiB });
    expect(() => dataLimits({ IACNAS_MAX_VOXELS: 'lots' })).toThrow(/IACNAS_MAX_VOXELS: 'lots' is not a positive whole number/);
    expect(() => dataLimits({ IACNAS_MAX_DECOMPRESSED_MB: '-1' })).toThrow(DataError);

    const file = join(dir, 'ok.nii.gz');
    writeNifti(file, { shape: [10, 10, 10], datatype: 'float32', data: new Float32Array(1000) });
    expect(readNifti(file).data.length).toBe(1000);
    setDataLimits({ maxVoxels: 999 });
    expect(() => readNifti(file)).toThrow(/ok\.nii\.gz: the header claims 10x10x10 = 1000 voxels, more than the limit of 999/);
    setDataLimits({ maxBytes: 4000 });
    expect(() => readNiftiHeader(file)).toThrow(/ok\.nii\.gz: the header claims 4352 bytes .* more than the limit of 0\.004 MiB/);
    setDataLimits({});
    expect(readNiftiHeader(file).shape).toEqual([10, 10, 10]);
    expect(() => setDataLimits({ maxVoxels: 0 })).toThrow(RangeError);
    // The environment reaches a fresh process (the trainer and `iacnas dataset check`);
    // a bad value is reported once.
    const r = probe('readNiftiHeader', file, { IACNAS_MAX_VOXELS: '500' });
    expect(r.message).toMatch(/ok\.nii\.gz: the header claims 10x10x10 = 1000 voxels, more than the limit of 500 \(IACNAS_MAX_VOXELS\)/);
    const ds = datasetWith(readFileSync(file), 'ok.nii.gz');
    expect(probe('checkDataset', ds, { IACNAS_MAX_DECOMPRESSED_MB: 'big' }).message).toBe("IACNAS_MAX_DECOMPRESSED_MB: 'big' is not a positive whole number");
  });
});
