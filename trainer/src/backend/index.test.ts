import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it, vi } from 'vitest';
import { initBackend, parseBackendOverride } from './index.ts';

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}
// The CPU image and this repository's CI have neither tfjs-node package.
const nodeBindings = installed('@tensorflow/tfjs-node') || installed('@tensorflow/tfjs-node-gpu');

describe('backend choice', () => {
  it('falls back to wasm when the tfjs-node packages are absent, and says why in one stderr line', async () => {
    const writes: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      writes.push(String(chunk));
      return true;
    });
    const saved = process.env.IACNAS_BACKEND;
    delete process.env.IACNAS_BACKEND;
    try {
      const info = await initBackend();
      const lines = writes.join('').trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`iacnas: tfjs backend ${info.choice === 'wasm' ? 'wasm (SIMD' : info.choice}`);
      if (nodeBindings) {
        expect(['tensorflow-gpu', 'tensorflow']).toContain(info.choice);
        return;
      }
      expect(info.choice).toBe('wasm');
      expect(tf.getBackend()).toBe('wasm');
      expect(info.skipped.map((s) => s.choice)).toEqual(['tensorflow-gpu', 'tensorflow']);
      expect(info.skipped[0].reason).toMatch(/@tensorflow\/tfjs-node-gpu not loadable/);
      expect(lines[0]).toMatch(/tensorflow: @tensorflow\/tfjs-node not loadable/);
    } finally {
      spy.mockRestore();
      if (saved !== undefined) process.env.IACNAS_BACKEND = saved;
    }
  });

  it('switches to a backend asked for explicitly and refuses unknown IACNAS_BACKEND values', async () => {
    const info = await initBackend({ backend: 'cpu', quiet: true });
    expect(info.choice).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(parseBackendOverride('wasm')).toBe('wasm');
    expect(parseBackendOverride(undefined)).toBeUndefined();
    expect(() => parseBackendOverride('gpu')).toThrow(/IACNAS_BACKEND=gpu is not a backend; use one of tensorflow-gpu, tensorflow, wasm, cpu/);
  });
});
