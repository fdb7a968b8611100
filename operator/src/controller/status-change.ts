// Which status changes are written at once and which may wait. A transition — a new
// phase, a condition that changes status or reason, an attempt created, finished or
// counted, a result — is written by the reconcile that sees it. Everything else
// (messages, progress, the running GPU-seconds and cost) is news, written at most once
// per --progress-interval per search, together with whatever came since: a phase pod's
// start and its progress reports would otherwise cost a status write each.
import { jsonEqual } from '../k8s/merge-patch.ts';

type Json = Record<string, unknown>;

const STAGE_FIELDS = ['attempts', 'failures', 'preemptions', 'pod', 'succeeded', 'startTime', 'endTime'] as const;
const TOP_FIELDS = ['phase', 'observedGeneration', 'startTime', 'completionTime', 'activeSeconds', 'searchResult', 'genotype', 'results'] as const;

const obj = (v: unknown): Json => (v && typeof v === 'object' ? (v as Json) : {});

function conditionKeys(status: Json): string[] {
  const list = Array.isArray(status.conditions) ? (status.conditions as Json[]) : [];
  return list.map((c) => `${String(c.type)}=${String(c.status)}`).sort();
}

/** True when `next` differs from `old` by a transition (see the file comment). */
export function isTransition(old: Json, next: Json): boolean {
  for (const f of TOP_FIELDS) if (!jsonEqual(old[f] ?? null, next[f] ?? null)) return true;
  if (!jsonEqual(conditionKeys(old), conditionKeys(next))) return true;
  const oldPhases = obj(old.phases);
  const nextPhases = obj(next.phases);
  for (const stage of new Set([...Object.keys(oldPhases), ...Object.keys(nextPhases)])) {
    const a = obj(oldPhases[stage]);
    const b = obj(nextPhases[stage]);
    if (!(stage in oldPhases) || !(stage in nextPhases)) return true;
    for (const f of STAGE_FIELDS) if ((a[f] ?? null) !== (b[f] ?? null)) return true;
    const ha = Array.isArray(a.history) ? a.history.length : 0;
    const hb = Array.isArray(b.history) ? b.history.length : 0;
    if (ha !== hb) return true;
  }
  return false;
}
