// Runs an Argo CD health check (deploy/argocd/health.lua for IACSearch, health-set.lua for
// IACSearchSet) on an object in a Lua 5.1 interpreter, the way Argo CD does: the object as
// the global `obj`, the script's return value read back.
import { join } from 'node:path';
import { repoRoot, run } from './tools.ts';

export const SEARCH_HEALTH = join(repoRoot, 'deploy/argocd/health.lua');
export const SET_HEALTH = join(repoRoot, 'deploy/argocd/health-set.lua');

/** JSON value -> Lua table constructor, as Argo CD hands the object to the script. */
export function toLua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return JSON.stringify(v); // JSON string escapes are valid Lua 5.1 escapes for this text
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `{${v.map(toLua).join(', ')}}`;
  return `{${Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `[${JSON.stringify(k)}] = ${toLua(x)}`)
    .join(', ')}}`;
}

export function argoHealth(lua: string, obj: unknown, script = SEARCH_HEALTH): { status: string; message: string } {
  const program = `obj = ${toLua(obj)}\nlocal hs = dofile(${JSON.stringify(script)})\nio.write(hs.status, "\\n", hs.message or "")`;
  const r = run(lua, ['-e', program]);
  if (r.status !== 0) throw new Error(`lua failed (${r.status}): ${r.stderr}`);
  const [status, ...message] = r.stdout.split('\n');
  return { status, message: message.join('\n') };
}
