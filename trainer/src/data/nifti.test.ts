import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DataError, type NiftiDatatype, encodeNifti, readNifti, readNiftiHeader, readNiftiLabels, writeNifti } from './nifti.ts';

const dir = mkdtempSync(join(tmpdir(), 'nifti-'));
const shape: [number, number, number] = [3, 4, 5];
const n = 60;

function values(type: NiftiDatatype): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    switch (type) {
      case 'uint8':
        out.push((i * 7) % 256);
        break;
      case 'int16':
        out.push(i * 500 - 15000);
        break;
      case 'int32':
        out.push(i * 1_000_003 - 30_000_000);
        break;
      case 'float32':
        out.push(Math.fround(i * 0.37 - 5.5));
        break;
      case 'float64':
        out.push(i * 0.125 - 3);
        break;
      default:
        out.push(i);
    }
  }
  return out;
}

describe('NIfTI-1 reading and writing', () => {
  for (const type of ['uint8', 'int16', 'int32', 'float32', 'float64'] as const) {
    for (const gz of [false, true]) {
      it(`round-trips ${type} ${gz ? '.nii.gz' : '.nii'}`, () => {
        const file = join(dir, `rt-${type}.nii${gz ? '.gz' : ''}`);
        const data = values(type);
        writeNifti(file, { shape, spacing: [0.8, 0.9, 3.5], datatype: type, data });
        const header = readNiftiHeader(file);
        expect(header.shape).toEqual(shape);
        expect(header.datatype).toBe(type);
        expect(header.spacing.map((s) => Math.fround(s))).toEqual([0.8, 0.9, 3.5].map(Math.fround));
        const vol = readNifti(file);
        expect(Array.from(vol.data)).toEqual(data.map((v) => Math.fround(v)));
      });
    }
  }

  it('applies scl_slope and scl_inter', () => {
    const file = join(dir, 'scaled.nii.gz');
    writeNifti(file, { shape, datatype: 'int16', data: values('uint8'), sclSlope: 0.5, sclInter: -10 });
    const vol = readNifti(file);
    expect(vol.data[1]).toBe(7 * 0.5 - 10);
    expect(vol.data[59]).toBe(((59 * 7) % 256) * 0.5 - 10);
  });

  it('treats scl_slope 0 as no scaling', () => {
    const file = join(dir, 'slope0.nii');
    writeNifti(file, { shape, datatype: 'uint8', data: values('uint8'), sclSlope: 0, sclInter: 100 });
    expect(readNifti(file).data[1]).toBe(7);
  });

  it('reads big-endian files', () => {
    const file = join(dir, 'be.nii');
    writeNifti(file, { shape, datatype: 'float32', data: values('float32'), bigEndian: true });
    expect(readNiftiHeader(file).littleEndian).toBe(false);
    expect(Array.from(readNifti(file).data)).toEqual(values('float32'));
  });

  it('accepts labels stored as whole-number floats and refuses fractional ones', () => {
    const ok = join(dir, 'flabel.nii.gz');
    const labels = Array.from({ length: n }, (_, i) => i % 3);
    writeNifti(ok, { shape, datatype: 'float32', data: labels });
    expect(Array.from(readNiftiLabels(ok).labels)).toEqual(labels);
    const bad = join(dir, 'flabel-bad.nii.gz');
    writeNifti(bad, { shape, datatype: 'float64', data: labels.map((v, i) => (i === 13 ? 1.5 : v)) });
    expect(() => readNiftiLabels(bad)).toThrow(/flabel-bad\.nii\.gz: label value 1\.5 at voxel \(1, 0, 1\) is not a whole number/);
    const neg = join(dir, 'flabel-neg.nii');
    writeNifti(neg, { shape, datatype: 'int16', data: labels.map((v, i) => (i === 0 ? -1 : v)) });
    expect(() => readNiftiLabels(neg)).toThrow(DataError);
  });

  it('reports truncated files, from the header alone', () => {
    const full = encodeNifti({ shape, datatype: 'float32', data: values('float32') }, false);
    const nii = join(dir, 'trunc.nii');
    writeFileSync(nii, full.subarray(0, full.length - 10));
    expect(() => readNiftiHeader(nii)).toThrow(/trunc\.nii: truncated: the header promises 592 bytes .* holds 582/);
    expect(() => readNifti(nii)).toThrow(/truncated/);
    const gz = join(dir, 'trunc.nii.gz');
    const zipped = gzipSync(full);
    writeFileSync(gz, zipped.subarray(0, zipped.length - 12));
    expect(() => readNiftiHeader(gz)).toThrow(/trunc\.nii\.gz: gzip data is corrupt or truncated/);
  });

  it('reports files that are not NIfTI-1', () => {
    const txt = join(dir, 'notes.nii');
    writeFileSync(txt, 'this is not an image'.repeat(30));
    expect(() => readNiftiHeader(txt)).toThrow(/notes\.nii: not a NIfTI-1 file/);
    const empty = join(dir, 'empty.nii.gz');
    writeFileSync(empty, gzipSync(new Uint8Array(0)));
    expect(() => readNiftiHeader(empty)).toThrow(/empty\.nii\.gz: not a NIfTI-1 file \(only 0 bytes/);
  });

  it('names an unknown datatype and the supported ones', () => {
    const bytes = encodeNifti({ shape, datatype: 'uint8', data: values('uint8') }, false);
    new DataView(bytes.buffer).setInt16(70, 128, true); // RGB24
    const file = join(dir, 'rgb.nii');
    writeFileSync(file, bytes);
    expect(() => readNiftiHeader(file)).toThrow(/rgb\.nii: unsupported NIfTI datatype code 128; supported: uint8 \(2\)/);
  });

  it('refuses 4-D volumes with more than one entry along the 4th dimension', () => {
    const bytes = encodeNifti({ shape: [2, 2, 1], datatype: 'uint8', data: [1, 2, 3, 4] }, false);
    const view = new DataView(bytes.buffer);
    view.setInt16(40, 4, true);
    view.setInt16(46, 1, true);
    view.setInt16(48, 4, true); // dim[4] = 4 (but only one volume of data: refused before reading)
    const file = join(dir, 'four.nii');
    writeFileSync(file, bytes);
    expect(() => readNiftiHeader(file)).toThrow(/four\.nii: a 4-D volume with 4 entries along dimension 4/);
  });

  it('writes a gzip file that other tools can inflate to a valid header', () => {
    const file = join(dir, 'plain.nii.gz');
    writeNifti(file, { shape, datatype: 'uint8', data: values('uint8') });
    const bytes = gunzipSync(readFileSync(file));
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(view.getInt32(0, true)).toBe(348);
    expect(String.fromCharCode(bytes[344], bytes[345], bytes[346], bytes[347])).toBe('n+1\0');
    expect(view.getFloat32(108, true)).toBe(352); // vox_offset
    expect(bytes.length).toBe(352 + n);
  });
});

describe('header consistency', () => {
  /** A valid float32 file with the header patched by `patch`; .nii and .nii.gz. */
  function patched(name: string, patch: (view: DataView) => void): string[] {
    const bytes = encodeNifti({ shape, datatype: 'float32', data: values('float32') }, false);
    patch(new DataView(bytes.buffer));
    const nii = join(dir, `${name}.nii`);
    const gz = join(dir, `${name}.nii.gz`);
    writeFileSync(nii, bytes);
    writeFileSync(gz, gzipSync(bytes));
    return [nii, gz];
  }

  it('refuses a datatype that does not match the data (uint8 header on float32 voxels)', () => {
    for (const file of patched('u8-on-f32', (v) => v.setInt16(70, 2, true))) {
      const what = file.endsWith('.gz') ? 'more than 412 decompressed' : '592';
      expect(() => readNiftiHeader(file)).toThrow(
        new RegExp(
          `u8-on-f32\\.nii(\\.gz)?: holds ${what} bytes but the header describes 412 \\(vox_offset 352 \\+ 3x4x5 voxels x 1 byte\\(s\\) of uint8\\); the datatype or dimensions`,
        ),
      );
      expect(() => readNifti(file)).toThrow(DataError);
    }
    // Dimensions that promise less than the file holds, too.
    for (const file of patched('short-dims', (v) => v.setInt16(46, 4, true)))
      expect(() => readNifti(file)).toThrow(/short-dims\.nii(\.gz)?: holds .* describes 544 \(vox_offset 352 \+ 3x4x4 voxels/);
  });

  it('refuses a vox_offset that is NaN, negative, inside the header or fractional, naming the field', () => {
    for (const [name, offset] of [
      ['nan', NaN],
      ['negative', -16],
      ['348', 348],
      ['zero', 0],
      ['frac', 352.5],
      ['inf', Infinity],
    ] as const) {
      for (const file of patched(`off-${name}`, (v) => v.setFloat32(108, offset, true))) {
        expect(() => readNiftiHeader(file)).toThrow(
          new RegExp(`off-${name}\\.nii(\\.gz)?: invalid vox_offset ${String(offset).replace('.', '\\.')} \\(header field at byte 108\\)`),
        );
        expect(() => readNifti(file)).toThrow(/invalid vox_offset/);
      }
    }
    // An offset past the extension area is honoured exactly (the file carries the extra bytes).
    const bytes = encodeNifti({ shape, datatype: 'float32', data: values('float32') }, false);
    const shifted = new Uint8Array(bytes.length + 16);
    shifted.set(bytes.subarray(0, 352));
    shifted.set(bytes.subarray(352), 368);
    new DataView(shifted.buffer).setFloat32(108, 368, true);
    const file = join(dir, 'off-368.nii.gz');
    writeFileSync(file, gzipSync(shifted));
    expect(Array.from(readNifti(file).data)).toEqual(values('float32'));
  });

  it('names the file for a directory, a device and an unreadable path', () => {
    const folder = join(dir, 'folder.nii.gz');
    mkdirSync(folder);
    expect(() => readNiftiHeader(folder)).toThrow(/folder\.nii\.gz: is a directory, not a NIfTI file/);
    expect(() => readNifti(folder)).toThrow(/folder\.nii\.gz: is a directory/);
    expect(() => readNifti('/dev/zero')).toThrow(/\/dev\/zero: not a regular file/);
    expect(() => readNifti(join(dir, 'nowhere.nii'))).toThrow(/nowhere\.nii: cannot open \(ENOENT\)/);
  });

  it('never quotes the bytes of a file that is not a NIfTI', () => {
    const secret = join(dir, 'passwd.nii');
    writeFileSync(secret, `root:x:0:0:root:/root:/bin/bash\n${'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n'.repeat(10)}`);
    let message = '';
    try {
      readNifti(secret);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/passwd\.nii: not a NIfTI-1 file \(its first 4 bytes are not the header size 348\)/);
    const first4 = readFileSync(secret).readInt32LE(0); // what the old message quoted
    expect(message).not.toMatch(new RegExp(`root|daemon|nologin|${first4}`));
    // A 348 header size but no magic: the magic is not quoted either.
    const bytes = encodeNifti({ shape, datatype: 'uint8', data: values('uint8') }, false);
    bytes.set([0x72, 0x6f, 0x6f, 0x74], 344); // "root"
    const analyze = join(dir, 'nomagic.nii');
    writeFileSync(analyze, bytes);
    expect(() => readNiftiHeader(analyze)).toThrow(/nomagic\.nii: not a NIfTI-1 file \(no 'n\+1' magic at byte 344\)/);
    expect(() => readNiftiHeader(analyze)).not.toThrow(/roo/);
  });
});
