// What a phase pod says about its attempt: running, waiting (and why), done, failed,
// or disrupted (preemption, eviction, node loss: not the trainer's fault). The pod's
// phase and its termination message are the authority.
import { z } from 'zod';
import { PhaseResult } from '../../../contract/src/index.ts';
import { LABEL_ATTEMPT, LABEL_PHASE, MAX_CLASS_NAME, MAX_EXTERNAL_DATASETS, MAX_EXTERNAL_NAME, STAGES, type ExternalResult, type Stage } from '../api/index.ts';
import { GPU_RESOURCE, TRAINER_CONTAINER } from './children.ts';
import { KUEUE_TERMINATION_TARGET, kueueQueueHolding } from './kueue.ts';
import type { KubeObject } from './types.ts';

export type PodState = 'Waiting' | 'Running' | 'Succeeded' | 'Failed' | 'Disrupted';

export interface ObservedAttempt {
  name: string;
  stage: Stage;
  attempt: number;
  state: PodState;
  /** The pod is being deleted (by us, or by the node lifecycle). */
  terminating: boolean;
  gpus: number;
  startedAt?: Date;
  finishedAt?: Date;
  exitCode?: number;
  /** Why the pod waits, failed or was disrupted (`Queued`: Kueue holds it back). */
  reason?: string;
  /** The LocalQueue whose admission the pod waits for (it carries Kueue's admission gate). */
  queue?: string;
  message?: string;
  result?: ObservedResult;
}

/** What the evaluate phase reports beyond the test-set figures: the fair baseline and the external datasets. */
export interface EvaluateFigures {
  external?: ExternalResult[];
  baselineMeanDice?: number;
  diceGain?: number;
}
export type ObservedResult = PhaseResult & EvaluateFigures;

/** Pod and container reasons that mean the pod was taken away, not that the trainer failed. */
const DISRUPTION_REASONS = new Set([
  'Evicted',
  'Preempting',
  'Preempted',
  'NodeLost',
  'NodeShutdown',
  'Shutdown',
  'Terminated',
  'TerminationByKubelet',
  'DeletionByTaintManager',
]);

interface PodCondition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}
interface ContainerState {
  running?: { startedAt?: string };
  terminated?: { startedAt?: string; finishedAt?: string; exitCode?: number; reason?: string; message?: string };
  waiting?: { reason?: string; message?: string };
}
interface ContainerStatus {
  name?: string;
  state?: ContainerState;
}
interface PodShape {
  spec?: {
    containers?: Array<{ name?: string; resources?: { limits?: Record<string, string>; requests?: Record<string, string> } }>;
    schedulingGates?: Array<{ name?: string }>;
  };
  status?: { phase?: string; reason?: string; message?: string; conditions?: PodCondition[]; containerStatuses?: ContainerStatus[] };
}

const date = (s: string | undefined) => (s ? new Date(s) : undefined);

const finite = z.number().refine(Number.isFinite);
/** One external dataset's figures, as far as the status can hold them; a figure that does not fit is left out. */
const ExternalFigures = z.object({
  name: z.string().min(1).max(MAX_EXTERNAL_NAME),
  cases: z.int().min(0),
  meanDice: finite,
  dicePerClass: z.record(z.string().max(MAX_CLASS_NAME), finite).optional().catch(undefined),
  hd95: finite.optional().catch(undefined),
});

/**
 * The evaluate figures of a result, read leniently: an external entry that does not fit
 * (no name, no Dice, a name over 63 characters) is left out, and so is a name seen before;
 * at most as many entries as the status holds. Never the whole result.
 */
export function evaluateFigures(raw: Record<string, unknown>): EvaluateFigures {
  const out: EvaluateFigures = {};
  if (Array.isArray(raw.external)) {
    const items: ExternalResult[] = [];
    for (const e of raw.external) {
      const parsed = ExternalFigures.safeParse(e);
      if (!parsed.success || items.some((i) => i.name === parsed.data.name)) continue;
      const { dicePerClass, hd95, ...rest } = parsed.data;
      items.push({ ...rest, ...(dicePerClass !== undefined && { dicePerClass }), ...(hd95 !== undefined && { hd95 }) });
      if (items.length === MAX_EXTERNAL_DATASETS) break;
    }
    if (items.length) out.external = items;
  }
  for (const k of ['baselineMeanDice', 'diceGain'] as const) {
    const v = raw[k];
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

/** Parses the termination message; a pod that wrote none (or garbage) just has no result. */
export function parseResult(message: string | undefined): ObservedResult | undefined {
  if (!message) return undefined;
  // FallbackToLogsOnError may append log lines; the result is the last JSON line.
  const lines = message.trim().split('\n').reverse();
  for (const line of lines) {
    try {
      const json = JSON.parse(line) as unknown;
      const parsed = PhaseResult.safeParse(json);
      if (parsed.success) {
        const { external: _e, baselineMeanDice: _b, diceGain: _g, ...base } = parsed.data as ObservedResult;
        return parsed.data.phase === 'evaluate' ? { ...base, ...evaluateFigures(json as Record<string, unknown>) } : base;
      }
    } catch {
      // not JSON: a log line
    }
  }
  return undefined;
}

/** What a user reads when the kernel killed the trainer at its container's memory limit. */
export function outOfMemory(stage: Stage, limit: string | undefined, exitCode: number | undefined): string {
  const at = limit ? `its memory limit of ${limit}` : 'its memory limit';
  const code = exitCode !== undefined ? `, exit code ${exitCode}` : '';
  return `the trainer ran out of memory: the kernel killed it at ${at} (OOMKilled${code}); raise spec.resources.memory, or spec.resources.phases.${stage}.memory for this phase alone, or make the phase smaller (spec.search.batchSize, spec.dataset.sliceSize)`;
}

export function observePod(pod: KubeObject): ObservedAttempt | undefined {
  const labels = pod.metadata.labels ?? {};
  const stage = labels[LABEL_PHASE] as Stage;
  const attempt = Number(labels[LABEL_ATTEMPT]);
  if (!STAGES.includes(stage) || !Number.isInteger(attempt) || attempt < 1) return undefined;
  const { spec, status } = pod as PodShape;
  const container = spec?.containers?.find((c) => c.name === TRAINER_CONTAINER) ?? spec?.containers?.[0];
  const gpus = Number(container?.resources?.limits?.[GPU_RESOURCE] ?? container?.resources?.requests?.[GPU_RESOURCE] ?? 0) || 0;
  const cs = status?.containerStatuses?.find((c) => c.name === TRAINER_CONTAINER) ?? status?.containerStatuses?.[0];
  const terminated = cs?.state?.terminated;
  const out: ObservedAttempt = {
    name: pod.metadata.name,
    stage,
    attempt,
    state: 'Waiting',
    terminating: Boolean(pod.metadata.deletionTimestamp),
    gpus,
    startedAt: date(cs?.state?.running?.startedAt ?? terminated?.startedAt),
    finishedAt: date(terminated?.finishedAt),
    exitCode: terminated?.exitCode,
    result: parseResult(terminated?.message),
  };
  const conditions = status?.conditions ?? [];
  // Kueue writes TerminationTarget before it deletes a pod whose Workload was evicted,
  // preempted or deleted: taken away like a preempted pod, not failed.
  const disruption = conditions.find((c) => (c.type === 'DisruptionTarget' || c.type === KUEUE_TERMINATION_TARGET) && c.status === 'True');
  const phase = status?.phase;

  if (phase === 'Succeeded') {
    out.state = 'Succeeded';
  } else if (phase === 'Failed') {
    if (disruption || DISRUPTION_REASONS.has(status?.reason ?? '')) {
      out.state = 'Disrupted';
      out.reason = disruption?.reason ?? status?.reason;
      out.message = disruption?.message ?? status?.message;
    } else {
      out.state = 'Failed';
      out.reason = terminated?.reason ?? status?.reason ?? 'Failed';
      out.message =
        terminated?.reason === 'OOMKilled'
          ? outOfMemory(stage, container?.resources?.limits?.memory, terminated.exitCode)
          : (out.result?.message ?? status?.message ?? (terminated?.exitCode !== undefined ? `exit code ${terminated.exitCode}` : undefined));
    }
  } else if (cs?.state?.running || (terminated && phase === 'Running')) {
    out.state = 'Running';
  } else {
    // Pending (or Unknown): held by Kueue, not scheduled yet, pulling the image, or creating
    // the container. Kueue's gate is read from the spec: the PodScheduled=False condition
    // (reason SchedulingGated) written at creation stays after Kueue removes the gate.
    const queue = kueueQueueHolding(pod);
    const gated = (spec?.schedulingGates ?? []).length > 0;
    const unscheduled = conditions.find((c) => c.type === 'PodScheduled' && c.status === 'False' && (gated || c.reason !== 'SchedulingGated'));
    const waiting = cs?.state?.waiting;
    if (queue !== undefined) {
      out.queue = queue;
      out.reason = 'Queued';
      out.message = `queued in Kueue LocalQueue ${queue || '(unnamed)'} until its Workload is admitted`;
    } else if (unscheduled) {
      out.reason = unscheduled.reason ?? 'Unschedulable';
      out.message = unscheduled.message ?? 'no node fits the pod yet';
    } else if (waiting?.reason) {
      out.reason = waiting.reason;
      out.message = waiting.message ?? waiting.reason;
    }
    if (disruption) {
      out.reason = disruption.reason;
      out.message = disruption.message;
    }
  }
  return out;
}

/** GPU-seconds of an attempt: trainer container run time times GPUs requested (waiting time is free). */
export function attemptGPUSeconds(a: ObservedAttempt, now: Date): number {
  if (!a.startedAt || a.gpus === 0) return 0;
  const end = a.finishedAt ?? now;
  return Math.max(0, (end.getTime() - a.startedAt.getTime()) / 1000) * a.gpus;
}
