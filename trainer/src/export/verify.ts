// Runs an exported model in onnxruntime-node and the network in tfjs on the same
// slices, and measures how far apart their logits are.
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from '../model/api.ts';
import { INPUT_NAME, LOGITS_NAME, PROBABILITIES_NAME } from './onnx.ts';
import { badInput } from '../util/bad-input.ts';

/**
 * Largest |ONNX logit - tfjs logit| that `iacnas export --verify` accepts, relative to
 * the largest |logit|. Both sides compute in float32 (rounding unit 6e-8) but sum in
 * other orders and with other convolution algorithms, and every instance
 * normalisation divides by a standard deviation, so a rounding error grows by the ratio
 * of a channel's magnitude to its spread, most where a map has few pixels. Measured
 * (docs/onnx.md): 1e-6 to 1e-5 for depth 2-3 networks at 16-64 pixels, 9e-5 for the
 * largest one (depth 5, 32 base filters, 64x64 slices: a 2x2 bottleneck). Anything
 * exported wrongly (an operation, a padding, a weight layout, the channel order) is off
 * by 1e-2 or more.
 */
export const RELATIVE_TOLERANCE = 1e-3;

export interface Comparison {
  /** max |ONNX logits - tfjs logits|. */
  maxAbsDiff: number;
  /** max |tfjs logits|: the scale the difference is compared with. */
  maxAbsLogit: number;
  /** maxAbsDiff / max(maxAbsLogit, 1e-6). */
  relative: number;
  /** max |ONNX probabilities - softmax(tfjs logits)|. */
  maxProbabilityDiff: number;
  /** Share of pixels whose argmax class agrees. */
  argmaxAgreement: number;
  shape: [number, number, number, number];
}

/** A seeded standard-normal batch [n, h, w, c] (NHWC, what the tfjs network takes). */
export function randomSlices(n: number, h: number, w: number, c: number, seed: number): tf.Tensor4D {
  return tf.randomNormal([n, h, w, c], 0, 1, 'float32', seed) as tf.Tensor4D;
}

/** NHWC float32 values to NCHW (what the ONNX model takes). */
export function toNchw(values: Float32Array, [n, h, w, c]: readonly number[]): Float32Array {
  const out = new Float32Array(values.length);
  for (let b = 0; b < n; b++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) out[((b * c + ch) * h + y) * w + x] = values[((b * h + y) * w + x) * c + ch];
  return out;
}

/** Runs the model bytes in onnxruntime-node (CPU) and `net` in tfjs (training: false) on `x` (NHWC) and compares the logits. */
export async function compareWithOnnxRuntime(net: Network, model: Uint8Array, x: tf.Tensor4D): Promise<Comparison> {
  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch (e) {
    throw badInput(
      'usage',
      `checking the export needs onnxruntime-node, a development dependency of the project (${(e as Error).message.split('\n')[0]}); install it with 'npm ci' (without --omit=dev), or export without --verify`,
    );
  }
  const [n, h, w, c] = x.shape;
  const reference = tf.tidy(() => tf.transpose(net.apply(x, { training: false }), [0, 3, 1, 2]));
  const expected = (await reference.data()) as Float32Array;
  const k = reference.shape[1];
  reference.dispose();
  const session = await ort.InferenceSession.create(model);
  try {
    const input = new ort.Tensor('float32', toNchw((await x.data()) as Float32Array, [n, h, w, c]), [n, c, h, w]);
    const out = await session.run({ [INPUT_NAME]: input });
    const logits = out[LOGITS_NAME].data as Float32Array;
    const probabilities = out[PROBABILITIES_NAME].data as Float32Array;
    let maxAbsDiff = 0;
    let maxAbsLogit = 0;
    for (let i = 0; i < expected.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(expected[i] - logits[i]));
      maxAbsLogit = Math.max(maxAbsLogit, Math.abs(expected[i]));
    }
    let maxProbabilityDiff = 0;
    let agree = 0;
    const plane = h * w;
    for (let b = 0; b < n; b++) {
      for (let p = 0; p < plane; p++) {
        let m = -Infinity;
        let best = 0;
        let bestOnnx = 0;
        for (let cl = 0; cl < k; cl++) {
          const v = expected[(b * k + cl) * plane + p];
          if (v > m) {
            m = v;
            best = cl;
          }
          if (logits[(b * k + cl) * plane + p] > logits[(b * k + bestOnnx) * plane + p]) bestOnnx = cl;
        }
        let s = 0;
        for (let cl = 0; cl < k; cl++) s += Math.exp(expected[(b * k + cl) * plane + p] - m);
        for (let cl = 0; cl < k; cl++) {
          const i = (b * k + cl) * plane + p;
          maxProbabilityDiff = Math.max(maxProbabilityDiff, Math.abs(Math.exp(expected[i] - m) / s - probabilities[i]));
        }
        if (best === bestOnnx) agree++;
      }
    }
    return {
      maxAbsDiff,
      maxAbsLogit,
      relative: maxAbsDiff / Math.max(maxAbsLogit, 1e-6),
      maxProbabilityDiff,
      argmaxAgreement: agree / (n * plane),
      shape: [n, k, h, w],
    };
  } finally {
    await session.release();
  }
}
