// What a search does next, as one pure function of a small summary of its state: run its
// current phase, suspend, fail, succeed, stall on an invalid spec, or nothing at all. The
// order of the rules is the policy: a deletion overrides everything, a finished search stays
// finished, and a search whose four phases succeeded succeeds even when it is over its
// deadline or budget.
import { EXIT_BAD_INPUT } from '../../../contract/src/index.ts';
import type { AttemptOutcome, Stage } from '../api/index.ts';

/** What the decision reads of a search: its spec's limits and the records of its current phase. */
export interface SearchSummary {
  /** metadata.deletionTimestamp is set: garbage collection removes what the search owns. */
  deleting?: boolean;
  /** The spec is invalid: the fields to fix, one a line. */
  invalidSpec?: string;
  /** status.phase once the search has finished for good. */
  finished?: 'Succeeded' | 'Failed';
  /** The first phase that has not succeeded; absent when all four have. */
  stage?: Stage;
  /** Failed attempts of that phase (they count against backoffLimit). */
  failures?: number;
  /** Its latest recorded attempt. */
  lastAttempt?: { outcome: AttemptOutcome; exitCode?: number };
  /** Its latest news (status.phases.<stage>.message), quoted by a failure. */
  stageMessage?: string;
  /** spec.backoffLimit. */
  backoffLimit?: number;
  /** spec.suspend. */
  suspend?: boolean;
  /** spec.budget against the cost so far. */
  budget?: { exceeded: boolean; message: string; action: 'Suspend' | 'Fail' };
  /** spec.activeDeadlineSeconds and the seconds the search has run, once its clock runs. */
  deadline?: { limitSeconds: number; activeSeconds: number };
  /** status.results.meanDice, for the message of a search that succeeded. */
  meanDice?: number;
}

export type Decision =
  | { action: 'none'; reason: 'Deleting' | 'Finished'; message: string }
  | { action: 'stall'; reason: 'InvalidSpec'; message: string }
  | { action: 'succeed'; reason: 'Succeeded'; message: string }
  | { action: 'fail'; reason: 'DeadlineExceeded' | 'BudgetExceeded' | 'InvalidConfiguration' | 'BackoffLimitExceeded'; message: string }
  | { action: 'suspend'; reason: 'Suspended' | 'BudgetExceeded'; message: string }
  | { action: 'run'; stage: Stage; reason: 'NextPhase' | 'Resume' | 'RetryAfterFailure' | 'RetryAfterDisruption'; message: string };

export function decide(s: SearchSummary): Decision {
  if (s.deleting) return { action: 'none', reason: 'Deleting', message: 'being deleted: garbage collection removes its pods, Secret and claim' };
  if (s.invalidSpec !== undefined) {
    return { action: 'stall', reason: 'InvalidSpec', message: `the spec is invalid; fix these fields and apply again:\n${s.invalidSpec}` };
  }
  if (s.finished) return { action: 'none', reason: 'Finished', message: `${s.finished}; nothing runs any more` };
  const stage = s.stage;
  if (!stage) {
    const dice = s.meanDice !== undefined ? `; test mean Dice ${s.meanDice.toFixed(4)}` : '';
    return { action: 'succeed', reason: 'Succeeded', message: `search, prune, retrain and evaluate finished${dice}` };
  }
  const deadline = s.deadline;
  if (deadline && deadline.activeSeconds >= deadline.limitSeconds) {
    return {
      action: 'fail',
      reason: 'DeadlineExceeded',
      message: `the search ran ${Math.round(deadline.activeSeconds)}s, over spec.activeDeadlineSeconds ${deadline.limitSeconds}`,
    };
  }
  if (s.budget?.exceeded && s.budget.action === 'Fail') {
    return { action: 'fail', reason: 'BudgetExceeded', message: `${s.budget.message} (spec.budget.action Fail)` };
  }
  const failures = s.failures ?? 0;
  const backoffLimit = s.backoffLimit ?? 0;
  const last = s.lastAttempt;
  if (failures > 0 && last?.outcome === 'Failed' && last.exitCode === EXIT_BAD_INPUT) {
    return {
      action: 'fail',
      reason: 'InvalidConfiguration',
      message: `${stage} rejected its configuration or data (exit status 2): ${s.stageMessage ?? ''}; retrying cannot help`,
    };
  }
  if (failures > backoffLimit) {
    return {
      action: 'fail',
      reason: 'BackoffLimitExceeded',
      message: `${stage} failed ${failures} times, over spec.backoffLimit ${backoffLimit}: ${s.stageMessage ?? ''}`,
    };
  }
  if (s.suspend) {
    return { action: 'suspend', reason: 'Suspended', message: `suspended by spec.suspend in ${stage}; set it to false to resume from the checkpoint` };
  }
  if (s.budget?.exceeded) {
    return {
      action: 'suspend',
      reason: 'BudgetExceeded',
      message: `${s.budget.message}; suspended in ${stage} (spec.budget.action Suspend): raise the budget to resume`,
    };
  }
  switch (last?.outcome) {
    case 'Failed':
      return {
        action: 'run',
        stage,
        reason: 'RetryAfterFailure',
        message: `${stage} failed ${failures} of ${backoffLimit + 1} allowed times; it is retried after a backoff`,
      };
    case 'Disrupted':
      return {
        action: 'run',
        stage,
        reason: 'RetryAfterDisruption',
        message: `${stage} was disrupted; a new attempt resumes from the checkpoint without counting against backoffLimit`,
      };
    case 'Stopped':
      return { action: 'run', stage, reason: 'Resume', message: `${stage} resumes from its checkpoint` };
    default:
      return { action: 'run', stage, reason: 'NextPhase', message: `${stage} runs` };
  }
}
