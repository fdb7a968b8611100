import { describe, expect, it } from 'vitest';
import { formatDuration, progressLine, RunDisplay } from './display.ts';

const status = {
  phase: 'Searching' as const,
  progress: { phase: 'search', epoch: 5, maxEpochs: 20, activeOperations: 98, totalOperations: 140, stable: '6/14', bestValDice: 0.8123, etaSeconds: 150 },
};

describe('run display', () => {
  it('sums up phase, epoch, active operations, stable edges and ETA in one line', () => {
    expect(progressLine(status)).toBe('Searching   epoch 5/20  ops 98/140  stable 6/14  best val Dice 0.812  ETA 3m');
    expect(progressLine(status, { bar: true })).toContain('[#####...............]');
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
});
