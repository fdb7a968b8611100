// One pass of reconcile as data: the search, what was observed, the status being
// rewritten and the actions and requeues collected so far. The other modules of the
// state machine are functions of a Draft; index.ts makes one per call and returns
// what it collected.
import { IACSearchStatus, readFields, STAGES, type IACSearch, type PhaseRecord, type SearchPhase, type Stage } from '../api/index.ts';
import { setCondition } from './conditions.ts';
import type { ObservedAttempt } from './observe.ts';
import type { Action, ReconcileInput } from './types.ts';
import type { Correction } from './verify.ts';

export type Status = IACSearchStatus;

export interface Draft {
  readonly search: IACSearch;
  readonly input: ReconcileInput;
  readonly now: Date;
  /** The new status, rewritten in place; starts as the stored one, checked against the pods. */
  readonly status: Status;
  /** The search's pods as attempts, oldest first. */
  readonly attempts: ObservedAttempt[];
  /** What the stored status claimed that the pods contradict (overwritten). */
  readonly corrections: Correction[];
  /** status.phase as stored. */
  readonly previousPhase: SearchPhase | undefined;
  readonly actions: Action[];
  /** Look again after each of these (ms); the soonest wins. */
  readonly requeue: number[];
}

/**
 * Reads the stored status leniently, field by field: a field this version cannot read
 * is dropped (and rebuilt from the observed pods), the rest — attempt history, GPU-seconds —
 * is kept.
 */
export function readStatus(raw: unknown): Status {
  return readFields(IACSearchStatus, raw);
}

/** Drops undefined members so the status compares and serialises as the API server stores it. */
export function plain(status: Status): Record<string, unknown> {
  return JSON.parse(JSON.stringify(status)) as Record<string, unknown>;
}

export const iso = (d: Date) => d.toISOString();
/** Whole seconds of `ms`, rounded up, never negative. */
export const seconds = (ms: number) => Math.max(0, Math.ceil(ms / 1000));
export const round = (x: number) => Math.round(x * 1000) / 1000;

/** The first phase that has not succeeded: the one to run. */
export function currentStage(status: Status): Stage | undefined {
  return STAGES.find((s) => !status.phases?.[s]?.succeeded);
}

export const namespaceOf = (d: Draft) => d.search.metadata.namespace ?? 'default';

/** The record of `stage`, made when missing. */
export function record(d: Draft, stage: Stage): PhaseRecord {
  d.status.phases ??= {};
  d.status.phases[stage] ??= { attempts: 0, failures: 0, preemptions: 0, gpuSeconds: 0 };
  return d.status.phases[stage];
}

export function event(d: Draft, eventType: 'Normal' | 'Warning', reason: string, message: string) {
  d.actions.push({ type: 'event', eventType, reason, message });
}

/** Takes back an event collected earlier (a phase start whose pod the API server refused). */
export function dropEvent(d: Draft, action: Action | undefined) {
  const i = action ? d.actions.indexOf(action) : -1;
  if (i >= 0) d.actions.splice(i, 1);
}

export function requeueAfter(d: Draft, secs: number) {
  d.requeue.push(Math.max(1, secs) * 1000);
}

export function setStatusCondition(d: Draft, type: string, status: 'True' | 'False', reason: string, message: string) {
  d.status.conditions = setCondition(d.status.conditions ?? [], { type, status, reason, message }, d.now, d.search.metadata.generation);
}

/** kstatus conditions for a phase that is working, waiting, done or stuck. */
export function setReadiness(d: Draft, kind: 'working' | 'suspended' | 'succeeded' | 'stalled', reason: string, message: string) {
  setStatusCondition(d, 'Ready', kind === 'succeeded' ? 'True' : 'False', reason, message);
  setStatusCondition(d, 'Reconciling', kind === 'working' ? 'True' : 'False', reason, message);
  setStatusCondition(d, 'Stalled', kind === 'stalled' ? 'True' : 'False', reason, message);
}
