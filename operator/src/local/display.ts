// What `iacnas run` shows while it works: on a terminal one live progress line (phase,
// epoch, active operations, stable edges, ETA) under the events; otherwise plain lines.
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

export class RunDisplay {
  private readonly out: Output;
  private lastPlain = '';
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

  /** Redraws the progress line (terminal) or prints it when it changed (plain output). */
  update(status: IACSearchStatus) {
    if (this.live) {
      const width = Math.max(40, (this.out.columns ?? 100) - 1);
      this.clearBar();
      this.out.write(progressLine(status, { bar: true }).slice(0, width));
      this.barShown = true;
      return;
    }
    const p = status.progress;
    // Plain output: one line per epoch (ETA changes alone do not make a new line).
    const key = `${status.phase}|${p?.epoch}|${p?.stable}|${p?.activeOperations}`;
    if (key === this.lastPlain || p?.epoch === undefined) return;
    this.lastPlain = key;
    this.out.write(`${progressLine(status)}\n`);
  }

  done() {
    this.clearBar();
  }
}
