import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { parseTrainerConfig } from '../config/index.ts';
import { mulberry32 } from '../util/random.ts';
import { type Axis, normalizeVolume, resampleLinear } from '../data/slicing.ts';
import { fakeNet } from '../../testing/eval/fake-net.ts';
import { segmentVolume } from './segment.ts';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
});

describe('resampleLinear', () => {
  it('is the identity at the same size and resamples non-square maps', () => {
    const random = mulberry32(7);
    const src = Float32Array.from({ length: 12 * 20 }, () => random());
    expect(resampleLinear(src, 12, 20, 12, 20)).toEqual(src);
    // Upsampling a 2-pixel ramp: pixel centres aligned, edges clamped.
    expect([...resampleLinear(Float32Array.from([0, 1]), 1, 2, 1, 4)]).toEqual([0, 0.25, 0.75, 1]);
  });
});

describe('segmentVolume', () => {
  const net = fakeNet({ backbone: parseTrainerConfig({}).backbone, inChannels: 1, numClasses: 2, cells: 'none', seed: 0 }, 'sign');

  it('puts every slice back where it came from, across each axis', async () => {
    // Random intensities: any slice put back transposed, mirrored or at another index
    // would disagree with the voxel-wise answer. The in-plane size equals the slice size,
    // so the resizing both ways is the identity and the answer is exact.
    const random = mulberry32(11);
    const shapes: [[number, number, number], Axis][] = [
      [[16, 16, 5], 2],
      [[16, 5, 16], 1],
      [[5, 16, 16], 0],
    ];
    for (const [shape, axis] of shapes) {
      const n = shape[0] * shape[1] * shape[2];
      const image = Float32Array.from({ length: n }, () => random() * 100);
      const expected = Uint8Array.from(normalizeVolume(Float32Array.from(image), 'MRI'), (v) => (v > 0 ? 1 : 0));
      const seg = await segmentVolume(net, image, shape, axis, 'MRI', { sliceSize: 16, numClasses: 2, batchSize: 3 });
      expect(seg.count).toBe(shape[axis]);
      expect(seg.labels).toEqual(expected);
      expect(seg.sliceLabels).toHaveLength(shape[axis] * 256);
    }
  });

  it('returns the scan-grid and slice-grid answers of a scan of another size', async () => {
    // A bright box in a 24 x 10 x 4 scan, sliced across k to 16 x 16 and back.
    const shape: [number, number, number] = [24, 10, 4];
    const image = new Float32Array(24 * 10 * 4);
    const truth = new Uint8Array(image.length);
    for (let k = 0; k < 4; k++)
      for (let j = 2; j < 8; j++)
        for (let i = 6; i < 18; i++) {
          image[i + 24 * (j + 10 * k)] = 50;
          truth[i + 24 * (j + 10 * k)] = 1;
        }
    const seg = await segmentVolume(net, image, shape, 2, 'MRI', { sliceSize: 16, numClasses: 2, truth });
    expect(seg.labels).toHaveLength(image.length);
    // The box's edges fall between resampled pixels; away from them the answer is exact.
    let wrong = 0;
    for (let q = 0; q < truth.length; q++) if (seg.labels[q] !== truth[q]) wrong++;
    expect(wrong).toBeLessThanOrEqual(4 * 2 * (12 + 6)); // at most one ring of the box per slice
    expect(seg.labels[12 + 24 * (5 + 10 * 2)]).toBe(1);
    expect(seg.labels[1 + 24 * (1 + 10 * 2)]).toBe(0);
    expect(seg.sliceTruth).toHaveLength(4 * 256);
    expect(seg.sliceLabels).toHaveLength(4 * 256);
  });
});
