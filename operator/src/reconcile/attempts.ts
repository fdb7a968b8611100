// Attempts: the search's pods observed as phase attempts, and their records in
// status.phases.<stage>.history (each finished attempt once, keyed by pod, so its
// GPU-seconds are never counted twice).
import type { AttemptRecord, Stage } from '../api/index.ts';
import { event, iso, namespaceOf, record, round, type Draft } from './draft.ts';
import { attemptGPUSeconds, observePod, type ObservedAttempt } from './observe.ts';
import { applyResult, describeResult } from './results.ts';
import type { KubeObject } from './types.ts';

export const isLive = (a: ObservedAttempt) => a.state === 'Waiting' || a.state === 'Running';
const isRecorded = (d: Draft, a: ObservedAttempt) => Boolean(d.status.phases?.[a.stage]?.history?.some((h) => h.pod === a.name));

/** The search's pods that are phase attempts, oldest attempt first. */
export function observeAttempts(pods: KubeObject[]): ObservedAttempt[] {
  return pods
    .map(observePod)
    .filter((a): a is ObservedAttempt => a !== undefined)
    .sort((a, b) => a.attempt - b.attempt);
}

/** Records every finished attempt once (keyed by pod): its outcome, counters and GPU-seconds. */
export function recordFinishedAttempts(d: Draft) {
  for (const a of d.attempts) {
    if (isLive(a)) continue;
    const r = record(d, a.stage);
    r.attempts = Math.max(r.attempts, a.attempt);
    r.history ??= [];
    const known = r.history.find((h) => h.pod === a.name);
    if (known) {
      // A pod stopped for a suspend that had in fact just finished its phase.
      if (known.outcome === 'Stopped' && a.state === 'Succeeded' && !r.succeeded) phaseSucceeded(d, a);
      continue;
    }
    const entry: AttemptRecord = {
      pod: a.name,
      outcome: a.state as AttemptRecord['outcome'],
      gpuSeconds: round(attemptGPUSeconds(a, d.now)),
      endTime: iso(a.finishedAt ?? d.now),
    };
    if (a.startedAt) entry.startTime = iso(a.startedAt);
    if (a.exitCode !== undefined) entry.exitCode = a.exitCode;
    if (a.reason) entry.reason = a.reason;
    r.history.push(entry);
    if (a.state === 'Failed') {
      r.failures += 1;
      r.message = `attempt ${a.attempt} failed: ${a.message ?? a.reason ?? 'unknown error'}`;
      event(d, 'Warning', 'AttemptFailed', `${a.stage} pod ${a.name} failed: ${a.message ?? a.reason ?? 'unknown error'}`);
    } else if (a.state === 'Disrupted') {
      r.preemptions += 1;
      r.message = `attempt ${a.attempt} disrupted (${a.reason ?? 'disruption'}); it resumes from its checkpoint without counting against backoffLimit`;
      event(d, 'Warning', 'AttemptDisrupted', `${a.stage} pod ${a.name} was disrupted (${a.reason ?? 'disruption'}): ${a.message ?? ''}`.trim());
    } else if (!r.succeeded) {
      phaseSucceeded(d, a);
    }
  }
}

/** The phase of a successful attempt is done: its record, its result in the status, its event. */
function phaseSucceeded(d: Draft, a: ObservedAttempt) {
  const r = record(d, a.stage);
  r.succeeded = true;
  r.endTime = iso(a.finishedAt ?? d.now);
  r.message = a.result?.message ?? `${a.stage} finished`;
  const known = r.history?.find((h) => h.pod === a.name);
  if (known) known.outcome = 'Succeeded';
  applyResult(d, a);
  if (d.input.settings.phaseEvents) event(d, 'Normal', 'PhaseSucceeded', `${a.stage} finished (pod ${a.name})${describeResult(a)}`);
}

/** Running (unrecorded) attempts' GPU-seconds up to now, by stage. */
export function runningGPUSeconds(d: Draft): Partial<Record<Stage, number>> {
  const out: Partial<Record<Stage, number>> = {};
  for (const a of d.attempts) {
    if (!isLive(a) || isRecorded(d, a)) continue;
    out[a.stage] = (out[a.stage] ?? 0) + attemptGPUSeconds(a, d.now);
  }
  return out;
}

/** GPUs held right now by started, unrecorded attempts: how fast GPU-seconds grow. */
export function runningGPUs(d: Draft): number {
  let gpus = 0;
  for (const a of d.attempts) {
    if (!isLive(a) || !a.startedAt || isRecorded(d, a)) continue;
    gpus += a.gpus;
  }
  return gpus;
}

/** Deletes the pods still running and records their GPU-seconds up to now (once). */
export function stopActivePods(d: Draft, reason: string) {
  for (const a of d.attempts) {
    if (!isLive(a)) continue;
    const r = record(d, a.stage);
    r.history ??= [];
    if (!a.terminating) {
      d.actions.push({ type: 'delete', kind: 'Pod', name: a.name, namespace: namespaceOf(d) });
    }
    if (!r.history.some((h) => h.pod === a.name)) {
      const entry: AttemptRecord = { pod: a.name, outcome: 'Stopped', gpuSeconds: round(attemptGPUSeconds(a, d.now)), endTime: iso(d.now), reason };
      if (a.startedAt) entry.startTime = iso(a.startedAt);
      r.history.push(entry);
    }
  }
}
