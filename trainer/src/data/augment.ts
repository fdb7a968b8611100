// Augmentation of training slices: random flips, 90-degree rotations (the same
// geometric transform on image and label) and an intensity scale (image only).

export interface AugmentOptions {
  flip: boolean;
  rotate90: boolean;
  intensityScale: number;
}

/**
 * Augments one square slice in place (image: size*size*channels floats, NHWC;
 * labels: size*size). `scratch` buffers avoid allocation per slice.
 */
export function augmentSlice(image: Float32Array, labels: Int32Array, size: number, channels: number, opts: AugmentOptions, random: () => number): void {
  const flipH = opts.flip && random() < 0.5;
  const flipV = opts.flip && random() < 0.5;
  const rot = opts.rotate90 ? Math.floor(random() * 4) : 0;
  const scale = opts.intensityScale > 0 ? 1 + opts.intensityScale * (2 * random() - 1) : 1;
  if (flipH || flipV || rot !== 0) {
    const img = Float32Array.from(image);
    const lbl = Int32Array.from(labels);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        // Source pixel of destination (y, x): undo the rotation, then the flips.
        let sy = y;
        let sx = x;
        for (let r = 0; r < rot; r++) {
          const t = sy;
          sy = size - 1 - sx;
          sx = t;
        }
        if (flipV) sy = size - 1 - sy;
        if (flipH) sx = size - 1 - sx;
        const d = y * size + x;
        const s = sy * size + sx;
        labels[d] = lbl[s];
        for (let c = 0; c < channels; c++) image[d * channels + c] = img[s * channels + c];
      }
    }
  }
  if (scale !== 1) for (let i = 0; i < image.length; i++) image[i] *= scale;
}
