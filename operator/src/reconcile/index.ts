// The phase state machine of an IACSearch: a pure function from what the API server
// holds (the search, its pods, secrets and claims), the latest progress and the clock
// to actions and the new status. Level-based: the same input gives the same output,
// so an operator restart in the middle of a phase never duplicates a pod.
import { EXIT_BAD_INPUT, type ProgressEvent } from '../../../contract/src/index.ts';
import {
  IACSearchStatus,
  parseIACSearch,
  STAGE_PHASE,
  STAGES,
  type AttemptRecord,
  type Condition,
  type IACSearch,
  type PhaseRecord,
  type SearchPhase,
  type Stage,
} from '../api/index.ts';
import { artifactsClaimName, buildArtifactsClaim, buildPod, buildProgressSecret, progressSecretName, stageGPUs } from './children.ts';
import { getCondition, setCondition } from './conditions.ts';
import { computeCost, type CostStatus } from './cost.ts';
import { attemptGPUSeconds, observePod, type ObservedAttempt } from './observe.ts';
import { policyViolations } from './policy.ts';
import type { Action, KubeObject, ReconcileInput, ReconcileResult } from './types.ts';

/** The most trainer warnings a phase keeps in status.progress.warnings and records as events. */
const MAX_WARNINGS = 4;
import { resultFields, verifyStatus, type Correction } from './verify.ts';

export type { Action, KubeObject, ReconcileInput, ReconcileResult, OperatorSettings, PodPolicy, RefusedCreate } from './types.ts';
export { defaultPolicy, parseAllowedToleration, policyViolations } from './policy.ts';
export { buildPod, podName, trainerArgs, TRAINER_COMMAND, ARTIFACTS_MOUNT, TERMINATION_MESSAGE_PATH } from './children.ts';
export { observePod } from './observe.ts';

type Status = IACSearchStatus;

/** Exponential backoff between failed attempts of a phase, as a Job does it. */
export const BACKOFF_BASE_SECONDS = 10;
export const BACKOFF_MAX_SECONDS = 360;
/** How long a pod we created may be missing from the (informer-cached) pod list before it counts as vanished. */
export const CREATE_GRACE_SECONDS = 30;
/** Look again at a running phase this often: GPU-seconds, budget and deadline move with the clock. */
export const RUNNING_RESYNC_SECONDS = 60;
const WAIT_RESYNC_SECONDS = 5;

/** Exit status of a trainer phase that found bad configuration or data: retrying cannot help. */

const TERMINAL: SearchPhase[] = ['Succeeded', 'Failed'];

export function backoffSeconds(failures: number): number {
  return Math.min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** Math.max(0, failures - 1));
}

/**
 * Reads the stored status leniently, field by field: a field this version cannot read
 * is dropped (and rebuilt from the observed pods), the rest — attempt history, GPU-seconds —
 * is kept.
 */
function readStatus(raw: unknown): Status {
  const parsed = IACSearchStatus.safeParse(raw ?? {});
  if (parsed.success) return structuredClone(parsed.data);
  if (typeof raw !== 'object' || raw === null) return {};
  const out: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(IACSearchStatus.shape)) {
    const field = (schema as typeof IACSearchStatus.shape.phase).safeParse((raw as Record<string, unknown>)[key]);
    if (field.success && field.data !== undefined) out[key] = structuredClone(field.data);
  }
  return out as Status;
}

const newRecord = (): PhaseRecord => ({ attempts: 0, failures: 0, preemptions: 0, gpuSeconds: 0 });
const iso = (d: Date) => d.toISOString();
const seconds = (ms: number) => Math.max(0, Math.ceil(ms / 1000));

class Machine {
  readonly actions: Action[] = [];
  readonly status: Status;
  readonly attempts: ObservedAttempt[];
  /** What the stored status claimed that the pods contradict (overwritten). */
  readonly corrections: Correction[];
  private requeue: number[] = [];
  private readonly previousPhase: SearchPhase | undefined;
  private readonly search: IACSearch;
  private readonly input: ReconcileInput;
  private readonly now: Date;
  private readonly generation: number | undefined;

  constructor(search: IACSearch, input: ReconcileInput) {
    this.search = search;
    this.input = input;
    this.now = input.now;
    this.generation = search.metadata.generation;
    this.status = readStatus(input.search.status);
    this.attempts = observeAttempts(input.pods);
    this.corrections = verifyStatus(this.status, this.attempts, search.metadata.name, this.now);
    this.previousPhase = this.status.phase;
    this.status.observedGeneration = this.generation;
    this.status.phases ??= {};
  }

  get spec() {
    return this.search.spec;
  }

  record(stage: Stage): PhaseRecord {
    return (this.status.phases![stage] ??= newRecord());
  }

  event(eventType: 'Normal' | 'Warning', reason: string, message: string) {
    this.actions.push({ type: 'event', eventType, reason, message });
  }

  requeueAfter(secs: number) {
    this.requeue.push(Math.max(1, secs) * 1000);
  }

  requeueAfterMs(): number | undefined {
    return this.requeue.length ? Math.min(...this.requeue) : undefined;
  }

  condition(type: string, status: 'True' | 'False', reason: string, message: string) {
    this.status.conditions = setCondition(this.status.conditions ?? [], { type, status, reason, message }, this.now, this.generation);
  }

  /** kstatus conditions for a phase that is working, waiting, done or stuck. */
  summarize(kind: 'working' | 'suspended' | 'succeeded' | 'stalled', reason: string, message: string) {
    this.condition('Ready', kind === 'succeeded' ? 'True' : 'False', reason, message);
    this.condition('Reconciling', kind === 'working' ? 'True' : 'False', reason, message);
    this.condition('Stalled', kind === 'stalled' ? 'True' : 'False', reason, message);
  }

  /** Records every finished attempt once (keyed by pod): its outcome, counters and GPU-seconds. */
  recordFinishedAttempts() {
    for (const a of this.attempts) {
      if (a.state !== 'Succeeded' && a.state !== 'Failed' && a.state !== 'Disrupted') continue;
      const r = this.record(a.stage);
      r.attempts = Math.max(r.attempts, a.attempt);
      r.history ??= [];
      const known = r.history.find((h) => h.pod === a.name);
      if (known) {
        // A pod stopped for a suspend that had in fact just finished its phase.
        if (known.outcome === 'Stopped' && a.state === 'Succeeded' && !r.succeeded) this.phaseSucceeded(a);
        continue;
      }
      const entry: AttemptRecord = {
        pod: a.name,
        outcome: a.state,
        gpuSeconds: round(attemptGPUSeconds(a, this.now)),
        endTime: iso(a.finishedAt ?? this.now),
      };
      if (a.startedAt) entry.startTime = iso(a.startedAt);
      if (a.exitCode !== undefined) entry.exitCode = a.exitCode;
      if (a.reason) entry.reason = a.reason;
      r.history.push(entry);
      if (a.state === 'Failed') {
        r.failures += 1;
        r.message = `attempt ${a.attempt} failed: ${a.message ?? a.reason ?? 'unknown error'}`;
        this.event('Warning', 'AttemptFailed', `${a.stage} pod ${a.name} failed: ${a.message ?? a.reason ?? 'unknown error'}`);
      } else if (a.state === 'Disrupted') {
        r.preemptions += 1;
        r.message = `attempt ${a.attempt} disrupted (${a.reason ?? 'disruption'}); it resumes from its checkpoint without counting against backoffLimit`;
        this.event('Warning', 'AttemptDisrupted', `${a.stage} pod ${a.name} was disrupted (${a.reason ?? 'disruption'}): ${a.message ?? ''}`.trim());
      } else if (!r.succeeded) {
        this.phaseSucceeded(a);
      }
    }
  }

  phaseSucceeded(a: ObservedAttempt) {
    const r = this.record(a.stage);
    r.succeeded = true;
    r.endTime = iso(a.finishedAt ?? this.now);
    r.message = a.result?.message ?? `${a.stage} finished`;
    const known = r.history?.find((h) => h.pod === a.name);
    if (known) known.outcome = 'Succeeded';
    this.applyResult(a);
    if (this.input.settings.phaseEvents) this.event('Normal', 'PhaseSucceeded', `${a.stage} finished (pod ${a.name})${describeResult(a)}`);
  }

  /**
   * A trainer's warnings (e.g. a stability threshold that cannot decide) go to status.progress
   * and each new one becomes a Warning event: the progress events repeat them, the result has them all.
   * At most MAX_WARNINGS per phase: a pod that sends new text in every event makes no more.
   */
  noteWarnings(warnings: readonly string[] | undefined) {
    if (!warnings?.length) return;
    const p = (this.status.progress ??= {});
    const known = p.warnings ?? [];
    const fresh = [...new Set(warnings)].filter((w) => !known.includes(w)).slice(0, Math.max(0, MAX_WARNINGS - known.length));
    if (fresh.length === 0) return;
    for (const w of fresh) this.event('Warning', 'TrainerWarning', w);
    p.warnings = [...known, ...fresh];
  }

  applyResult(a: ObservedAttempt) {
    const res = a.result;
    if (!res || !res.ok) return;
    switch (a.stage) {
      case 'search': {
        this.status.searchResult = resultFields('search', a)?.searchResult;
        this.status.progress = {
          ...this.status.progress,
          phase: 'search',
          epoch: res.epochs ?? this.status.progress?.epoch,
          activeOperations: res.activeOperations ?? this.status.progress?.activeOperations,
          totalOperations: res.totalOperations ?? this.status.progress?.totalOperations,
          stableEdges: res.stableEdges ?? this.status.progress?.stableEdges,
          totalEdges: res.totalEdges ?? this.status.progress?.totalEdges,
          bestValDice: res.bestValDice ?? this.status.progress?.bestValDice,
          etaSeconds: 0,
        };
        this.status.progress.stable = stableText(this.status.progress);
        this.noteWarnings(res.warnings);
        break;
      }
      case 'prune':
        if (res.genotype) this.status.genotype = res.genotype;
        break;
      case 'retrain':
        if (res.bestValDice !== undefined) this.status.results = { ...this.status.results, bestValDice: res.bestValDice };
        break;
      case 'evaluate':
        this.status.results = { ...this.status.results, ...resultFields('evaluate', a)?.results };
        break;
    }
  }

  /** Takes the latest progress event when it is about the phase now running. */
  applyProgress(stage: Stage, event: ProgressEvent | undefined) {
    const current = this.status.progress;
    if (current?.phase !== stage) {
      // A new phase: epoch counters restart, the cell's stability figures stay.
      this.status.progress = {
        phase: stage,
        ...(current?.activeOperations !== undefined && { activeOperations: current.activeOperations, totalOperations: current.totalOperations }),
        ...(current?.stableEdges !== undefined && { stableEdges: current.stableEdges, totalEdges: current.totalEdges, stable: current.stable }),
      };
    }
    if (!event || event.phase !== stage) return;
    const p = this.status.progress!;
    if (event.model !== p.model) {
      // The retrain phase trains the same-budget U-Net after the cell model: its epochs
      // count from 1 again and its best Dice is its own, never the cell model's.
      delete p.bestValDice;
      if (event.model === undefined) delete p.model;
      else p.model = event.model;
    }
    p.epoch = event.epoch;
    p.maxEpochs = event.maxEpochs;
    for (const k of ['activeOperations', 'totalOperations', 'stableEdges', 'totalEdges', 'bestValDice', 'etaSeconds'] as const) {
      if (event[k] !== undefined) p[k] = event[k];
    }
    this.noteWarnings(event.warnings);
    p.stable = stableText(p);
    p.updateTime = event.time ?? iso(this.now);
  }

  /** Running (unrecorded) attempts' GPU-seconds up to now, by stage. */
  runningGPUSeconds(): Partial<Record<Stage, number>> {
    const out: Partial<Record<Stage, number>> = {};
    for (const a of this.attempts) {
      if (a.state === 'Succeeded' || a.state === 'Failed' || a.state === 'Disrupted') continue;
      if (this.status.phases?.[a.stage]?.history?.some((h) => h.pod === a.name)) continue;
      out[a.stage] = (out[a.stage] ?? 0) + attemptGPUSeconds(a, this.now);
    }
    return out;
  }

  /** GPUs held right now by started, unrecorded attempts: how fast GPU-seconds grow. */
  runningGPUs(): number {
    let gpus = 0;
    for (const a of this.attempts) {
      if (a.state === 'Succeeded' || a.state === 'Failed' || a.state === 'Disrupted' || !a.startedAt) continue;
      if (this.status.phases?.[a.stage]?.history?.some((h) => h.pod === a.name)) continue;
      gpus += a.gpus;
    }
    return gpus;
  }

  updateCost(): CostStatus {
    const cost = computeCost({
      phases: this.status.phases ?? {},
      running: this.runningGPUSeconds(),
      gpuHourlyUSD: this.spec.cost.gpuHourlyUSD,
      maxEpochs: this.spec.search.maxEpochs,
      searchGPUs: stageGPUs(this.search, 'search'),
      searchSucceeded: Boolean(this.status.phases?.search?.succeeded),
      searchResult: this.status.searchResult,
      progress: this.input.progress?.phase === 'search' ? this.input.progress : undefined,
    });
    this.status.cost = cost;
    return cost;
  }

  activeSecondsNow(): number {
    const base = this.status.activeSeconds ?? 0;
    return this.status.startTime ? base + (this.now.getTime() - Date.parse(this.status.startTime)) / 1000 : base;
  }

  pauseClock() {
    if (this.status.startTime) {
      this.status.activeSeconds = round(this.activeSecondsNow());
      delete this.status.startTime;
    }
  }

  /** Deletes the pods still running and records their GPU-seconds up to now (once). */
  stopActivePods(reason: string) {
    for (const a of this.attempts) {
      if (a.state !== 'Waiting' && a.state !== 'Running') continue;
      const r = this.record(a.stage);
      r.history ??= [];
      if (!a.terminating) {
        this.actions.push({ type: 'delete', kind: 'Pod', name: a.name, namespace: this.namespace });
      }
      if (!r.history.some((h) => h.pod === a.name)) {
        const entry: AttemptRecord = { pod: a.name, outcome: 'Stopped', gpuSeconds: round(attemptGPUSeconds(a, this.now)), endTime: iso(this.now), reason };
        if (a.startedAt) entry.startTime = iso(a.startedAt);
        r.history.push(entry);
      }
    }
  }

  get namespace() {
    return this.search.metadata.namespace ?? 'default';
  }

  setPhase(phase: SearchPhase) {
    this.status.phase = phase;
  }

  /** Creates the progress Secret and the artifacts claim when missing; false when the API server refused one. */
  ensureChildren(): boolean {
    const name = this.search.metadata.name;
    const wanted: KubeObject[] = [];
    if (!this.input.secrets.some((s) => s.metadata.name === progressSecretName(name))) {
      wanted.push(buildProgressSecret(this.search, this.input.newToken));
    }
    if (!this.spec.artifacts.claimName && !this.input.persistentVolumeClaims.some((c) => c.metadata.name === artifactsClaimName(this.search))) {
      wanted.push(buildArtifactsClaim(this.search));
    }
    if (wanted.some((o) => this.refusedCreate(o))) return false;
    for (const object of wanted) this.actions.push({ type: 'create', object });
    return true;
  }

  dropEvent(event: Action | undefined) {
    const i = event ? this.actions.indexOf(event) : -1;
    if (i >= 0) this.actions.splice(i, 1);
  }

  finish(phase: 'Succeeded' | 'Failed', reason: string, message: string) {
    this.stopActivePods(reason);
    this.pauseClock();
    this.setPhase(phase);
    this.status.completionTime ??= iso(this.now);
    if (phase === 'Succeeded') {
      this.summarize('succeeded', 'Succeeded', message);
      if (this.input.settings.phaseEvents) this.event('Normal', 'Succeeded', message);
    } else {
      const stage = currentStage(this.status);
      if (stage) {
        const r = this.record(stage);
        r.endTime ??= iso(this.now);
        r.message = message;
      }
      this.summarize('stalled', reason, message);
      this.event('Warning', reason, message);
    }
    delete this.status.progress?.etaSeconds;
    this.afterFinished();
  }

  /** ttlSecondsAfterFinished: the search (and, by garbage collection, all it owns) goes. */
  afterFinished() {
    const ttl = this.spec.ttlSecondsAfterFinished;
    if (ttl === undefined || !this.status.completionTime) return;
    const due = Date.parse(this.status.completionTime) + ttl * 1000;
    if (this.now.getTime() >= due) {
      this.actions.push({ type: 'delete', kind: 'IACSearch', name: this.search.metadata.name, namespace: this.namespace });
    } else {
      this.requeueAfter(seconds(due - this.now.getTime()));
    }
  }

  suspend(reason: 'Suspended' | 'BudgetExceeded', message: string) {
    this.stopActivePods(reason);
    this.pauseClock();
    const terminating = this.attempts.filter((a) => (a.state === 'Waiting' || a.state === 'Running') && a.terminating);
    if (terminating.length) this.requeueAfter(WAIT_RESYNC_SECONDS);
    this.setPhase('Suspended');
    this.summarize('suspended', reason, message);
    if (this.previousPhase !== 'Suspended') this.event(reason === 'Suspended' ? 'Normal' : 'Warning', reason, message);
  }

  /** Whether the API server refused creating this object in the previous try of this reconcile. */
  refusedCreate(object: KubeObject): boolean {
    const refused = this.input.refused;
    return refused !== undefined && refused.kind === object.kind && refused.name === object.metadata.name;
  }

  /**
   * Nothing can go on until someone changes something: kstatus Stalled with the reason, and
   * one Warning event (repeated only when the message changes). No pod is created.
   */
  stall(stage: Stage, reason: string, message: string) {
    const previous = getCondition(this.status.conditions, 'Stalled');
    this.summarize('stalled', reason, message);
    if (previous?.status !== 'True' || previous.reason !== reason || previous.message !== message) this.event('Warning', reason, message);
    // Pending until the first pod exists; later, the phase that cannot start.
    this.setPhase(this.previousPhase === undefined || this.previousPhase === 'Pending' ? 'Pending' : STAGE_PHASE[stage]);
  }

  /** The API server refused a create: the search says so with the server's own words. */
  stallOnRefusal(stage: Stage) {
    const r = this.input.refused!;
    const answer = `${r.code}${r.reason ? ` ${r.reason}` : ''}`;
    this.stall(
      stage,
      'CreateRefused',
      `the API server refused to create ${r.kind} ${r.name} (${answer}): ${r.message}; the operator retries with backoff, fix the cause (quota, admission policy, priority class, ...) or the spec`,
    );
  }

  /** The operator's pod policy (docs/pod-policy.md); an empty list when there is none. */
  policyViolations(): string[] {
    const policy = this.input.settings.policy;
    return policy ? policyViolations(this.search, policy, this.input.settings.defaultImage, this.input.persistentVolumeClaims) : [];
  }

  run(stage: Stage) {
    const r = this.record(stage);
    const phase = STAGE_PHASE[stage];
    const resuming = this.previousPhase === 'Suspended';

    const mine = this.attempts.filter((a) => a.stage === stage && (a.state === 'Waiting' || a.state === 'Running'));
    const stopped = new Set((r.history ?? []).map((h) => h.pod));
    const live = mine.filter((a) => !a.terminating && !stopped.has(a.name));
    const going = mine.filter((a) => a.terminating || stopped.has(a.name));

    if (live.length === 0) {
      // Before anything is created for the next attempt (its claim included): what the
      // platform team's policy refuses never becomes a pod. A pod already running is left
      // to finish.
      const violations = this.policyViolations();
      if (violations.length > 0) {
        r.message = `no ${stage} pod is created: the operator's pod policy refuses this search`;
        this.stall(
          stage,
          'PolicyViolation',
          `the operator's pod policy (set by the platform team) refuses what this search asks of its pods, so no pod is created:\n${violations.map((v) => `- ${v}`).join('\n')}\nThese fields are immutable: create a new IACSearch without them (see docs/pod-policy.md).`,
        );
        return;
      }
    }

    if (!this.status.startTime) this.status.startTime = iso(this.now);
    if (!this.ensureChildren()) {
      this.stallOnRefusal(stage);
      return;
    }
    this.setPhase(phase);
    // A phase change is in the status (phase, conditions, phases.<stage>); an event for it
    // only with settings.phaseEvents, or when a suspended search resumes. When this
    // reconcile also creates the pod the event names it (docs/operator-scale.md: events
    // were the most frequent request of a search's life).
    let started: Extract<Action, { type: 'event' }> | undefined;
    if (this.previousPhase !== phase && (resuming || this.input.settings.phaseEvents)) {
      this.event('Normal', resuming ? 'Resumed' : phase, resuming ? `resuming ${stage} from its checkpoint` : `${stage} phase started`);
      started = this.actions[this.actions.length - 1] as Extract<Action, { type: 'event' }>;
    }

    if (live.length > 0) {
      // Keep the newest attempt; an older one still alive (it cannot normally be) must not write the same checkpoints.
      const active = live[live.length - 1];
      for (const extra of live.slice(0, -1)) {
        this.actions.push({ type: 'delete', kind: 'Pod', name: extra.name, namespace: this.namespace });
      }
      r.pod = active.name;
      r.attempts = Math.max(r.attempts, active.attempt);
      r.startTime ??= iso(this.now);
      if (active.state === 'Waiting' && active.reason) {
        const waiting = active.reason === 'Unschedulable' ? 'waiting for a node (waiting time is not GPU time)' : `waiting (${active.reason})`;
        r.message = `${stage} attempt ${active.attempt} ${waiting}: ${active.message ?? ''}`.trim();
        this.summarize('working', active.reason === 'Unschedulable' ? 'WaitingForResources' : active.reason, r.message);
      } else {
        r.message = `${stage} attempt ${active.attempt} ${active.state === 'Running' ? 'running' : 'starting'} (pod ${active.name})`;
        this.summarize('working', phase, r.message);
      }
      this.requeueAfter(RUNNING_RESYNC_SECONDS);
      return;
    }
    if (going.length > 0) {
      // Never two attempts on the same checkpoints: wait until the old pod is gone.
      r.message = `waiting for pod ${going.map((a) => a.name).join(', ')} to terminate before the next ${stage} attempt`;
      this.summarize('working', 'WaitingForPodTermination', r.message);
      this.requeueAfter(WAIT_RESYNC_SECONDS);
      return;
    }

    // The latest attempt we created is neither running nor recorded as finished.
    let attempt = Math.max(r.attempts, ...this.attempts.filter((a) => a.stage === stage).map((a) => a.attempt), 0);
    if (r.pod && !this.attempts.some((a) => a.name === r.pod) && !r.history?.some((h) => h.pod === r.pod)) {
      const createdAgo = r.lastAttemptTime ? (this.now.getTime() - Date.parse(r.lastAttemptTime)) / 1000 : Infinity;
      if (createdAgo < CREATE_GRACE_SECONDS) {
        // Likely just created and not yet in the informer's cache: creating it again is
        // harmless (AlreadyExists) and never starts a second attempt.
        const again = buildPod(this.search, stage, attempt, this.input.settings);
        if (this.refusedCreate(again)) {
          this.dropEvent(started);
          this.stallOnRefusal(stage);
          return;
        }
        this.actions.push({ type: 'create', object: again });
        r.message = `${stage} attempt ${attempt} created (pod ${r.pod})`;
        this.summarize('working', phase, r.message);
        this.requeueAfter(WAIT_RESYNC_SECONDS);
        return;
      }
      (r.history ??= []).push({ pod: r.pod, outcome: 'Disrupted', gpuSeconds: 0, endTime: iso(this.now), reason: 'PodVanished' });
      r.preemptions += 1;
      this.event('Warning', 'AttemptDisrupted', `${stage} pod ${r.pod} vanished; starting a new attempt from the checkpoint`);
    }

    const last = r.history?.[r.history.length - 1];
    if (last?.outcome === 'Failed' && r.failures > 0) {
      const retryAt = Date.parse(last.endTime ?? iso(this.now)) + backoffSeconds(r.failures) * 1000;
      if (this.now.getTime() < retryAt) {
        const wait = seconds(retryAt - this.now.getTime());
        r.message = `${stage} attempt ${attempt} failed (${r.failures} of ${this.spec.backoffLimit + 1} allowed); retrying in ${wait}s`;
        this.summarize('working', 'BackoffAfterFailure', r.message);
        this.requeueAfter(wait);
        return;
      }
    }

    attempt += 1;
    const pod = buildPod(this.search, stage, attempt, this.input.settings);
    if (this.refusedCreate(pod)) {
      // Not an attempt: it never existed. The attempt number stays for the retry.
      this.dropEvent(started);
      r.message = `${stage} attempt ${attempt} could not be created (pod ${pod.metadata.name}): the API server refused it`;
      this.stallOnRefusal(stage);
      return;
    }
    this.actions.push({ type: 'create', object: pod });
    r.attempts = attempt;
    r.pod = pod.metadata.name;
    r.lastAttemptTime = iso(this.now);
    r.startTime ??= iso(this.now);
    r.message = `${stage} attempt ${attempt} created (pod ${pod.metadata.name})`;
    this.summarize('working', phase, r.message);
    if (started) {
      // After the pod in the actions: a pod the API server refuses was never started.
      started.message = `${started.message}: ${r.message}`;
      this.dropEvent(started);
      this.actions.push(started);
    } else if (attempt > 1) {
      // A new attempt after a failure or a disruption (each had its Warning).
      this.event('Normal', 'PodCreated', r.message);
    }
    this.requeueAfter(WAIT_RESYNC_SECONDS);
  }
}

function observeAttempts(pods: KubeObject[]): ObservedAttempt[] {
  return pods
    .map(observePod)
    .filter((a): a is ObservedAttempt => a !== undefined)
    .sort((a, b) => a.attempt - b.attempt);
}

/** One Warning event naming what a stored status claimed that the pods contradict. */
function correctionEvent(corrections: Correction[]): Action | undefined {
  const loud = corrections.filter((c) => !c.quiet);
  if (loud.length === 0) return undefined;
  return {
    type: 'event',
    eventType: 'Warning',
    reason: 'StatusCorrected',
    message: `the stored status claimed what this search's pods and attempt records do not show; overwritten from them: ${loud.map((c) => c.message).join('; ')}`,
  };
}

function currentStage(status: Status): Stage | undefined {
  return STAGES.find((s) => !status.phases?.[s]?.succeeded);
}

function stableText(p: { stableEdges?: number; totalEdges?: number }): string | undefined {
  return p.stableEdges !== undefined && p.totalEdges !== undefined ? `${p.stableEdges}/${p.totalEdges}` : undefined;
}

function describeResult(a: ObservedAttempt): string {
  const r = a.result;
  if (!r) return '';
  if (a.stage === 'search' && r.epochs !== undefined) return `: ${r.epochs} epochs${r.stoppedBy ? `, stopped by ${r.stoppedBy}` : ''}`;
  if (a.stage === 'evaluate' && r.meanDice !== undefined) {
    const gain = r.diceGain !== undefined ? `, gain of the cells over the U-Net trained with the same budget ${signed(r.diceGain)}` : '';
    const external = r.external?.length ? `; ${r.external.map((e) => `${e.name} ${e.meanDice.toFixed(4)}`).join(', ')}` : '';
    return `: mean Dice ${r.meanDice.toFixed(4)}${gain}${external}`;
  }
  return '';
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;

/** Drops undefined members so the status compares and serialises as the API server stores it. */
function plain(status: Status): Record<string, unknown> {
  return JSON.parse(JSON.stringify(status)) as Record<string, unknown>;
}

function invalidSpec(input: ReconcileInput, message: string): ReconcileResult {
  const status = readStatus(input.search.status);
  const corrections = verifyStatus(status, observeAttempts(input.pods), String(input.search.metadata.name ?? ''), input.now);
  const generation = input.search.metadata.generation;
  const previous = getCondition(status.conditions, 'Stalled');
  const text = `the spec is invalid; fix these fields and apply again:\n${message}`;
  let conditions: Condition[] = status.conditions ?? [];
  for (const [type, value] of [['Ready', 'False'], ['Reconciling', 'False'], ['Stalled', 'True']] as const) {
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

export function reconcile(input: ReconcileInput): ReconcileResult {
  // Being deleted: garbage collection removes the pods, the Secret and the claim.
  if (input.search.metadata.deletionTimestamp) {
    return { actions: [], status: plain(readStatus(input.search.status)) };
  }
  const parsed = parseIACSearch(input.search);
  if (!parsed.ok) return invalidSpec(input, parsed.message);

  const m = new Machine(parsed.search, input);
  const { spec } = m;
  const corrected = correctionEvent(m.corrections);
  if (corrected) m.actions.push(corrected);
  m.recordFinishedAttempts();

  if (m.status.phase && TERMINAL.includes(m.status.phase)) {
    // Finished for good; only make sure nothing still runs, then wait for the TTL.
    m.stopActivePods(m.status.phase);
    m.updateCost();
    m.afterFinished();
    return { actions: m.actions, status: plain(m.status), requeueAfterMs: m.requeueAfterMs() };
  }

  const stage = currentStage(m.status);
  if (stage) m.applyProgress(stage, input.progress);
  const cost = m.updateCost();

  const { maxGPUHours, maxCostUSD, action } = spec.budget;
  const overHours = maxGPUHours !== undefined && cost.gpuSeconds >= maxGPUHours * 3600;
  const overCost = maxCostUSD !== undefined && cost.estimatedUSD >= maxCostUSD;
  const budgetMessage = overHours
    ? `used ${cost.gpuHours} GPU-hours of the ${maxGPUHours} allowed by spec.budget.maxGPUHours`
    : overCost
      ? `estimated cost ${cost.estimatedUSD} USD reached spec.budget.maxCostUSD ${maxCostUSD}`
      : 'within budget';
  if (overHours || overCost) {
    if (getCondition(m.status.conditions, 'BudgetExceeded')?.status !== 'True') m.event('Warning', 'BudgetExceeded', budgetMessage);
    m.condition('BudgetExceeded', 'True', 'BudgetExceeded', `${budgetMessage}; raise the budget to continue`);
  } else {
    m.condition('BudgetExceeded', 'False', 'WithinBudget', budgetMessage);
  }

  const deadline = spec.activeDeadlineSeconds;
  const active = m.activeSecondsNow();
  const lastFailure = stage ? m.status.phases?.[stage]?.history?.findLast((h) => h.outcome === 'Failed') : undefined;
  const failures = stage ? (m.status.phases?.[stage]?.failures ?? 0) : 0;

  if (!stage) {
    // Finished: progress (the EPOCH and STABLE columns) shows what the search itself ran.
    const searched = m.status.searchResult;
    if (searched?.epochs !== undefined && m.status.progress?.phase !== 'search') {
      m.status.progress = { ...m.status.progress, phase: 'search', epoch: searched.epochs, maxEpochs: spec.search.maxEpochs };
    }
    const dice = m.status.results?.meanDice;
    m.finish('Succeeded', 'Succeeded', `search, prune, retrain and evaluate finished${dice !== undefined ? `; test mean Dice ${dice.toFixed(4)}` : ''}`);
  } else if (deadline !== undefined && m.status.startTime && active >= deadline) {
    m.finish('Failed', 'DeadlineExceeded', `the search ran ${Math.round(active)}s, over spec.activeDeadlineSeconds ${deadline}`);
  } else if ((overHours || overCost) && action === 'Fail') {
    m.finish('Failed', 'BudgetExceeded', `${budgetMessage} (spec.budget.action Fail)`);
  } else if (failures > 0 && lastFailure?.exitCode === EXIT_BAD_INPUT && lastFailure === m.status.phases?.[stage]?.history?.at(-1)) {
    m.finish('Failed', 'InvalidConfiguration', `${stage} rejected its configuration or data (exit status 2): ${m.status.phases?.[stage]?.message ?? ''}; retrying cannot help`);
  } else if (failures > spec.backoffLimit) {
    m.finish('Failed', 'BackoffLimitExceeded', `${stage} failed ${failures} times, over spec.backoffLimit ${spec.backoffLimit}: ${m.status.phases?.[stage]?.message ?? ''}`);
  } else if (spec.suspend) {
    m.suspend('Suspended', `suspended by spec.suspend in ${stage}; set it to false to resume from the checkpoint`);
  } else if (overHours || overCost) {
    m.suspend('BudgetExceeded', `${budgetMessage}; suspended in ${stage} (spec.budget.action Suspend): raise the budget to resume`);
  } else {
    m.run(stage);
    if (deadline !== undefined) m.requeueAfter(seconds((deadline - m.activeSecondsNow()) * 1000));
    // Look again when the running attempt will have used up the budget, not a resync later.
    const gpus = m.runningGPUs();
    if (gpus > 0) {
      const rate = spec.cost.gpuHourlyUSD / 3600; // USD per GPU-second
      if (maxGPUHours !== undefined) m.requeueAfter(seconds(((maxGPUHours * 3600 - cost.gpuSeconds) / gpus) * 1000));
      if (maxCostUSD !== undefined && rate > 0) m.requeueAfter(seconds(((maxCostUSD - cost.estimatedUSD) / rate / gpus) * 1000));
    }
  }
  m.updateCost();
  return { actions: m.actions, status: plain(m.status), requeueAfterMs: m.requeueAfterMs() };
}
