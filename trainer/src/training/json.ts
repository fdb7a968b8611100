// Reading the JSON files one phase leaves for the next, with errors that say which
// file and what to do.
import { existsSync, readFileSync } from 'node:fs';
import { badInput } from '../util/bad-input.ts';

/** Reads a JSON file; a missing or broken file is bad input (exit status 2). */
export function readJsonFile<T>(path: string, what: string): T {
  if (!existsSync(path)) throw badInput('file', `${path} not found (${what})`, { file: path });
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw badInput('file', `${path} is not valid JSON (${what}): ${(e as Error).message}`, { file: path });
  }
}
