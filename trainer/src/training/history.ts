// Per-epoch history files (JSON lines). On resume the history is cut back to the
// epochs the checkpoint holds, so an epoch that is redone is not recorded twice.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../util/atomic.ts';

export function appendHistory(path: string, record: { epoch: number } & Record<string, unknown>): void {
  mkdirSync(dirname(path), { recursive: true });
  appendFileSync(path, `${JSON.stringify(record)}\n`);
}

/** Reads all complete lines of a history file (a torn last line is ignored). */
export function readHistory<T extends { epoch: number }>(path: string): T[] {
  if (!existsSync(path)) return [];
  const out: T[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      break; // a line torn by a kill; everything after it is from no finished epoch
    }
  }
  return out;
}

/** Keeps only the records of epochs 1 .. lastEpoch. */
export function truncateHistory(path: string, lastEpoch: number): void {
  if (!existsSync(path)) return;
  const kept = readHistory(path).filter((r) => r.epoch <= lastEpoch);
  writeFileAtomic(path, kept.map((r) => `${JSON.stringify(r)}\n`).join(''));
}
