import { describe, expect, it } from 'vitest';
import { formatDuration, progressLine, resultLines, RunDisplay } from './display.ts';

const status = {
  phase: 'Searching' as const,
  progress: { phase: 'search', epoch: 5, maxEpochs: 20, activeOperations: 98, totalOperations: 140, stable: '6/14', bestValDice: 0.8123, etaSeconds: 150 },
};

describe('run display', () => {
  it('sums up phase, epoch, active operations, stable edges and ETA in one line', () => {
    expect(progressLine(status)).toBe('Searching   epoch 5/20  ops 98/140  stable 6/14  best val Dice 0.812  ETA 3m');
    expect(progressLine(status, { bar: true })).toContain('[#####...............]');
    const baseline = { phase: 'Retraining' as const, progress: { phase: 'retrain', model: 'baseline' as const, epoch: 3, maxEpochs: 20, bestValDice: 0.5 } };
    expect(progressLine(baseline)).toBe('Retraining  U-Net baseline  epoch 3/20  best val Dice 0.500');
    expect(formatDuration(45)).toBe('45s');
    expect(formatDuration(7200)).toBe('2.0h');
  });

  it('redraws one line on a terminal and keeps messages above it', () => {
    let out = '';
    const d = new RunDisplay({ isTTY: true, columns: 120, write: (t: string) => (out += t) });
    d.update(status);
    d.trainerLine('search', 'search epoch 5/20 | loss 0.3');
    expect(out).toBe(
      'Searching   epoch 5/20  [#####...............]  ops 98/140  stable 6/14  best val Dice 0.812  ETA 3m' +
        '\r\x1b[2K[search] search epoch 5/20 | loss 0.3\n' +
        'Searching   epoch 5/20  [#####...............]  ops 98/140  stable 6/14  best val Dice 0.812  ETA 3m',
    );
  });

  it('writes plain lines without control characters when not on a terminal', () => {
    let out = '';
    const d = new RunDisplay({ write: (t: string) => (out += t) });
    d.update(status);
    d.trainerLine('search', 'hello');
    d.message('done');
    expect(out).toBe('[search] hello\ndone\n');
  });

  it('sums up the gain of the cells and each external dataset after the test Dice', () => {
    const results = {
      meanDice: 0.8,
      baselineMeanDice: 0.8123,
      diceGain: -0.0123,
      external: [
        { name: 'site-b', cases: 12, meanDice: 0.71234, hd95: Math.PI },
        { name: 'one', cases: 1, meanDice: 0.5 },
      ],
    };
    expect(resultLines(results, '/runs/acdc')).toEqual([
      'gain of the cells over the U-Net trained with the same budget: -0.0123 (U-Net without cells: test mean Dice 0.8123)',
      'external site-b: mean Dice 0.7123 on 12 cases, HD95 3.14 mm; per case: /runs/acdc/external/site-b',
      'external one: mean Dice 0.5000 on 1 case; per case: /runs/acdc/external/one',
    ]);
    expect(resultLines({ meanDice: 0.8 }, '/runs/acdc')).toEqual([]);
  });
});
