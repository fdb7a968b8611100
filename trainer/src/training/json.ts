// Reading the JSON files one phase leaves for the next, with errors that say which
// file and what to do.
import { existsSync, readFileSync } from 'node:fs';

/** Reads a JSON file; a missing or broken file is bad input (exit status 2). */
export function readJsonFile<T>(path: string, what: string): T {
  if (!existsSync(path)) throw Object.assign(new Error(`${path} not found (${what})`), { badInput: true });
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw Object.assign(new Error(`${path} is not valid JSON (${what}): ${(e as Error).message}`), { badInput: true });
  }
}
