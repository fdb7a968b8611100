// Turning a 3-D volume into normalised, resized 2-D slices: the slicing axis,
// per-volume intensity normalisation, and resampling (linear for images, nearest for
// labels). Pure functions on typed arrays; volumes are stored i fastest, then j, then k.

export type Axis = 0 | 1 | 2;
export type Modality = 'MRI' | 'CT';

/**
 * The axis slices are taken across. 'auto' is the through-plane axis: the one with
 * the largest voxel spacing; on a tie the last of the tied axes (NIfTI volumes are
 * usually stored with the slice axis last).
 */
export function chooseAxis(axis: 'auto' | 'i' | 'j' | 'k', spacing: readonly number[]): Axis {
  if (axis === 'i') return 0;
  if (axis === 'j') return 1;
  if (axis === 'k') return 2;
  let best: Axis = 2;
  for (const a of [1, 0] as const) {
    if (spacing[a] > spacing[best] * (1 + 1e-6)) best = a;
  }
  return best;
}

/** The two in-plane axes of a slice across `axis`: [row axis, column axis]. */
export function planeAxes(axis: Axis): [Axis, Axis] {
  return axis === 0 ? [1, 2] : axis === 1 ? [0, 2] : [0, 1];
}

/**
 * Spacing in millimetres of the slices stacked back into a volume after resizing to
 * size x size: [row, column, slice].
 */
export function slicedSpacing(shape: readonly number[], spacing: readonly number[], axis: Axis, size: number): [number, number, number] {
  const [r, c] = planeAxes(axis);
  return [(spacing[r] * shape[r]) / size, (spacing[c] * shape[c]) / size, spacing[axis]];
}

/** Extracts slice `s` across `axis` as a rows x cols array (row-major). */
export function extractSlice<T extends Float32Array | Uint8Array>(vol: T, shape: readonly number[], axis: Axis, s: number, out: T): T {
  const [nx, ny] = shape;
  const [ra, ca] = planeAxes(axis);
  const rows = shape[ra];
  const cols = shape[ca];
  const stride = [1, nx, nx * ny];
  const base = s * stride[axis];
  const rs = stride[ra];
  const cs = stride[ca];
  for (let r = 0; r < rows; r++) {
    const rowBase = base + r * rs;
    for (let c = 0; c < cols; c++) out[r * cols + c] = vol[rowBase + c * cs];
  }
  return out;
}

/**
 * Bilinear resampling of a rows x cols map to outRows x outCols with pixel centres
 * aligned (align_corners = false, edges clamped). The forward resize of training
 * slices (resizeLinear) and the resize of predictions back to a scan's grid.
 */
export function resampleLinear(
  src: Float32Array,
  rows: number,
  cols: number,
  outRows: number,
  outCols: number,
  out = new Float32Array(outRows * outCols),
): Float32Array {
  const sy = rows / outRows;
  const sx = cols / outCols;
  for (let y = 0; y < outRows; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), rows - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, rows - 1);
    const wy = fy - y0;
    for (let x = 0; x < outCols; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), cols - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, cols - 1);
      const wx = fx - x0;
      const top = src[y0 * cols + x0] * (1 - wx) + src[y0 * cols + x1] * wx;
      const bottom = src[y1 * cols + x0] * (1 - wx) + src[y1 * cols + x1] * wx;
      out[y * outCols + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}

/** Bilinear resampling to size x size with pixel centres aligned (align_corners = false). */
export function resizeLinear(src: Float32Array, rows: number, cols: number, size: number, out = new Float32Array(size * size)): Float32Array {
  return resampleLinear(src, rows, cols, size, size, out);
}

/** Nearest-neighbour resampling (labels keep their values). */
export function resizeNearest(src: Uint8Array, rows: number, cols: number, size: number, out = new Uint8Array(size * size)): Uint8Array {
  const sy = rows / size;
  const sx = cols / size;
  for (let y = 0; y < size; y++) {
    const yy = Math.min(Math.floor((y + 0.5) * sy), rows - 1);
    for (let x = 0; x < size; x++) {
      const xx = Math.min(Math.floor((x + 0.5) * sx), cols - 1);
      out[y * size + x] = src[yy * cols + xx];
    }
  }
  return out;
}

/** The q-th quantile (0..1) of the values, by sorting a copy (linear interpolation). */
export function quantile(values: Float32Array, q: number): number {
  const sorted = Float32Array.from(values).sort();
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Normalises a volume in place. MRI: z-score. CT: clip to the 0.5-99.5 percentiles,
 * then z-score (nnU-Net's CT scheme, here per volume).
 */
export function normalizeVolume(data: Float32Array, modality: Modality): Float32Array {
  if (data.length === 0) return data;
  if (modality === 'CT') {
    const lo = quantile(data, 0.005);
    const hi = quantile(data, 0.995);
    for (let i = 0; i < data.length; i++) data[i] = Math.min(Math.max(data[i], lo), hi);
  }
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum += data[i];
  const mean = sum / data.length;
  let sq = 0;
  for (let i = 0; i < data.length; i++) sq += (data[i] - mean) ** 2;
  const std = Math.sqrt(sq / data.length);
  // A constant volume (std 0) becomes all zeros rather than NaN.
  const inv = std > 1e-8 ? 1 / std : 0;
  for (let i = 0; i < data.length; i++) data[i] = (data[i] - mean) * inv;
  return data;
}

/** A patient's slices after slicing, resizing and normalisation. */
export interface SliceStack {
  /** count * size * size normalised intensities. */
  images: Float32Array;
  /** count * size * size class indices. */
  labels: Uint8Array;
  count: number;
}

/**
 * Slices a normalised image volume and its label volume across `axis` and resizes
 * every slice to size x size.
 */
export function sliceVolume(image: Float32Array, labels: Uint8Array, shape: readonly number[], axis: Axis, size: number): SliceStack {
  const [ra, ca] = planeAxes(axis);
  const rows = shape[ra];
  const cols = shape[ca];
  const count = shape[axis];
  const plane = size * size;
  const images = new Float32Array(count * plane);
  const outLabels = new Uint8Array(count * plane);
  const imgSlice = new Float32Array(rows * cols);
  const lblSlice = new Uint8Array(rows * cols);
  for (let s = 0; s < count; s++) {
    extractSlice(image, shape, axis, s, imgSlice);
    extractSlice(labels, shape, axis, s, lblSlice);
    resizeLinear(imgSlice, rows, cols, size, images.subarray(s * plane, (s + 1) * plane));
    resizeNearest(lblSlice, rows, cols, size, outLabels.subarray(s * plane, (s + 1) * plane));
  }
  return { images, labels: outLabels, count };
}
