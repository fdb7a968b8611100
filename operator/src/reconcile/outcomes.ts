// How a decision changes the search: the running clock, finishing (Succeeded or Failed),
// suspending, stalling until someone changes something, and the TTL after the end.
import { STAGE_PHASE, type Condition, type Stage } from '../api/index.ts';
import { isLive, observeAttempts, stopActivePods } from './attempts.ts';
import { getCondition, setCondition } from './conditions.ts';
import { currentStage, event, iso, namespaceOf, plain, readStatus, record, requeueAfter, round, seconds, setReadiness, type Draft } from './draft.ts';
import type { Action, ReconcileInput, ReconcileResult } from './types.ts';
import { verifyStatus, type Correction } from './verify.ts';

/** Look again this soon while waiting for a pod to appear or go. */
export const WAIT_RESYNC_SECONDS = 5;

/** Seconds the search has run: before the latest resume plus since then. */
export function activeSecondsNow(d: Draft): number {
  const base = d.status.activeSeconds ?? 0;
  return d.status.startTime ? base + (d.now.getTime() - Date.parse(d.status.startTime)) / 1000 : base;
}

/** Stops the running clock (suspend, the end): activeSeconds keeps what it counted. */
function pauseClock(d: Draft) {
  if (d.status.startTime) {
    d.status.activeSeconds = round(activeSecondsNow(d));
    delete d.status.startTime;
  }
}

export function finish(d: Draft, phase: 'Succeeded' | 'Failed', reason: string, message: string) {
  stopActivePods(d, reason);
  pauseClock(d);
  d.status.phase = phase;
  d.status.completionTime ??= iso(d.now);
  if (phase === 'Succeeded') {
    setReadiness(d, 'succeeded', 'Succeeded', message);
    if (d.input.settings.phaseEvents) event(d, 'Normal', 'Succeeded', message);
  } else {
    const stage = currentStage(d.status);
    if (stage) {
      const r = record(d, stage);
      r.endTime ??= iso(d.now);
      r.message = message;
    }
    setReadiness(d, 'stalled', reason, message);
    event(d, 'Warning', reason, message);
  }
  delete d.status.progress?.etaSeconds;
  afterFinished(d);
}

/** ttlSecondsAfterFinished: the search (and, by garbage collection, all it owns) goes. */
export function afterFinished(d: Draft) {
  const ttl = d.search.spec.ttlSecondsAfterFinished;
  if (ttl === undefined || !d.status.completionTime) return;
  const due = Date.parse(d.status.completionTime) + ttl * 1000;
  if (d.now.getTime() >= due) {
    d.actions.push({ type: 'delete', kind: 'IACSearch', name: d.search.metadata.name, namespace: namespaceOf(d) });
  } else {
    requeueAfter(d, seconds(due - d.now.getTime()));
  }
}

export function suspend(d: Draft, reason: 'Suspended' | 'BudgetExceeded', message: string) {
  stopActivePods(d, reason);
  pauseClock(d);
  if (d.attempts.some((a) => isLive(a) && a.terminating)) requeueAfter(d, WAIT_RESYNC_SECONDS);
  d.status.phase = 'Suspended';
  setReadiness(d, 'suspended', reason, message);
  if (d.previousPhase !== 'Suspended') event(d, reason === 'Suspended' ? 'Normal' : 'Warning', reason, message);
}

/**
 * Nothing can go on until someone changes something: kstatus Stalled with the reason, and
 * one Warning event (repeated only when the message changes). No pod is created.
 */
export function stall(d: Draft, stage: Stage, reason: string, message: string) {
  const previous = getCondition(d.status.conditions, 'Stalled');
  setReadiness(d, 'stalled', reason, message);
  if (previous?.status !== 'True' || previous.reason !== reason || previous.message !== message) event(d, 'Warning', reason, message);
  // Pending until the first pod exists; later, the phase that cannot start.
  d.status.phase = d.previousPhase === undefined || d.previousPhase === 'Pending' ? 'Pending' : STAGE_PHASE[stage];
}

/** The API server refused a create: the search says so with the server's own words. */
export function stallOnRefusal(d: Draft, stage: Stage) {
  const r = d.input.refused!;
  const answer = `${r.code}${r.reason ? ` ${r.reason}` : ''}`;
  stall(
    d,
    stage,
    'CreateRefused',
    `the API server refused to create ${r.kind} ${r.name} (${answer}): ${r.message}; the operator retries with backoff, fix the cause (quota, admission policy, priority class, ...) or the spec`,
  );
}

/** One Warning event naming what a stored status claimed that the pods contradict. */
export function correctionEvent(corrections: Correction[]): Action | undefined {
  const loud = corrections.filter((c) => !c.quiet);
  if (loud.length === 0) return undefined;
  return {
    type: 'event',
    eventType: 'Warning',
    reason: 'StatusCorrected',
    message: `the stored status claimed what this search's pods and attempt records do not show; overwritten from them: ${loud.map((c) => c.message).join('; ')}`,
  };
}

/** A spec that does not parse: Stalled with the fields to fix, and a Warning when that is news. Nothing else moves. */
export function invalidSpec(input: ReconcileInput, text: string): ReconcileResult {
  const status = readStatus(input.search.status);
  const corrections = verifyStatus(status, observeAttempts(input.pods), String(input.search.metadata.name ?? ''), input.now);
  const generation = input.search.metadata.generation;
  const previous = getCondition(status.conditions, 'Stalled');
  let conditions: Condition[] = status.conditions ?? [];
  for (const [type, value] of [
    ['Ready', 'False'],
    ['Reconciling', 'False'],
    ['Stalled', 'True'],
  ] as const) {
    conditions = setCondition(conditions, { type, status: value, reason: 'InvalidSpec', message: text }, input.now, generation);
  }
  const actions: Action[] = [];
  const corrected = correctionEvent(corrections);
  if (corrected) actions.push(corrected);
  if (previous?.reason !== 'InvalidSpec' || previous.message !== text) {
    actions.push({ type: 'event', eventType: 'Warning', reason: 'InvalidSpec', message: text });
  }
  return {
    actions,
    status: plain({ ...status, phase: status.phase ?? 'Pending', observedGeneration: generation, conditions }),
  };
}
