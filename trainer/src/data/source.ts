// SliceSource over patients whose slices are produced on demand: a patient's volume
// is read (or generated), normalised and sliced the first time one of its slices is
// asked for, and the resulting slice stack is kept in a least-recently-used cache
// bounded in bytes (dataset.cacheMB). Memory therefore stays under the cache bound
// plus the volumes being decoded at that moment, whatever the dataset size.
import type { PatientInfo, SliceBatch, SliceRef, SliceSource } from './types.ts';
import { augmentSlice, type AugmentOptions } from './augment.ts';
import { type Axis, type Modality, type SliceStack, normalizeVolume, sliceVolume } from './slicing.ts';
import { mixSeed, mulberry32 } from '../util/random.ts';

/** A case before slicing: what its header says. */
export interface CaseInfo {
  id: string;
  shape: [number, number, number];
  spacing: [number, number, number];
}

/** A decoded case: raw intensities and class indices, i fastest. */
export interface CaseVolume {
  image: Float32Array;
  labels: Uint8Array;
}

/** Where volumes come from (files or the phantom generator). */
export interface CaseReader {
  readonly cases: readonly CaseInfo[];
  readonly modality: Modality;
  read(id: string): Promise<CaseVolume>;
}

/** Least-recently-used cache of patients' slice stacks, bounded in bytes. */
export class SliceStackCache {
  readonly maxBytes: number;
  #bytes = 0;
  #entries = new Map<string, SliceStack>();
  #pending = new Map<string, Promise<SliceStack>>();
  #load: (id: string) => Promise<SliceStack>;
  /** Number of patients processed (cache misses); for tests and diagnostics. */
  loads = 0;

  constructor(maxBytes: number, load: (id: string) => Promise<SliceStack>) {
    this.maxBytes = maxBytes;
    this.#load = load;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get(id: string): Promise<SliceStack> {
    const hit = this.#entries.get(id);
    if (hit) {
      // Re-insert: Map iteration order is the recency order.
      this.#entries.delete(id);
      this.#entries.set(id, hit);
      return Promise.resolve(hit);
    }
    const pending = this.#pending.get(id);
    if (pending) return pending;
    this.loads++;
    const p = this.#load(id).then(
      (stack) => {
        this.#pending.delete(id);
        this.#insert(id, stack);
        return stack;
      },
      (err: unknown) => {
        this.#pending.delete(id);
        throw err;
      },
    );
    this.#pending.set(id, p);
    return p;
  }

  #insert(id: string, stack: SliceStack): void {
    const size = stack.images.byteLength + stack.labels.byteLength;
    if (size > this.maxBytes) return; // used once by the caller, never kept
    while (this.#bytes + size > this.maxBytes && this.#entries.size > 0) {
      const [oldest, s] = this.#entries.entries().next().value as [string, SliceStack];
      this.#entries.delete(oldest);
      this.#bytes -= s.images.byteLength + s.labels.byteLength;
    }
    this.#entries.set(id, stack);
    this.#bytes += size;
  }
}

/** Builds the processing function of a cache: read, normalise, slice, resize. */
export function stackLoader(reader: CaseReader, axis: Map<string, Axis>, size: number): (id: string) => Promise<SliceStack> {
  const infos = new Map(reader.cases.map((c) => [c.id, c]));
  return async (id) => {
    const info = infos.get(id);
    if (!info) throw new Error(`unknown case ${id}`);
    const vol = await reader.read(id);
    normalizeVolume(vol.image, reader.modality);
    return sliceVolume(vol.image, vol.labels, info.shape, axis.get(id) ?? 2, size);
  };
}

export interface SourcePatient extends Omit<PatientInfo, 'slices'> {
  /** Number of slices across the slicing axis. */
  count: number;
}

export interface SourceOptions {
  patients: SourcePatient[];
  cache: SliceStackCache;
  sliceSize: number;
  augment: AugmentOptions;
  /** Seed of the default augmentation random source. */
  seed: number;
}

/** The slices of one split, in patient order then slicing-axis order. */
export class PatientSliceSource implements SliceSource {
  readonly patients: readonly PatientInfo[];
  readonly length: number;
  #refs: { patient: number; index: number }[] = [];
  #cache: SliceStackCache;
  #size: number;
  #augment: AugmentOptions;
  #random: () => number;

  constructor(opts: SourceOptions) {
    this.#cache = opts.cache;
    this.#size = opts.sliceSize;
    this.#augment = opts.augment;
    this.#random = mulberry32(mixSeed('augment', opts.seed));
    let next = 0;
    const patients: PatientInfo[] = [];
    opts.patients.forEach((p, pi) => {
      const slices: number[] = [];
      for (let s = 0; s < p.count; s++) {
        slices.push(next++);
        this.#refs.push({ patient: pi, index: s });
      }
      patients.push({ id: p.id, spacing: p.spacing, shape: p.shape, slices });
    });
    this.patients = patients;
    this.length = next;
  }

  ref(i: number): SliceRef {
    const r = this.#refs[i];
    if (!r) throw new RangeError(`slice index ${i} out of range 0..${this.length - 1}`);
    return { patient: this.patients[r.patient].id, index: r.index };
  }

  batch(indices: readonly number[], opts: { augment?: boolean; random?: () => number } = {}): Promise<SliceBatch> {
    const p = this.#batch(indices, opts);
    // The training loops ask for batch i + 1 while batch i trains and await it only
    // later. A failed load (a bad file: DataError) must reach them as a rejection, so
    // the phase exits with status 2 naming the file, instead of first crashing the
    // process as an unhandled rejection. The caller still sees the error.
    p.catch(() => undefined);
    return p;
  }

  async #batch(indices: readonly number[], opts: { augment?: boolean; random?: () => number }): Promise<SliceBatch> {
    const plane = this.#size * this.#size;
    const n = indices.length;
    const images = new Float32Array(n * plane);
    const labels = new Int32Array(n * plane);
    const refs = indices.map((i) => {
      const r = this.#refs[i];
      if (!r) throw new RangeError(`slice index ${i} out of range 0..${this.length - 1}`);
      return r;
    });
    // Each patient is loaded once per batch; patients are processed one at a time so
    // a batch never holds more than one decoding volume beyond the cache.
    const stacks = new Map<number, SliceStack>();
    for (const r of refs) {
      if (!stacks.has(r.patient)) stacks.set(r.patient, await this.#cache.get(this.patients[r.patient].id));
    }
    const random = opts.random ?? this.#random;
    refs.forEach((r, b) => {
      const stack = stacks.get(r.patient)!;
      const img = images.subarray(b * plane, (b + 1) * plane);
      const lbl = labels.subarray(b * plane, (b + 1) * plane);
      img.set(stack.images.subarray(r.index * plane, (r.index + 1) * plane));
      const src = stack.labels.subarray(r.index * plane, (r.index + 1) * plane);
      for (let k = 0; k < plane; k++) lbl[k] = src[k];
      if (opts.augment) augmentSlice(img, lbl, this.#size, 1, this.#augment, random);
    });
    return { images, labels, n };
  }
}
