// Files written so that a reader (or a restarted phase) sees the old content or the new,
// never a part: a temporary file, fsync, rename. Every file the trainer writes goes
// through here (checkpoints, histories cut back, weights, genotype, results, reports,
// label maps, ONNX models); no TensorFlow here.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

/** Writes `chunks` to `path` and flushes it to disk. */
export function writeDurable(path: string, chunks: readonly Uint8Array[]): void {
  const fd = openSync(path, 'w');
  try {
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += writeSync(fd, c, off);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a file atomically (temporary file, fsync, rename): readers see the old file or the new one, never a part. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeDurable(tmp, [typeof data === 'string' ? Buffer.from(data, 'utf8') : data]);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
