import { describe, expect, it } from 'vitest';
import { LABEL_ATTEMPT, LABEL_PHASE } from '../api/index.ts';
import { TRAINER_CONTAINER } from './children.ts';
import type { PhaseResult } from '../../../contract/src/index.ts';
import { observePod, parseResult } from './observe.ts';

/** A phase pod as the kubelet reports it once its trainer container terminated. */
function finishedPod(terminated: Record<string, unknown>, limits: Record<string, string> = { cpu: '1', memory: '512Mi' }) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 's-search-1', labels: { [LABEL_PHASE]: 'search', [LABEL_ATTEMPT]: '1' } },
    spec: { containers: [{ name: TRAINER_CONTAINER, resources: { limits, requests: limits } }] },
    status: {
      phase: 'Failed',
      containerStatuses: [
        { name: TRAINER_CONTAINER, state: { terminated: { startedAt: '2026-01-01T00:00:00Z', finishedAt: '2026-01-01T00:01:00Z', ...terminated } } },
      ],
    },
  };
}

describe('observePod on a failed trainer', () => {
  it('says in words that the trainer ran out of memory at its limit, and what to raise', () => {
    const a = observePod(finishedPod({ exitCode: 137, reason: 'OOMKilled', message: 'epoch 3/30 loss 0.41\n' }))!;
    expect(a.state).toBe('Failed');
    expect(a.reason).toBe('OOMKilled');
    expect(a.exitCode).toBe(137);
    expect(a.message).toContain('ran out of memory');
    expect(a.message).toContain('memory limit of 512Mi');
    expect(a.message).toContain('spec.resources.phases.search.memory');
  });

  it('keeps the trainer’s own message for other failures', () => {
    const result = JSON.stringify({ type: 'result', phase: 'search', ok: false, message: 'dataset.path: no NIfTI files' });
    const a = observePod(finishedPod({ exitCode: 2, reason: 'Error', message: result }))!;
    expect(a.reason).toBe('Error');
    expect(a.message).toBe('dataset.path: no NIfTI files');
    const plain = observePod(finishedPod({ exitCode: 1, reason: 'Error' }))!;
    expect(plain.message).toBe('exit code 1');
  });
});

describe('parseResult of the evaluate phase', () => {
  const external = [
    { name: 'site-b', cases: 12, meanDice: 0.71, dicePerClass: { Anterior: 0.7, Posterior: 0.72 }, hd95: 3.1 },
    { name: 'site-c', cases: 30, meanDice: 0.64 },
  ];

  it('reads the baseline, the gain and the external figures as the trainer writes them', () => {
    // As a trainer writes its termination message: the PhaseResult as one JSON line.
    const text = JSON.stringify({
      type: 'result',
      phase: 'evaluate',
      ok: true,
      meanDice: 0.8,
      hd95: 2.5,
      baselineMeanDice: 0.76,
      diceGain: 0.04,
      external,
    } satisfies PhaseResult);
    expect(parseResult(`log line\n${text}`)).toEqual({
      type: 'result',
      phase: 'evaluate',
      ok: true,
      meanDice: 0.8,
      hd95: 2.5,
      baselineMeanDice: 0.76,
      diceGain: 0.04,
      external,
    });
  });

  it('leaves out an entry that does not fit, never the others, and a figure with no number', () => {
    const raw = {
      type: 'result',
      phase: 'evaluate',
      ok: true,
      meanDice: 0.8,
      external: [{ ...external[0], hd95: null, dicePerClass: { x: 'high' } }, { name: 'site-d' }, external[1]],
    };
    expect(parseResult(JSON.stringify(raw))?.external).toEqual([{ name: 'site-b', cases: 12, meanDice: 0.71 }, external[1]]);
  });

  it('takes evaluate figures from the evaluate phase only', () => {
    const raw = { type: 'result', phase: 'retrain', ok: true, bestValDice: 0.9, diceGain: 0.5, external };
    expect(parseResult(JSON.stringify(raw))).toEqual({ type: 'result', phase: 'retrain', ok: true, bestValDice: 0.9 });
  });
});
