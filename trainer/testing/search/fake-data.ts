// A small in-memory SliceDataset for unit tests of the loops: bright disks on
// noise, two classes, a few slices per patient, deterministic for a seed.
import { mixSeed, mulberry32 } from '../../src/util/random.ts';
import type { PatientInfo, SliceBatch, SliceDataset, SliceRef, SliceSource } from '../../src/data/types.ts';

class MemorySource implements SliceSource {
  readonly patients: PatientInfo[];
  private readonly images: Float32Array[];
  private readonly labels: Int32Array[];
  private readonly refs: SliceRef[];
  private readonly size: number;

  constructor(size: number, ids: string[], slicesPerPatient: number, seed: number) {
    this.size = size;
    this.patients = [];
    this.images = [];
    this.labels = [];
    this.refs = [];
    for (const id of ids) {
      const slices: number[] = [];
      for (let k = 0; k < slicesPerPatient; k++) {
        const rand = mulberry32(mixSeed(seed, id, k));
        const img = new Float32Array(size * size);
        const lab = new Int32Array(size * size);
        const cx = size * (0.3 + 0.4 * rand());
        const cy = size * (0.3 + 0.4 * rand());
        const r = size * (0.15 + 0.1 * rand());
        for (let y = 0; y < size; y++) {
          for (let x = 0; x < size; x++) {
            const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
            lab[y * size + x] = inside ? 1 : 0;
            img[y * size + x] = (inside ? 1 : -0.5) + 0.3 * (rand() - 0.5);
          }
        }
        slices.push(this.images.length);
        this.images.push(img);
        this.labels.push(lab);
        this.refs.push({ patient: id, index: k });
      }
      this.patients.push({ id, slices, spacing: [1, 1, 1], shape: [size, size, slicesPerPatient] });
    }
  }

  get length(): number {
    return this.images.length;
  }

  ref(i: number): SliceRef {
    return this.refs[i];
  }

  async batch(indices: readonly number[], opts: { augment?: boolean; random?: () => number } = {}): Promise<SliceBatch> {
    const s = this.size;
    const images = new Float32Array(indices.length * s * s);
    const labels = new Int32Array(indices.length * s * s);
    indices.forEach((idx, b) => {
      const flip = opts.augment && opts.random ? opts.random() < 0.5 : false;
      for (let y = 0; y < s; y++) {
        for (let x = 0; x < s; x++) {
          const from = y * s + (flip ? s - 1 - x : x);
          images[b * s * s + y * s + x] = this.images[idx][from];
          labels[b * s * s + y * s + x] = this.labels[idx][from];
        }
      }
    });
    return { images, labels, n: indices.length };
  }
}

export function fakeDataset(opts: { size?: number; patients?: number; slicesPerPatient?: number; seed?: number } = {}): SliceDataset {
  const size = opts.size ?? 16;
  const n = opts.patients ?? 6;
  const per = opts.slicesPerPatient ?? 4;
  const seed = opts.seed ?? 0;
  const ids = Array.from({ length: n }, (_, i) => `fake_${String(i).padStart(3, '0')}`);
  const nVal = Math.max(1, Math.floor(n / 6));
  const nTest = Math.max(1, Math.floor(n / 6));
  const nTrain = n - nVal - nTest;
  return {
    name: 'fake',
    numClasses: 2,
    classNames: ['background', 'disk'],
    sliceSize: size,
    channels: 1,
    train: new MemorySource(size, ids.slice(0, nTrain), per, seed),
    val: new MemorySource(size, ids.slice(nTrain, nTrain + nVal), per, seed),
    test: new MemorySource(size, ids.slice(nTrain + nVal), per, seed),
  };
}
