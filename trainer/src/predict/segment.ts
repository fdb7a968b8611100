// Segmenting a whole scan with a trained 2-D network, on the scan's own voxel grid.
//
// The scan is prepared exactly as the training slices were (trainer/src/data: the
// volume normalised by modality, sliced across the chosen axis, every slice resized
// to sliceSize x sliceSize by bilinear resampling). The network gives class
// probabilities (softmax) per pixel of each resized slice; every class's probability
// map is resampled bilinearly back to the slice's original rows x columns (pixel
// centres aligned, as the forward resize), the class with the highest probability is
// taken per voxel, and the slices are put back along the slicing axis into the
// original [i, j, k] volume. The argmax on the resized slices is kept as well: it is
// what the slice-grid figures are computed on.
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '../model/api.ts';
import { type Axis, type Modality, normalizeVolume, planeAxes, resampleLinear, sliceVolume } from '../data/slicing.ts';

export interface SegmentOptions {
  sliceSize: number;
  numClasses: number;
  /** Slices per forward pass (default 16). */
  batchSize?: number;
}

export interface Segmentation {
  /** Class per voxel on the scan's own grid, i fastest (the NIfTI order). */
  labels: Uint8Array;
  /** Class per pixel of the resized slices: [slice][row][column], slicing-axis order. */
  sliceLabels: Uint8Array;
  /** Number of slices (the scan's size along the slicing axis). */
  count: number;
}

/**
 * Segments the resized slices `images` (count x size x size, as sliceVolume makes
 * them) of a volume of `shape`, sliced across `axis`, and puts the result back on
 * the volume's grid.
 */
export async function segmentSlices(
  net: Network,
  images: Float32Array,
  shape: readonly [number, number, number],
  axis: Axis,
  o: SegmentOptions,
): Promise<Segmentation> {
  const size = o.sliceSize;
  const k = o.numClasses;
  const plane = size * size;
  const count = shape[axis];
  if (images.length !== count * plane) throw new Error(`segmentSlices: ${images.length} values for ${count} slices of ${size}x${size}`);
  const batchSize = Math.max(1, o.batchSize ?? 16);
  const [ra, ca] = planeAxes(axis);
  const rows = shape[ra];
  const cols = shape[ca];
  const stride = [1, shape[0], shape[0] * shape[1]];
  const labels = new Uint8Array(shape[0] * shape[1] * shape[2]);
  const sliceLabels = new Uint8Array(count * plane);
  const classMap = new Float32Array(plane);
  const resampled = new Float32Array(rows * cols);
  const best = new Float32Array(rows * cols);
  const bestClass = new Uint8Array(rows * cols);
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const probs = tf.tidy(() => {
      const x = tf.tensor4d(images.subarray(start * plane, (start + n) * plane), [n, size, size, 1]);
      const logits = net.apply(x, { training: false });
      if (logits.shape[3] !== k) throw new Error(`the network gives ${logits.shape[3]} classes, ${k} expected`);
      return tf.softmax(logits);
    });
    const p = (await probs.data()) as Float32Array;
    probs.dispose();
    for (let b = 0; b < n; b++) {
      const s = start + b;
      const base = b * plane * k;
      // Slice grid: argmax of the probabilities (first class on a tie, as tf.argMax).
      for (let q = 0; q < plane; q++) {
        let arg = 0;
        let max = p[base + q * k];
        for (let c = 1; c < k; c++) {
          const v = p[base + q * k + c];
          if (v > max) {
            max = v;
            arg = c;
          }
        }
        sliceLabels[s * plane + q] = arg;
      }
      // Native grid: each class's probability map resampled to rows x cols, then argmax.
      best.fill(-Infinity);
      bestClass.fill(0);
      for (let c = 0; c < k; c++) {
        for (let q = 0; q < plane; q++) classMap[q] = p[base + q * k + c];
        resampleLinear(classMap, size, size, rows, cols, resampled);
        for (let q = 0; q < rows * cols; q++) {
          if (resampled[q] > best[q]) {
            best[q] = resampled[q];
            bestClass[q] = c;
          }
        }
      }
      // Back into the volume: the inverse of extractSlice.
      const sliceBase = s * stride[axis];
      for (let r = 0; r < rows; r++) {
        const rowBase = sliceBase + r * stride[ra];
        for (let c = 0; c < cols; c++) labels[rowBase + c * stride[ca]] = bestClass[r * cols + c];
      }
    }
  }
  return { labels, sliceLabels, count };
}

/**
 * Segments a raw scan: normalises `image` in place by `modality`, slices and resizes
 * it as training did, and segments it. With `truth`, also returns the label volume
 * resampled to the slices the way training saw it (nearest neighbour).
 */
export async function segmentVolume(
  net: Network,
  image: Float32Array,
  shape: readonly [number, number, number],
  axis: Axis,
  modality: Modality,
  o: SegmentOptions & { truth?: Uint8Array },
): Promise<Segmentation & { sliceTruth?: Uint8Array }> {
  normalizeVolume(image, modality);
  const stack = sliceVolume(image, o.truth ?? new Uint8Array(image.length), shape, axis, o.sliceSize);
  const seg = await segmentSlices(net, stack.images, shape, axis, o);
  return o.truth ? { ...seg, sliceTruth: stack.labels } : seg;
}
