// The status is the operator's memory, not an input it trusts: anyone who may patch
// iacsearches/status can write into it. Before the state machine reads it, every claim it
// makes that the owned pods can check is checked against them: an attempt record must
// agree with its pod, a phase is done only with a recorded successful attempt, results
// come from the pod that produced them, and Succeeded/Failed hold only when the records
// say so. What does not hold is overwritten (and reported), so a patched
// `phase: Succeeded` with a made-up Dice neither stops the running pod nor survives.
import { STAGES, type IACSearchStatus, type PhaseRecord, type Stage } from '../api/index.ts';
import { attemptGPUSeconds, type ObservedAttempt } from './observe.ts';
import { EVALUATE_RESULTS, resultFields } from './results.ts';

type Status = IACSearchStatus;

export interface Correction {
  /** What was overwritten and why, e.g. "status.phase Succeeded: evaluate has not succeeded". */
  message: string;
  /** A correction a legitimate status can need too (an informer that lagged): not reported. */
  quiet?: boolean;
}

const ACCEPTS: Record<ObservedAttempt['state'], string[]> = {
  Waiting: ['Stopped'],
  Running: ['Stopped'],
  Succeeded: ['Succeeded', 'Stopped'],
  Failed: ['Failed', 'Stopped'],
  Disrupted: ['Disrupted', 'Stopped'],
};

const escapeRegExp = (text: string) => text.replace(/[.*+?^$()|[\]{}\\]/g, '\\$&');
const round = (x: number) => Math.round(x * 1000) / 1000;
const isLive = (a: ObservedAttempt) => a.state === 'Waiting' || a.state === 'Running';

/** Deep equality of JSON values; key order does not count (the API server sorts object keys). */
function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/**
 * Checks the stored status of search `name` against its observed pods and overwrites what
 * they contradict (in place). Returns what was overwritten.
 */
export function verifyStatus(status: Status, attempts: ObservedAttempt[], name: string, now: Date): Correction[] {
  const out: Correction[] = [];
  const byName = new Map(attempts.map((a) => [a.name, a]));
  const succeeded: Partial<Record<Stage, boolean>> = {};
  let earlierDone = true;

  for (const stage of STAGES) {
    const r: PhaseRecord | undefined = status.phases?.[stage];
    const ownPod = new RegExp(`^${escapeRegExp(name)}-${stage}-[1-9][0-9]*$`);
    if (!r) {
      earlierDone = earlierDone && attempts.some((a) => a.stage === stage && a.state === 'Succeeded');
      succeeded[stage] = false;
      continue;
    }
    const where = `status.phases.${stage}`;
    let lagged = false;
    if (r.history) {
      const seen = new Set<string>();
      r.history = r.history.filter((h) => {
        if (!ownPod.test(h.pod)) {
          out.push({ message: `${where}.history: pod ${h.pod} is not a ${stage} pod of this search` });
          return false;
        }
        if (seen.has(h.pod)) {
          out.push({ message: `${where}.history: pod ${h.pod} recorded twice` });
          return false;
        }
        seen.add(h.pod);
        const pod = byName.get(h.pod);
        if (!pod) return true; // gone (deleted, garbage-collected): the record is all that is left
        if (!ACCEPTS[pod.state].includes(h.outcome)) {
          // Not forgeries: a pod taken for vanished that was only missing from a lagging cache,
          // and a failed pod whose disruption condition was reported after its failure.
          const quiet = h.reason === 'PodVanished' || (h.outcome === 'Failed' && pod.state === 'Disrupted');
          lagged ||= quiet;
          out.push({ message: `${where}.history: pod ${h.pod} is ${pod.state}, not ${h.outcome}`, quiet });
          return false;
        }
        const gpuSeconds = attemptGPUSeconds(pod, now);
        if (h.outcome !== 'Stopped' && pod.startedAt && pod.finishedAt && Math.abs(h.gpuSeconds - round(gpuSeconds)) > 0.01) {
          out.push({ message: `${where}.history: pod ${h.pod} used ${round(gpuSeconds)} GPU-seconds, not ${h.gpuSeconds}` });
          h.gpuSeconds = round(gpuSeconds);
        } else if (isLive(pod) && h.gpuSeconds > round(gpuSeconds) + 0.01) {
          // (A pod stopped at a suspend may have finished a moment before: its record, taken
          // up to the stop, can exceed its run time; a live one cannot have used more than now.)
          out.push({ message: `${where}.history: pod ${h.pod} has used at most ${round(gpuSeconds)} GPU-seconds, not ${h.gpuSeconds}` });
          h.gpuSeconds = round(gpuSeconds);
        }
        return true;
      });
    }
    // No more failures or disruptions than records of them (fewer is a reset of the retries,
    // as `iacnas run` does when a failed search is run again).
    const failures = (r.history ?? []).filter((h) => h.outcome === 'Failed').length;
    const preemptions = (r.history ?? []).filter((h) => h.outcome === 'Disrupted').length;
    if (r.failures > failures) {
      out.push({ message: `${where}.failures ${r.failures}: ${failures} failed attempts are recorded`, quiet: lagged });
      r.failures = failures;
    }
    if (r.preemptions > preemptions) {
      out.push({ message: `${where}.preemptions ${r.preemptions}: ${preemptions} disruptions are recorded`, quiet: lagged });
      r.preemptions = preemptions;
    }
    if (r.pod !== undefined && !ownPod.test(r.pod)) {
      out.push({ message: `${where}.pod ${r.pod} is not a ${stage} pod of this search` });
      delete r.pod;
      delete r.lastAttemptTime;
    }

    // Done only with a recorded successful attempt (or its pod, which is recorded next),
    // and only after the phases before it: the operator starts a phase after the last one.
    const evidence = (r.history ?? []).some((h) => h.outcome === 'Succeeded') || attempts.some((a) => a.stage === stage && a.state === 'Succeeded');
    const done = earlierDone && evidence;
    if (r.succeeded && !done) {
      out.push({ message: `${where}.succeeded: no successful ${stage} attempt is recorded${earlierDone ? '' : ' (and an earlier phase has not succeeded)'}` });
      delete r.succeeded;
      delete r.endTime;
      if (r.history) r.history = r.history.filter((h) => h.outcome !== 'Succeeded' || byName.has(h.pod));
    }
    succeeded[stage] = Boolean(r.succeeded) && done;
    earlierDone = done;
  }

  // Results only from a phase that succeeded, and from its pod while it exists.
  const resultOf = (stage: Stage) => attempts.find((a) => a.stage === stage && a.state === 'Succeeded' && a.result?.ok);
  const checkResult = (stage: Stage, present: boolean, drop: () => void, field: string) => {
    if (!present) return;
    if (!succeeded[stage]) {
      out.push({ message: `${field}: ${stage} has not succeeded` });
      drop();
    }
  };
  checkResult('search', status.searchResult !== undefined, () => delete status.searchResult, 'status.searchResult');
  checkResult('prune', status.genotype !== undefined, () => delete status.genotype, 'status.genotype');
  checkResult('retrain', status.results?.bestValDice !== undefined, () => delete status.results!.bestValDice, 'status.results.bestValDice');
  const evaluated = status.results && EVALUATE_RESULTS.filter((k) => status.results![k] !== undefined);
  checkResult(
    'evaluate',
    Boolean(evaluated?.length),
    () => {
      for (const k of evaluated!) delete status.results![k];
    },
    `status.results.${evaluated?.join('/')}`,
  );
  if (status.results && Object.keys(status.results).length === 0) delete status.results;

  for (const stage of STAGES) {
    const pod = resultOf(stage);
    const fields = pod && succeeded[stage] ? resultFields(stage, pod) : undefined;
    if (!pod || !fields) continue;
    if (fields.searchResult && status.searchResult !== undefined && !same(fields.searchResult, status.searchResult)) {
      out.push({ message: `status.searchResult differs from the result of pod ${pod.name}` });
      status.searchResult = fields.searchResult;
    }
    if (fields.genotype && status.genotype !== undefined && !same(fields.genotype, status.genotype)) {
      out.push({ message: `status.genotype differs from the result of pod ${pod.name}` });
      status.genotype = fields.genotype;
    }
    for (const [k, v] of Object.entries(fields.results ?? {})) {
      const stored = (status.results as Record<string, unknown> | undefined)?.[k];
      if (stored !== undefined && !same(stored, v)) {
        out.push({ message: `status.results.${k} ${JSON.stringify(stored)}: pod ${pod.name} reported ${JSON.stringify(v)}` });
        (status.results as Record<string, unknown>)[k] = v;
      }
    }
  }

  // The end states: Succeeded after the four phases; Failed only once nothing runs unrecorded
  // (the operator stops the running pod, and records it, before it writes Failed).
  const unrecordedLive = attempts.filter((a) => isLive(a) && !a.terminating && !status.phases?.[a.stage]?.history?.some((h) => h.pod === a.name));
  if (status.phase === 'Succeeded' && !STAGES.every((s) => succeeded[s])) {
    const missing = STAGES.find((s) => !succeeded[s])!;
    out.push({
      message: `status.phase Succeeded: ${missing} has not succeeded${unrecordedLive.length ? ` (pod ${unrecordedLive[0].name} is ${unrecordedLive[0].state})` : ''}`,
    });
    delete status.phase;
  } else if (status.phase === 'Failed' && (unrecordedLive.length > 0 || !status.completionTime)) {
    out.push({
      message: `status.phase Failed: ${unrecordedLive.length ? `pod ${unrecordedLive[0].name} is ${unrecordedLive[0].state} and not stopped` : 'no completionTime was recorded'}`,
    });
    delete status.phase;
  }
  if (status.completionTime !== undefined && status.phase !== 'Succeeded' && status.phase !== 'Failed') {
    out.push({ message: `status.completionTime: the search has not finished` });
    delete status.completionTime;
  }
  return out;
}
