import { describe, expect, it } from 'vitest';
import { decide, type Decision, type SearchSummary } from './decide.ts';

/** A search in its search phase, nothing failed, within its limits. */
const base: SearchSummary = {
  stage: 'search',
  failures: 0,
  backoffLimit: 3,
  suspend: false,
  budget: { exceeded: false, message: 'within budget', action: 'Suspend' },
};
const overBudget = (action: 'Suspend' | 'Fail') => ({
  budget: { exceeded: true, message: 'used 2 GPU-hours of the 1 allowed by spec.budget.maxGPUHours', action },
});

const rows: Array<[string, Partial<SearchSummary>, Pick<Decision, 'action' | 'reason'> & { stage?: string; message?: RegExp }]> = [
  ['being deleted', { deleting: true }, { action: 'none', reason: 'Deleting' }],
  ['being deleted with an invalid spec', { deleting: true, invalidSpec: 'spec.backoffLimit: too big' }, { action: 'none', reason: 'Deleting' }],
  [
    'an invalid spec',
    { invalidSpec: 'spec.backoffLimit: too big' },
    { action: 'stall', reason: 'InvalidSpec', message: /fix these fields.*\nspec.backoffLimit: too big/ },
  ],
  ['finished: Failed stays Failed', { finished: 'Failed', suspend: true }, { action: 'none', reason: 'Finished' }],
  ['finished: Succeeded stays Succeeded', { finished: 'Succeeded', stage: undefined }, { action: 'none', reason: 'Finished' }],
  ['all phases done', { stage: undefined, meanDice: 0.81234 }, { action: 'succeed', reason: 'Succeeded', message: /finished; test mean Dice 0\.8123$/ }],
  [
    'all phases done, though over deadline and budget',
    { stage: undefined, deadline: { limitSeconds: 10, activeSeconds: 20 }, ...overBudget('Fail') },
    { action: 'succeed', reason: 'Succeeded' },
  ],
  ['the next phase to run', { stage: 'retrain' }, { action: 'run', reason: 'NextPhase', stage: 'retrain' }],
  [
    'deadline reached',
    { deadline: { limitSeconds: 600, activeSeconds: 600.4 } },
    { action: 'fail', reason: 'DeadlineExceeded', message: /ran 600s, over spec.activeDeadlineSeconds 600/ },
  ],
  ['deadline not yet reached', { deadline: { limitSeconds: 600, activeSeconds: 599 } }, { action: 'run', reason: 'NextPhase', stage: 'search' }],
  ['deadline before the budget', { deadline: { limitSeconds: 1, activeSeconds: 2 }, ...overBudget('Fail') }, { action: 'fail', reason: 'DeadlineExceeded' }],
  ['budget exceeded with action Fail', overBudget('Fail'), { action: 'fail', reason: 'BudgetExceeded', message: /\(spec.budget.action Fail\)$/ }],
  [
    'budget exceeded with action Suspend',
    overBudget('Suspend'),
    { action: 'suspend', reason: 'BudgetExceeded', message: /suspended in search \(spec.budget.action Suspend\)/ },
  ],
  [
    'bad input: the latest attempt exited 2',
    { failures: 1, lastAttempt: { outcome: 'Failed', exitCode: 2 }, stageMessage: 'dataset.path: no NIfTI files' },
    { action: 'fail', reason: 'InvalidConfiguration', message: /exit status 2\): dataset.path: no NIfTI files; retrying cannot help/ },
  ],
  [
    'bad input before a suspend: still bad input',
    { failures: 1, lastAttempt: { outcome: 'Failed', exitCode: 2 }, suspend: true },
    { action: 'fail', reason: 'InvalidConfiguration' },
  ],
  [
    'an exit 2 followed by a disruption is not the latest attempt',
    { failures: 1, lastAttempt: { outcome: 'Disrupted' } },
    { action: 'run', reason: 'RetryAfterDisruption' },
  ],
  [
    'backoffLimit spent',
    { failures: 4, lastAttempt: { outcome: 'Failed', exitCode: 1 }, stageMessage: 'attempt 4 failed: exit code 1' },
    { action: 'fail', reason: 'BackoffLimitExceeded', message: /failed 4 times, over spec.backoffLimit 3: attempt 4 failed/ },
  ],
  [
    'failures within backoffLimit',
    { failures: 3, lastAttempt: { outcome: 'Failed', exitCode: 1 } },
    { action: 'run', reason: 'RetryAfterFailure', message: /failed 3 of 4 allowed times/ },
  ],
  [
    'backoffLimit 0: the first failure fails the search',
    { failures: 1, backoffLimit: 0, lastAttempt: { outcome: 'Failed', exitCode: 1 } },
    { action: 'fail', reason: 'BackoffLimitExceeded' },
  ],
  ['suspended by spec.suspend', { suspend: true }, { action: 'suspend', reason: 'Suspended', message: /set it to false to resume/ }],
  ['spec.suspend over a budget that suspends', { suspend: true, ...overBudget('Suspend') }, { action: 'suspend', reason: 'Suspended' }],
  [
    'disruption retry: does not count against backoffLimit 0',
    { backoffLimit: 0, lastAttempt: { outcome: 'Disrupted' } },
    { action: 'run', reason: 'RetryAfterDisruption', stage: 'search' },
  ],
  ['resumed after a suspend stopped the pod', { stage: 'prune', lastAttempt: { outcome: 'Stopped' } }, { action: 'run', reason: 'Resume', stage: 'prune' }],
];

describe('decide', () => {
  it.each(rows)('%s', (_name, summary, want) => {
    const got = decide({ ...base, ...summary });
    expect(got.action).toBe(want.action);
    expect(got.reason).toBe(want.reason);
    if (want.stage) expect(got).toMatchObject({ stage: want.stage });
    if (want.message) expect(got.message).toMatch(want.message);
  });
});
