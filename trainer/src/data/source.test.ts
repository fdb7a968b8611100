import { describe, expect, it } from 'vitest';
import { DataError } from './nifti.ts';
import { PatientSliceSource, SliceStackCache } from './source.ts';
import type { SliceStack } from './slicing.ts';

// A stack of `mb` MiB (images only; labels of 0 bytes keep the arithmetic simple).
function stack(mb: number): SliceStack {
  return { images: new Float32Array((mb * 1024 * 1024) / 4), labels: new Uint8Array(0), count: 1 };
}

describe('SliceStackCache', () => {
  it('never holds more than its bound and evicts the least recently used patient', async () => {
    const loaded: string[] = [];
    const cache = new SliceStackCache(3 * 1024 * 1024, async (id) => {
      loaded.push(id);
      return stack(1);
    });
    for (const id of ['a', 'b', 'c']) await cache.get(id);
    expect(cache.bytes).toBe(3 * 1024 * 1024);
    await cache.get('a'); // a is now the most recent
    await cache.get('d'); // evicts b
    expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes);
    await cache.get('a');
    await cache.get('c');
    expect(loaded).toEqual(['a', 'b', 'c', 'd']);
    await cache.get('b');
    expect(loaded).toEqual(['a', 'b', 'c', 'd', 'b']);
    expect(cache.loads).toBe(5);
  });

  it('hands out a stack larger than the bound without keeping it', async () => {
    const cache = new SliceStackCache(1024 * 1024, async () => stack(2));
    const s = await cache.get('big');
    expect(s.images.byteLength).toBe(2 * 1024 * 1024);
    expect(cache.bytes).toBe(0);
    await cache.get('big');
    expect(cache.loads).toBe(2);
  });

  it('decodes a patient once when several batches ask for it at the same time', async () => {
    let calls = 0;
    const cache = new SliceStackCache(8 * 1024 * 1024, async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 5));
      return stack(1);
    });
    const [x, y] = await Promise.all([cache.get('p'), cache.get('p')]);
    expect(x).toBe(y);
    expect(calls).toBe(1);
  });

  it('does not cache a failed load', async () => {
    let fail = true;
    const cache = new SliceStackCache(8 * 1024 * 1024, async () => {
      if (fail) throw new Error('file vanished');
      return stack(1);
    });
    await expect(cache.get('p')).rejects.toThrow('file vanished');
    fail = false;
    await expect(cache.get('p')).resolves.toBeDefined();
  });
});

describe('PatientSliceSource', () => {
  it('a batch that fails while nobody awaits it yet (loaded ahead) is no unhandled rejection', async () => {
    // The training loops ask for batch i + 1 while batch i trains and await it later; a
    // bad file must reach them as a rejection (exit status 2), not crash the process.
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => void unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const cache = new SliceStackCache(1024 * 1024, async () => {
        throw new DataError('/data/bad.nii.gz: holds NaN or infinite intensities', '/data/bad.nii.gz');
      });
      const source = new PatientSliceSource({
        patients: [{ id: 'p', shape: [4, 4, 2], spacing: [1, 1, 1], count: 2 }],
        cache,
        sliceSize: 4,
        augment: { flip: false, rotate90: false, intensityScale: 0 },
        seed: 0,
      });
      const ahead = source.batch([0, 1]);
      await new Promise((r) => setTimeout(r, 20)); // the step on the previous batch
      await expect(ahead).rejects.toThrow(/bad\.nii\.gz: holds NaN/);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
