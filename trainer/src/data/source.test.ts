import { describe, expect, it } from 'vitest';
import { SliceStackCache } from './source.ts';
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
