// Changes to the wasm backend that make training faster without changing results.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';

interface WasmBackendLike {
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: string): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * Slice reading the input through a view of the wasm heap. The backend's own Slice
 * first copies the whole input out of the heap (readSync), so every slice of a large
 * tensor, and every piece of a split, cost a copy of all of it.
 */
function sliceFromHeap(backend: WasmBackendLike, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = backend.makeOutput([...size], x.dtype);
  const total = size.reduce((a, b) => a * b, 1);
  if (total === 0) return out;
  // Views only after makeOutput: allocating may grow (and move) the heap.
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  const rank = x.shape.length;
  const strides = new Array<number>(rank).fill(1);
  for (let d = rank - 2; d >= 0; d--) strides[d] = strides[d + 1] * x.shape[d + 1];
  // Merge trailing dimensions taken whole into one contiguous run.
  let run = 1;
  let inner = rank;
  while (inner > 0) {
    const d = inner - 1;
    run *= size[d];
    inner = d;
    if (size[d] !== x.shape[d] || begin[d] !== 0) break;
  }
  const outer = total / run;
  const idx = new Array<number>(inner).fill(0);
  let o = 0;
  for (let r = 0; r < outer; r++) {
    let off = inner < rank ? begin[inner] * strides[inner] : 0;
    for (let d = 0; d < inner; d++) off += (begin[d] + idx[d]) * strides[d];
    if (run >= 64) dst.set(src.subarray(off, off + run), o);
    else for (let k = 0; k < run; k++) dst[o + k] = src[off + k];
    o += run;
    for (let d = inner - 1; d >= 0; d--) {
      if (++idx[d] < size[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * A transpose of a tall matrix (a batch of them) on the heap: [A, B, C] -> [A, C, B]
 * for B > 64 rows and C >= 8 columns, in tiles of 128 rows by 4 columns, so that the
 * rows being written stay few enough for the cache. The backend's own kernel writes
 * a whole column at a time: 10 ns an element for [8192, 48] (rows 32 KB apart thrash
 * the cache; matrix-product gradients transpose such activations), about 1 ns here.
 * It stays faster for short or narrow matrices and for runs of elements (D > 1).
 */
function transposeTallOnHeap(backend: WasmBackendLike, x: TensorInfo, outShape: number[], a: number, b: number, c: number): TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype);
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  for (let n = 0; n < a; n++) {
    const base = n * b * c;
    for (let b0 = 0; b0 < b; b0 += 128) {
      const b1 = Math.min(b, b0 + 128);
      for (let c0 = 0; c0 < c; c0 += 4) {
        const c1 = Math.min(c, c0 + 4);
        for (let j = c0; j < c1; j++) for (let i = b0; i < b1; i++) dst[base + j * b + i] = src[base + i * c + j];
      }
    }
  }
  return out;
}

/**
 * [A, B, C, D] for a permutation that swaps two adjacent groups of axes (dimensions
 * of size 1 ignored), else undefined.
 */
export function swappedGroups(shape: readonly number[], perm: readonly number[]): [number, number, number, number] | undefined {
  const axes = perm.filter((p) => shape[p] !== 1);
  const kept = [...axes].sort((p, q) => p - q);
  const size = (ps: number[]) => ps.reduce((s, p) => s * shape[p], 1);
  let i = 0;
  while (i < axes.length && axes[i] === kept[i]) i++;
  let e = axes.length;
  while (e > i && axes[e - 1] === kept[e - 1]) e--;
  if (i === e) return undefined; // the identity: nothing to swap
  // axes[i..e) must be kept[k..e) followed by kept[i..k) for some k.
  const first = axes[i];
  const k = kept.indexOf(first);
  const rotated = [...kept.slice(k, e), ...kept.slice(i, k)];
  if (rotated.some((p, j) => p !== axes[i + j])) return undefined;
  return [size(kept.slice(0, i)), size(kept.slice(i, k)), size(kept.slice(k, e)), size(kept.slice(e))];
}

/**
 * Concat on the heap with short runs copied element by element. The backend's own
 * Concat copies every run with a new subarray view: a concatenation along the
 * channel axis (the decoder's [skip, up], a cell's node state) made two views per
 * pixel.
 */
function concatFromHeap(backend: WasmBackendLike, xs: TensorInfo[], axis: number): TensorInfo {
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((s, x) => s + x.shape[axis], 0);
  const out = backend.makeOutput(shape, xs[0].dtype);
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const runs = xs.map((x) => x.shape.slice(axis).reduce((a, b) => a * b, 1));
  const row = runs.reduce((a, b) => a + b, 0);
  if (outer * row === 0) return out;
  // Views only after makeOutput: allocating may grow (and move) the heap.
  const dst = backend.typedArrayFromHeap(out);
  let start = 0;
  xs.forEach((x, i) => {
    const run = runs[i];
    if (run === 0) return;
    const src = backend.typedArrayFromHeap(x);
    if (run >= 64) {
      for (let r = 0; r < outer; r++) dst.set(src.subarray(r * run, (r + 1) * run), r * row + start);
    } else {
      for (let r = 0; r < outer; r++) {
        const o = r * row + start;
        const k0 = r * run;
        for (let k = 0; k < run; k++) dst[o + k] = src[k0 + k];
      }
    }
    start += run;
  });
  return out;
}

/**
 * MaxPoolGrad computed in JavaScript on views of the heap. The backend's own kernel
 * drops the gradient of inputs whose window is cut by a 'same' border (found against
 * finite differences; the cpu backend and TensorFlow are right). The maximum of each
 * window goes to its first largest input, as in TensorFlow.
 */
function maxPoolGradFromHeap(backend: WasmBackendLike, dy: TensorInfo, x: TensorInfo, info: tf.backend_util.Conv2DInfo): TensorInfo {
  const out = backend.makeOutput([...x.shape], 'float32');
  const xs = backend.typedArrayFromHeap(x);
  const dys = backend.typedArrayFromHeap(dy);
  const dx = backend.typedArrayFromHeap(out);
  dx.fill(0);
  const stride1 = info.strideHeight === 1 && info.strideWidth === 1 && info.dilationHeight === 1 && info.dilationWidth === 1;
  if (separablePools && stride1 && (info.padInfo.type === 'SAME' || info.padInfo.type === 'VALID')) {
    maxPoolGradStride1(xs, dys, dx, info);
    return out;
  }
  const { batchSize, inHeight, inWidth, inChannels: ch, outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const { effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const { top, left } = info.padInfo;
  for (let b = 0; b < batchSize; b++) {
    const xb = b * inHeight * inWidth * ch;
    for (let oh = 0; oh < outHeight; oh++) {
      const h0 = oh * strideHeight - top;
      for (let ow = 0; ow < outWidth; ow++) {
        const w0 = ow * strideWidth - left;
        const o = ((b * outHeight + oh) * outWidth + ow) * ch;
        for (let c = 0; c < ch; c++) {
          let best = -Infinity;
          let at = -1;
          for (let i = 0; i < fh; i += dilationHeight) {
            const h = h0 + i;
            if (h < 0 || h >= inHeight) continue;
            for (let j = 0; j < fw; j += dilationWidth) {
              const w = w0 + j;
              if (w < 0 || w >= inWidth) continue;
              const k = xb + (h * inWidth + w) * ch + c;
              if (xs[k] > best || at < 0) {
                best = xs[k];
                at = k;
              }
            }
          }
          if (at >= 0) dx[at] += dys[o + c];
        }
      }
    }
  }
  return out;
}

/**
 * maxPoolGradFromHeap for stride 1 without dilation, in two separable passes: the
 * first largest input of each row segment of the window, then the first largest of
 * those down the window's rows. That is the window's first largest input in the
 * same row-major order as the loop above (ties go to the earlier row, then the
 * earlier column), at 6 comparisons instead of 9 for 3x3. About 2x faster on the
 * cells' 3x3 pools.
 */
let rowArgmax = new Int32Array(0);
function maxPoolGradStride1(
  xs: Float32Array | Int32Array | Uint8Array,
  dys: Float32Array | Int32Array | Uint8Array,
  dx: Float32Array | Int32Array | Uint8Array,
  info: tf.backend_util.Conv2DInfo,
): void {
  const { batchSize: b, inHeight: h, inWidth: w, inChannels: ch, outHeight, outWidth, filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  const rowLen = w * ch;
  if (rowArgmax.length < b * h * outWidth * ch) rowArgmax = new Int32Array(b * h * outWidth * ch);
  const at = rowArgmax;
  // at[(n, row, ow, c)]: index of the first largest x over columns ow - left .. ow - left + fw - 1 (clipped).
  for (let r = 0; r < b * h; r++) {
    const base = r * rowLen;
    const out = r * outWidth * ch;
    for (let ow = 0; ow < outWidth; ow++) {
      const ws = Math.max(0, ow - left);
      const we = Math.min(w, ow - left + fw);
      for (let c = 0; c < ch; c++) {
        let bi = base + ws * ch + c;
        let bv = xs[bi];
        for (let q = ws + 1; q < we; q++) {
          const k = base + q * ch + c;
          if (xs[k] > bv) {
            bv = xs[k];
            bi = k;
          }
        }
        at[out + ow * ch + c] = bi;
      }
    }
  }
  const outRow = outWidth * ch;
  for (let n = 0; n < b; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const hs = Math.max(0, oh - top);
      const he = Math.min(h, oh - top + fh);
      if (hs >= he) continue;
      const o = (n * outHeight + oh) * outRow;
      for (let i = 0; i < outRow; i++) {
        let bi = at[(n * h + hs) * outRow + i];
        let bv = xs[bi];
        for (let q = hs + 1; q < he; q++) {
          const k = at[(n * h + q) * outRow + i];
          if (xs[k] > bv) {
            bv = xs[k];
            bi = k;
          }
        }
        dx[bi] += dys[o + i];
      }
    }
  }
}

/**
 * The gradient of a nearest-neighbour resize by exactly 2 in height and width (the
 * network's upsampling; no aligned corners, no half-pixel centres), where input pixel
 * (i, j) was copied to (2i..2i+1, 2j..2j+1): each input gets the sum of its four
 * copies' gradients. The backend's kernel takes about 1 ms for 8x32x32x16.
 */
function resize2xGradFromHeap(backend: WasmBackendLike, dy: TensorInfo, images: TensorInfo): TensorInfo {
  const [b, h, w, c] = images.shape;
  const out = backend.makeOutput([...images.shape], 'float32');
  const g = backend.typedArrayFromHeap(dy);
  const dx = backend.typedArrayFromHeap(out);
  const row = 2 * w * c; // one row of dy
  let o = 0;
  for (let n = 0; n < b; n++) {
    for (let i = 0; i < h; i++) {
      const r0 = (n * 2 * h + 2 * i) * row;
      const r1 = r0 + row;
      for (let j = 0; j < w; j++) {
        const a = 2 * j * c;
        for (let k = 0; k < c; k++, o++) dx[o] = g[r0 + a + k] + g[r0 + a + c + k] + g[r1 + a + k] + g[r1 + a + c + k];
      }
    }
  }
  return out;
}

/** Whether the faster paths of the gradient kernels above run (setWasmTuning). */
let separablePools = true;

let fixed = false;

/** Corrections of wrong wasm kernels: always on (unlike the speed changes below). */
export function installWasmFixes(): void {
  if (fixed || !tf.getKernel('MaxPoolGrad', 'wasm')) return;
  fixed = true;
  swapKernel({
    kernelName: 'MaxPoolGrad',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo };
      const a = attrs as unknown as {
        filterSize: number | [number, number];
        strides: number | [number, number];
        pad: 'same' | 'valid' | number;
        dimRoundingMode?: 'floor' | 'round' | 'ceil';
      };
      const info = tf.backend_util.computePool2DInfo(input.shape as [number, number, number, number], a.filterSize, a.strides, 1, a.pad, a.dimRoundingMode);
      return maxPoolGradFromHeap(backend as unknown as WasmBackendLike, dy, input, info);
    },
  });
}

let installed = false;
const originals: { kernels: KernelConfig[]; gradients: GradConfig[] } = { kernels: [], gradients: [] };
const replacements: { kernels: KernelConfig[]; gradients: GradConfig[] } = { kernels: [], gradients: [] };

/** Records wasm's kernel `name` and ours in its place (made from the original, which it may call). */
function replaceKernel(name: string, make: (original: KernelConfig) => KernelConfig['kernelFunc']): void {
  const original = tf.getKernel(name, 'wasm');
  if (!original) return;
  originals.kernels.push(original);
  replacements.kernels.push({ kernelName: name, backendName: 'wasm', kernelFunc: make(original) });
}

function swapKernel(config: KernelConfig): void {
  tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

/**
 * Turns the replacements below off (true: back on). For before/after measurements
 * in one process (test/bench/trainer-throughput.ts); training leaves them on.
 */
export function setWasmTuning(enabled: boolean): void {
  if (!installed) installWasmTuning();
  separablePools = enabled;
  const use = enabled ? replacements : originals;
  for (const k of use.kernels) swapKernel(k);
  for (const g of use.gradients) tf.registerGradient(g);
}

/**
 * Only the two gradient kernels (separable MaxPoolGrad, the 2x upsampling's gradient)
 * off or on, the rest of the tuning as it is; for before/after measurements.
 */
export function setWasmGradientKernels(enabled: boolean): void {
  if (!installed) installWasmTuning();
  separablePools = enabled;
  const i = replacements.kernels.findIndex((k) => k.kernelName === 'ResizeNearestNeighborGrad');
  if (i >= 0) swapKernel(enabled ? replacements.kernels[i] : originals.kernels[i]);
}

/**
 * - Identity shares the input's buffer (reference counted, as the cpu backend does)
 *   instead of copying it. The engine clones every tensor it keeps for a gradient,
 *   and on wasm each clone was a full copy: a third of all kernel calls of a search
 *   step and twice the activation memory. Nothing writes into a tensor's buffer in
 *   place (variables are reassigned, not overwritten), so sharing is safe.
 * - Slice and SplitV read their input through a view of the heap instead of a copy,
 *   Concat copies short runs without a view per run, and tall matrices are
 *   transposed in tiles.
 * - MaxPoolGrad (stride 1, undilated) takes the maximum in two separable passes, and
 *   the gradient of a 2x nearest-neighbour upsampling sums the four copies in one
 *   pass over the heap.
 * - The gradients of a 2-D matMul use explicit transposes: the wasm BatchMatMul takes
 *   a slow generic path when an operand is transposed, ~4x slower than transposing
 *   first and multiplying with XNNPACK.
 */
export function installWasmTuning(): void {
  if (installed) return;
  installed = true;
  const heap = (args: { backend: unknown }) => args.backend as WasmBackendLike;
  replaceKernel('Slice', (slice) => (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string') return slice.kernelFunc(args);
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.Tensor, args.attrs!.begin as number[], args.attrs!.size as number[]);
    return sliceFromHeap(heap(args), x, begin, size);
  });
  replaceKernel('SplitV', (splitV) => (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string') return splitV.kernelFunc(args);
    const axis = tf.util.parseAxisParam(args.attrs!.axis as number, x.shape)[0];
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, args.attrs!.numOrSizeSplits as number[] | number, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    const size = [...x.shape];
    return sizes.map((s) => {
      size[axis] = s;
      const piece = sliceFromHeap(heap(args), x, begin, size);
      begin[axis] += s;
      return piece;
    });
  });
  replaceKernel('Concat', (concat) => (args) => {
    const xs = (args.inputs as unknown as TensorInfo[]).filter((x) => x.shape.reduce((a, b) => a * b, 1) > 0);
    if (xs.length < 2 || xs[0].dtype === 'string' || xs.some((x) => x.dtype !== xs[0].dtype)) return concat.kernelFunc(args);
    const axis = tf.util.parseAxisParam(args.attrs!.axis as number, xs[0].shape)[0];
    tf.backend_util.assertParamsConsistent(
      xs.map((x) => x.shape),
      axis,
    );
    return concatFromHeap(heap(args), xs, axis);
  });
  replaceKernel('Transpose', (transpose) => (args) => {
    const x = args.inputs.x as TensorInfo;
    const perm = args.attrs!.perm as number[];
    const g = x.dtype === 'string' ? undefined : swappedGroups(x.shape, perm);
    if (g?.[3] !== 1 || g[1] <= 64 || g[2] < 8) return transpose.kernelFunc(args);
    return transposeTallOnHeap(
      heap(args),
      x,
      perm.map((p) => x.shape[p]),
      g[0],
      g[1],
      g[2],
    );
  });
  replaceKernel('Identity', () => ({ inputs, backend }) => {
    const x = inputs.x as TensorInfo;
    (backend as unknown as WasmBackendLike).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
  replaceKernel('ResizeNearestNeighborGrad', (resizeGrad) => (args) => {
    const { images, dy } = args.inputs as { images: TensorInfo; dy: TensorInfo };
    const { alignCorners, halfPixelCenters } = args.attrs as { alignCorners?: boolean; halfPixelCenters?: boolean };
    const doubled = dy.shape[1] === 2 * images.shape[1] && dy.shape[2] === 2 * images.shape[2] && dy.shape[3] === images.shape[3];
    if (alignCorners || halfPixelCenters || !doubled || dy.dtype !== 'float32') return resizeGrad.kernelFunc(args);
    return resize2xGradFromHeap(heap(args), dy, images);
  });
  const matMul = tf.getGradient('BatchMatMul');
  const grad: GradConfig = {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved;
      if (a.rank !== 2 || b.rank !== 2 || attrs.transposeA || attrs.transposeB) return matMul.gradFunc(dy, saved, attrs);
      const d = dy as tf.Tensor2D;
      // Forward: Y [P, S] = A [P, Q] @ B [Q, S]. Measured on wasm: the XNNPACK product
      // after an explicit transpose wins, except where the transpose produces a short
      // last axis for little work; there the direct transposed product is cheaper.
      const [p, q] = (a as tf.Tensor2D).shape;
      const sCols = (b as tf.Tensor2D).shape[1];
      const directA = p <= 4 || (q === 1 && p <= 16); // dA = dY @ B^T
      const directB = sCols === 1 || (q === 1 && sCols <= 4); // dB = A^T @ dY
      return {
        a: () => (directA ? tf.matMul(d, b as tf.Tensor2D, false, true) : tf.matMul(d, tf.transpose(b as tf.Tensor2D))),
        b: () => (directB ? tf.matMul(a as tf.Tensor2D, d, true, false) : tf.matMul(tf.transpose(a as tf.Tensor2D), d)),
      };
    },
  };
  originals.gradients.push(matMul);
  replacements.gradients.push(grad);
  for (const k of replacements.kernels) swapKernel(k);
  for (const g of replacements.gradients) tf.registerGradient(g);
}
