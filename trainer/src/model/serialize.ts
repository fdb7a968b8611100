// Named-tensor checkpoints: a JSON manifest plus one binary file in a directory.
//
// Written so that a kill at any moment leaves either the previous or the new
// checkpoint, never a torn one: the binary goes to a new file named by its content
// hash, then the manifest that names it replaces the old manifest by rename (the
// commit point); only then are superseded binaries removed.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Network } from './api.ts';
import { writeFileAtomic } from '../util/atomic.ts';

export const MANIFEST = 'weights.json';
const FORMAT = 'iacnas-tensors/1';

interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  /** Offset in bytes into the binary file. */
  offset: number;
}

interface Manifest {
  format: string;
  data: string;
  bytes: number;
  sha256: string;
  tensors: ManifestEntry[];
  meta?: unknown;
}

function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Directories cannot be opened for fsync on every platform; rename is still atomic.
  }
}

/** Saves named tensors to `dir` atomically. `meta` is stored in the manifest as is (JSON). */
export function saveNamedTensors(dir: string, tensors: ReadonlyMap<string, tf.Tensor>, meta?: unknown): void {
  mkdirSync(dir, { recursive: true });
  const entries: ManifestEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new Error(`cannot save tensor ${name}: dtype ${t.dtype} (float32 and int32 only)`);
    const values = t.dataSync() as Float32Array | Int32Array;
    const bytes = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    entries.push({ name, shape: [...t.shape], dtype: t.dtype, offset });
    chunks.push(bytes);
    offset += bytes.length;
  }
  const blob = Buffer.concat(chunks);
  const sha256 = createHash('sha256').update(blob).digest('hex');
  const data = `weights.${sha256.slice(0, 16)}.bin`;
  const dataPath = path.join(dir, data);
  if (!existsSync(dataPath)) {
    writeFileAtomic(dataPath, blob);
  }
  const manifest: Manifest = { format: FORMAT, data, bytes: blob.length, sha256, tensors: entries, ...(meta === undefined ? {} : { meta }) };
  const manifestPath = path.join(dir, MANIFEST);
  writeFileAtomic(manifestPath, JSON.stringify(manifest));
  syncDir(dir);
  for (const f of readdirSync(dir)) {
    if (f !== data && /^weights\.[0-9a-f]{16}\.bin(\.tmp-\d+)?$/.test(f)) {
      try {
        unlinkSync(path.join(dir, f));
      } catch {
        // Another writer's file or already gone: harmless.
      }
    }
  }
}

/** Loads the tensors of a checkpoint written by saveNamedTensors; the caller disposes them. */
export function loadNamedTensors(dir: string): { tensors: Map<string, tf.Tensor>; meta?: unknown } {
  const manifestPath = path.join(dir, MANIFEST);
  if (!existsSync(manifestPath)) throw new Error(`no checkpoint in ${dir}: ${MANIFEST} is missing`);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  } catch (e) {
    throw new Error(`${manifestPath} is not valid JSON: ${(e as Error).message}`);
  }
  if (manifest.format !== FORMAT) throw new Error(`${manifestPath}: unknown format ${JSON.stringify(manifest.format)} (expected ${FORMAT})`);
  const dataPath = path.join(dir, manifest.data);
  if (!existsSync(dataPath)) throw new Error(`${manifestPath} names ${manifest.data}, which is missing`);
  const blob = readFileSync(dataPath);
  if (blob.length !== manifest.bytes) throw new Error(`${dataPath} has ${blob.length} bytes, the manifest says ${manifest.bytes}`);
  const sha = createHash('sha256').update(blob).digest('hex');
  if (sha !== manifest.sha256) throw new Error(`${dataPath} is corrupt: its SHA-256 does not match the manifest`);
  const tensors = new Map<string, tf.Tensor>();
  for (const e of manifest.tensors) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    const buf = blob.buffer.slice(blob.byteOffset + e.offset, blob.byteOffset + e.offset + 4 * n);
    const values = e.dtype === 'int32' ? new Int32Array(buf) : new Float32Array(buf);
    tensors.set(e.name, tf.tensor(values, e.shape, e.dtype));
  }
  return { tensors, meta: manifest.meta };
}

export interface LoadReport {
  loaded: string[];
  /** Network weights that the checkpoint does not have (kept as initialised). */
  missing: string[];
  /** Checkpoint tensors that the network does not have (ignored). */
  unexpected: string[];
}

/** Saves all trainable weights of a network (by their stable names). */
export function saveWeights(network: Network, dir: string, meta?: unknown): void {
  saveNamedTensors(dir, network.namedWeights(), meta);
}

/**
 * Loads weights by name. Strict (default): the names and shapes must match exactly.
 * `strict: false` loads the weights both have (e.g. a plain U-Net's weights into a
 * supernet, or a supernet's into a discrete network) and reports the rest; shapes of
 * common names must still match.
 */
export function loadWeights(network: Network, dir: string, opts: { strict?: boolean } = {}): LoadReport {
  const strict = opts.strict ?? true;
  const { tensors } = loadNamedTensors(dir);
  try {
    const weights = network.namedWeights();
    const missing = [...weights.keys()].filter((n) => !tensors.has(n));
    const unexpected = [...tensors.keys()].filter((n) => !weights.has(n));
    const shapes: string[] = [];
    for (const [name, t] of tensors) {
      const v = weights.get(name);
      if (v && (v.shape.length !== t.shape.length || v.shape.some((d, i) => d !== t.shape[i]))) {
        shapes.push(`${name}: checkpoint [${t.shape}] vs network [${v.shape}]`);
      }
    }
    const problems: string[] = [];
    if (shapes.length > 0) problems.push(`shapes differ:\n  ${shapes.join('\n  ')}`);
    if (strict && missing.length > 0) problems.push(`missing from the checkpoint: ${missing.join(', ')}`);
    if (strict && unexpected.length > 0) problems.push(`not in the network: ${unexpected.join(', ')}`);
    if (problems.length > 0) {
      throw new Error(
        `cannot load weights from ${dir} (was it saved from a network with the same backbone.depth, backbone.baseFilters, cells and classes?):\n${problems.join('\n')}`,
      );
    }
    const loaded: string[] = [];
    for (const [name, t] of tensors) {
      const v = weights.get(name);
      if (v) {
        v.assign(t);
        loaded.push(name);
      }
    }
    return { loaded, missing, unexpected };
  } finally {
    tf.dispose([...tensors.values()]);
  }
}
