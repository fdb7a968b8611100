// What `iacnas run` shows while it works: on a terminal one live progress line (phase,
// epoch, active operations, stable edges, ETA) under the events; otherwise plain lines.
import { join } from 'node:path';
import type { IACSearchStatus } from '../api/index.ts';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function formatDuration(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '?';
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

function bar(fraction: number, width: number): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** One line summing up where the search is. */
export function progressLine(status: IACSearchStatus, opts: { bar?: boolean } = {}): string {
  const p = status.progress ?? {};
  const parts: string[] = [(status.phase ?? 'Pending').padEnd(10)];
  if (p.model === 'baseline') parts.push('U-Net baseline');
  if (p.epoch !== undefined && p.maxEpochs) {
    parts.push(`epoch ${p.epoch}/${p.maxEpochs}`);
    if (opts.bar) parts.push(bar(p.epoch / p.maxEpochs, 20));
  } else if (opts.bar) {
    parts.push(bar(0, 20));
  }
  if (p.activeOperations !== undefined) parts.push(`ops ${p.activeOperations}/${p.totalOperations ?? '?'}`);
  if (p.stable !== undefined) parts.push(`stable ${p.stable}`);
  if (p.bestValDice !== undefined) parts.push(`best val Dice ${p.bestValDice.toFixed(3)}`);
  if (p.etaSeconds !== undefined && p.etaSeconds > 0) parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
  return parts.join('  ');
}

const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;

/**
 * What the evaluate phase found beyond the test Dice, a line each: the gain of the cells
 * over the U-Net trained with the same budget, then every external dataset (its
 * per-case results under <runDir>/external/<name>/).
 */
export function resultLines(results: NonNullable<IACSearchStatus['results']>, runDir: string): string[] {
  const lines: string[] = [];
  if (results.diceGain !== undefined) {
    const baseline = results.baselineMeanDice !== undefined ? ` (U-Net without cells: test mean Dice ${results.baselineMeanDice.toFixed(4)})` : '';
    lines.push(`gain of the cells over the U-Net trained with the same budget: ${signed(results.diceGain)}${baseline}`);
  }
  for (const e of results.external ?? []) {
    const hd95 = e.hd95 !== undefined ? `, HD95 ${e.hd95.toFixed(2)} mm` : '';
    lines.push(
      `external ${e.name}: mean Dice ${e.meanDice.toFixed(4)} on ${e.cases} case${e.cases === 1 ? '' : 's'}${hd95}; per case: ${join(runDir, 'external', e.name)}`,
    );
  }
  return lines;
}

export class RunDisplay {
  private readonly out: Output;
  private last?: IACSearchStatus;
  private barShown = false;

  constructor(out: Output) {
    this.out = out;
  }

  get live(): boolean {
    return Boolean(this.out.isTTY);
  }

  private clearBar() {
    if (this.live && this.barShown) this.out.write('\r\x1b[2K');
    this.barShown = false;
  }

  /** A message line (events, warnings). */
  message(text: string) {
    this.clearBar();
    this.out.write(`${text}\n`);
  }

  /** Redraws the live progress line under the messages (terminal only: plain output has the trainer's own lines). */
  update(status: IACSearchStatus) {
    this.last = status;
    if (!this.live) return;
    const width = Math.max(40, (this.out.columns || 100) - 1);
    this.clearBar();
    this.out.write(progressLine(status, { bar: true }).slice(0, width));
    this.barShown = true;
  }

  /** A line of the trainer's own output, tagged with its phase. */
  trainerLine(phase: string, line: string) {
    this.message(`[${phase}] ${line}`);
    if (this.last) this.update(this.last);
  }

  done() {
    this.clearBar();
  }
}
