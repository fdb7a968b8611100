// The phase state machine of an IACSearch: a pure function from what the API server
// holds (the search, its pods, secrets and claims), the latest progress and the clock
// to actions and the new status. Level-based: the same input gives the same output,
// so an operator restart in the middle of a phase never duplicates a pod.
//
// One pass: read the stored status and check it against the pods (verify.ts), record the
// attempts that finished (attempts.ts, filling the status from their results: results.ts),
// take in the latest progress (progress.ts) and the cost (cost.ts), decide what the search
// does next (decide.ts), and carry that out (run.ts, outcomes.ts).
import { parseIACSearch, type IACSearch } from '../api/index.ts';
import { observeAttempts, recordFinishedAttempts, runningGPUs, stopActivePods } from './attempts.ts';
import { getCondition } from './conditions.ts';
import { budgetState, updateCost, type BudgetState, type CostStatus } from './cost.ts';
import { decide, type Decision, type SearchSummary } from './decide.ts';
import { currentStage, event, plain, readStatus, requeueAfter, seconds, setStatusCondition, type Draft } from './draft.ts';
import { activeSecondsNow, afterFinished, correctionEvent, finish, invalidSpec, suspend } from './outcomes.ts';
import { applyProgress, showSearchedProgress } from './progress.ts';
import { run } from './run.ts';
import type { ReconcileInput, ReconcileResult } from './types.ts';
import { verifyStatus } from './verify.ts';

export type { Action, KubeObject, ReconcileInput, ReconcileResult, OperatorSettings, PodPolicy, RefusedCreate } from './types.ts';
export { defaultPolicy, parseAllowedToleration, policyViolations } from './policy.ts';
export { buildPod, podName, trainerArgs, TRAINER_COMMAND, ARTIFACTS_MOUNT, TERMINATION_MESSAGE_PATH } from './children.ts';
export { observePod } from './observe.ts';
export { decide, type Decision, type SearchSummary } from './decide.ts';
export { backoffSeconds, BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS, CREATE_GRACE_SECONDS, RUNNING_RESYNC_SECONDS } from './run.ts';

function newDraft(search: IACSearch, input: ReconcileInput): Draft {
  const status = readStatus(input.search.status);
  const attempts = observeAttempts(input.pods);
  const corrections = verifyStatus(status, attempts, search.metadata.name, input.now);
  const previousPhase = status.phase;
  status.observedGeneration = search.metadata.generation;
  status.phases ??= {};
  return { search, input, now: input.now, status, attempts, corrections, previousPhase, actions: [], requeue: [] };
}

/** The BudgetExceeded condition, and a Warning when the budget has just been used up. */
function noteBudget(d: Draft, budget: BudgetState) {
  if (budget.exceeded) {
    if (getCondition(d.status.conditions, 'BudgetExceeded')?.status !== 'True') event(d, 'Warning', 'BudgetExceeded', budget.message);
    setStatusCondition(d, 'BudgetExceeded', 'True', 'BudgetExceeded', `${budget.message}; raise the budget to continue`);
  } else {
    setStatusCondition(d, 'BudgetExceeded', 'False', 'WithinBudget', budget.message);
  }
}

/** What decide() reads of the draft: the current phase's records, the spec's limits, the budget. */
function summarize(d: Draft, budget: BudgetState | undefined): SearchSummary {
  const { spec } = d.search;
  const phase = d.status.phase;
  const stage = currentStage(d.status);
  const r = stage ? d.status.phases?.[stage] : undefined;
  const last = r?.history?.at(-1);
  return {
    finished: phase === 'Succeeded' || phase === 'Failed' ? phase : undefined,
    stage,
    failures: r?.failures ?? 0,
    lastAttempt: last && { outcome: last.outcome, exitCode: last.exitCode },
    stageMessage: r?.message,
    backoffLimit: spec.backoffLimit,
    suspend: spec.suspend,
    budget: budget && { ...budget, action: spec.budget.action },
    deadline:
      spec.activeDeadlineSeconds !== undefined && d.status.startTime
        ? { limitSeconds: spec.activeDeadlineSeconds, activeSeconds: activeSecondsNow(d) }
        : undefined,
    meanDice: d.status.results?.meanDice,
  };
}

/** Carries out a decision on a search whose spec is valid. */
function carryOut(d: Draft, decision: Decision, cost: CostStatus | undefined) {
  switch (decision.action) {
    case 'none':
      // Finished for good; only make sure nothing still runs, then wait for the TTL.
      stopActivePods(d, d.status.phase!);
      afterFinished(d);
      return;
    case 'stall':
      return; // an invalid spec never gets a draft
    case 'succeed':
      showSearchedProgress(d);
      finish(d, 'Succeeded', decision.reason, decision.message);
      return;
    case 'fail':
      finish(d, 'Failed', decision.reason, decision.message);
      return;
    case 'suspend':
      suspend(d, decision.reason, decision.message);
      return;
    case 'run': {
      run(d, decision.stage);
      const { spec } = d.search;
      if (spec.activeDeadlineSeconds !== undefined) requeueAfter(d, seconds((spec.activeDeadlineSeconds - activeSecondsNow(d)) * 1000));
      // Look again when the running attempt will have used up the budget, not a resync later.
      const gpus = runningGPUs(d);
      if (gpus > 0 && cost) {
        const { maxGPUHours, maxCostUSD } = spec.budget;
        const rate = spec.cost.gpuHourlyUSD / 3600; // USD per GPU-second
        if (maxGPUHours !== undefined) requeueAfter(d, seconds(((maxGPUHours * 3600 - cost.gpuSeconds) / gpus) * 1000));
        if (maxCostUSD !== undefined && rate > 0) requeueAfter(d, seconds(((maxCostUSD - cost.estimatedUSD) / rate / gpus) * 1000));
      }
      return;
    }
  }
}

export function reconcile(input: ReconcileInput): ReconcileResult {
  const deleting = Boolean(input.search.metadata.deletionTimestamp);
  const parsed = deleting ? undefined : parseIACSearch(input.search);
  if (!parsed?.ok) {
    // Being deleted (garbage collection removes the pods, the Secret and the claim), or a
    // spec to fix first: nothing is observed further.
    const decision = decide({ deleting, invalidSpec: parsed?.message });
    if (decision.action === 'stall') return invalidSpec(input, decision.message);
    return { actions: [], status: plain(readStatus(input.search.status)) };
  }

  const d = newDraft(parsed.search, input);
  const corrected = correctionEvent(d.corrections);
  if (corrected) d.actions.push(corrected);
  recordFinishedAttempts(d);

  let cost: CostStatus | undefined;
  let budget: BudgetState | undefined;
  if (d.status.phase !== 'Succeeded' && d.status.phase !== 'Failed') {
    const stage = currentStage(d.status);
    if (stage) applyProgress(d, stage, input.progress);
    cost = updateCost(d);
    budget = budgetState(d.search.spec.budget, cost);
    noteBudget(d, budget);
  }
  carryOut(d, decide(summarize(d, budget)), cost);
  updateCost(d);
  return { actions: d.actions, status: plain(d.status), requeueAfterMs: d.requeue.length ? Math.min(...d.requeue) : undefined };
}
