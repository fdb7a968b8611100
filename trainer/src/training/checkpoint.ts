// Atomic checkpoints: a directory with state.json (the commit point, written to a
// temporary file and renamed) and one binary file of named float32 tensors that
// state.json points to. A kill at any moment leaves either the previous or the new
// checkpoint, never a mix.
import { CHECKPOINT_STATE_FILE } from '../../../contract/src/index.ts';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeDurable, writeFileAtomic } from '../util/atomic.ts';
import * as tf from '@tensorflow/tfjs-core';

export interface StoredTensor {
  shape: number[];
  values: Float32Array;
}

interface TensorEntry {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

interface StateFile<S> {
  format: 'iacnas-checkpoint/1';
  file: string;
  tensors: TensorEntry[];
  state: S;
}

/** Saves `state` and `tensors` as the checkpoint in `dir`, replacing the previous one atomically. */
export async function writeCheckpoint<S>(dir: string, state: S, tensors: ReadonlyMap<string, tf.Tensor>): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const entries: TensorEntry[] = [];
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const values = (await t.data()) as Float32Array;
    const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
    entries.push({ name, shape: t.shape.slice(), offset, length: f32.length });
    chunks.push(new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength));
    offset += f32.byteLength;
  }
  const file = `tensors-${Date.now()}-${process.pid}.bin`;
  writeDurable(join(dir, file), chunks);
  const body: StateFile<S> = { format: 'iacnas-checkpoint/1', file, tensors: entries, state };
  writeFileAtomic(join(dir, CHECKPOINT_STATE_FILE), JSON.stringify(body));
  // Only now is the old tensor file unreferenced.
  for (const f of readdirSync(dir)) {
    if (f !== file && (f.startsWith('tensors-') || f.includes('.tmp-'))) rmSync(join(dir, f), { force: true });
  }
}

/** Reads the checkpoint in `dir`; null when there is none yet. */
export function readCheckpoint<S>(dir: string): { state: S; tensors: Map<string, StoredTensor> } | null {
  const path = join(dir, CHECKPOINT_STATE_FILE);
  if (!existsSync(path)) return null;
  const body = JSON.parse(readFileSync(path, 'utf8')) as StateFile<S>;
  if (body.format !== 'iacnas-checkpoint/1') throw new Error(`${path}: unknown checkpoint format ${String(body.format)}`);
  const buf = readFileSync(join(dir, body.file));
  const tensors = new Map<string, StoredTensor>();
  for (const e of body.tensors) {
    const bytes = buf.subarray(e.offset, e.offset + e.length * 4);
    if (bytes.byteLength !== e.length * 4) throw new Error(`${join(dir, body.file)}: truncated at tensor ${e.name}`);
    // Copy: the Buffer's byte offset need not be 4-aligned.
    const values = new Float32Array(e.length);
    new Uint8Array(values.buffer).set(bytes);
    tensors.set(e.name, { shape: e.shape, values });
  }
  return { state: body.state, tensors };
}

/** Assigns stored values to variables by name; throws naming what is missing or misshapen. */
export function restoreVariables(stored: ReadonlyMap<string, StoredTensor>, vars: ReadonlyMap<string, tf.Variable>, where: string): void {
  for (const [name, v] of vars) {
    const s = stored.get(name);
    if (!s) throw new Error(`${where}: checkpoint has no tensor '${name}' (was it written by another configuration?)`);
    if (s.shape.join('x') !== v.shape.join('x')) {
      throw new Error(`${where}: tensor '${name}' has shape [${s.shape}] in the checkpoint but [${v.shape}] in the model`);
    }
    tf.tidy(() => v.assign(tf.tensor(s.values, v.shape, 'float32')));
  }
}
