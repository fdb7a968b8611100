// How a trainer phase reports: ProgressEvent JSON lines on stdout, a human line per
// epoch on stderr, best-effort POSTs to the operator, and the final PhaseResult on
// stdout and in the result file (the pod's termination message).
import { existsSync, writeFileSync } from 'node:fs';
import { ENV, HEADER_SEARCH, type Phase, type PhaseResult, type ProgressEvent } from '../../../contract/src/index.ts';

export type ProgressFields = Omit<ProgressEvent, 'type' | 'phase'>;
export type ResultFields = Omit<PhaseResult, 'type' | 'phase'>;

export interface TextSink {
  write(text: string): unknown;
}

export interface ReporterOptions {
  phase: Phase;
  stdout?: TextSink;
  stderr?: TextSink;
  /** Where the PhaseResult goes; see resultFilePath(). */
  resultFile?: string;
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
  /** Timeout of one progress POST. */
  postTimeoutMs?: number;
  clock?: () => Date;
}

/** The termination message limit of a Kubernetes container. */
export const RESULT_LIMIT_BYTES = 4096;
const MAX_PENDING_POSTS = 4;

/** --result-file, else $IACNAS_RESULT_FILE, else /dev/termination-log when it exists. */
export function resultFilePath(flag: string | undefined, env: Record<string, string | undefined> = process.env): string | undefined {
  if (flag) return flag;
  if (env[ENV.resultFile]) return env[ENV.resultFile];
  return existsSync('/dev/termination-log') ? '/dev/termination-log' : undefined;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 90) return `${Math.round(s)}s`;
  if (s < 5400) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

const MODEL_NAMES = { cells: 'cell model', baseline: 'U-Net baseline' } as const;
const BASIS_NAMES = { stable: 'stability', 'genotype-unchanged': 'genotype unchanged' } as const;

/**
 * The ETA part of a progress line: "ETA 4m (stability), <= 42m (maxEpochs)" when the
 * estimate counts fewer epochs than the budget, "ETA <= 42m (maxEpochs)" when it is the
 * budget (early stopping or the stability criterion may end the phase sooner).
 */
function etaText(phase: Phase, e: ProgressFields): string | undefined {
  if (e.etaSeconds === undefined) return undefined;
  const budget = phase === 'search' ? 'maxEpochs' : 'epochs';
  if (e.etaBasis === undefined || e.etaSeconds === 0) return `ETA ${formatSeconds(e.etaSeconds)}`;
  if (e.etaBasis === 'max-epochs') return `ETA <= ${formatSeconds(e.etaSeconds)} (${budget})`;
  const max = e.etaMaxSeconds !== undefined ? `, <= ${formatSeconds(e.etaMaxSeconds)} (${budget})` : '';
  return `ETA ${formatSeconds(e.etaSeconds)} (${BASIS_NAMES[e.etaBasis]})${max}`;
}

/** The human progress line of one epoch. */
export function humanLine(phase: Phase, e: ProgressFields): string {
  const parts = [`${phase}${e.model ? ` (${MODEL_NAMES[e.model]})` : ''} epoch ${e.epoch}/${e.maxEpochs}`];
  if (e.trainLoss !== undefined) parts.push(`loss ${e.trainLoss.toFixed(4)}`);
  if (e.valDice !== undefined) parts.push(`val Dice ${e.valDice.toFixed(4)}`);
  if (e.bestValDice !== undefined) parts.push(`best ${e.bestValDice.toFixed(4)}`);
  if (e.activeOperations !== undefined) parts.push(`ops ${e.activeOperations}/${e.totalOperations ?? '?'}`);
  if (e.stableEdges !== undefined) parts.push(`stable ${e.stableEdges}/${e.totalEdges ?? '?'}`);
  if (e.epochSeconds !== undefined) parts.push(`${e.epochSeconds.toFixed(1)}s/epoch`);
  const eta = etaText(phase, e);
  if (eta) parts.push(eta);
  return parts.join(' | ');
}

/** Serialises a result, dropping the largest optional parts until it fits the termination message. */
export function encodeResult(result: PhaseResult): string {
  let r: PhaseResult = result;
  let text = JSON.stringify(r);
  if (Buffer.byteLength(text) <= RESULT_LIMIT_BYTES) return text;
  const drops: ((x: PhaseResult) => PhaseResult)[] = [
    (x) => ({ ...x, genotype: undefined }),
    (x) => ({ ...x, dicePerClass: undefined }),
    (x) => ({ ...x, external: x.external?.map(({ dicePerClass: _, ...rest }) => rest) }),
    (x) => ({ ...x, external: undefined }),
  ];
  for (const drop of drops) {
    r = drop(r);
    text = JSON.stringify(r);
    if (Buffer.byteLength(text) <= RESULT_LIMIT_BYTES) return text;
  }
  const over = Buffer.byteLength(text) - RESULT_LIMIT_BYTES;
  r = { ...r, message: `${(r.message ?? '').slice(0, Math.max(0, (r.message ?? '').length - over - 16))}...` };
  return JSON.stringify(r);
}

export class ProgressReporter {
  readonly phase: Phase;
  private readonly out: TextSink;
  private readonly err: TextSink;
  private readonly resultFile?: string;
  private readonly post?: { url: string; token: string; search?: string };
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  private readonly clock: () => Date;
  private readonly pending = new Set<Promise<void>>();
  /** POSTs that failed or were dropped (for tests and the final log line). */
  failedPosts = 0;

  constructor(o: ReporterOptions) {
    const env = o.env ?? process.env;
    this.phase = o.phase;
    this.out = o.stdout ?? process.stdout;
    this.err = o.stderr ?? process.stderr;
    this.resultFile = o.resultFile;
    const url = env[ENV.progressURL];
    const token = env[ENV.progressToken];
    if (url && token) {
      this.post = { url, token, search: env[ENV.search] };
    }
    this.fetchFn = o.fetch ?? fetch;
    this.timeoutMs = o.postTimeoutMs ?? 2000;
    this.clock = o.clock ?? (() => new Date());
  }

  /** A free-form line on stderr. */
  log(message: string): void {
    this.err.write(`${message}\n`);
  }

  /** Reports one finished epoch. Never throws and never waits for the network. */
  progress(fields: ProgressFields): void {
    const event: ProgressEvent = { type: 'progress', phase: this.phase, ...fields, time: fields.time ?? this.clock().toISOString() };
    this.out.write(`${JSON.stringify(event)}\n`);
    this.err.write(`${humanLine(this.phase, fields)}\n`);
    this.send(event);
  }

  private send(event: ProgressEvent): void {
    if (!this.post) return;
    if (this.pending.size >= MAX_PENDING_POSTS) {
      this.failedPosts++; // the operator is slow: drop this one rather than queue up
      return;
    }
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      authorization: `Bearer ${this.post.token}`,
    };
    if (this.post.search) headers[HEADER_SEARCH] = this.post.search;
    const p = (async () => {
      try {
        const res = await this.fetchFn(this.post!.url, {
          method: 'POST',
          headers,
          body: JSON.stringify(event),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        if (!res.ok) this.failedPosts++;
        await res.body?.cancel().catch(() => undefined);
      } catch {
        this.failedPosts++;
      }
    })();
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  /**
   * Gives progress POSTs in flight event-loop time to go out, for at most `maxMs`.
   * Training steps never yield to the event loop, so a request started at the end of
   * an epoch would otherwise sit unsent until its timeout fires. The loops await this
   * after each progress event; with no POST in flight it returns at once.
   */
  async settle(maxMs = 500): Promise<void> {
    if (this.pending.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, maxMs);
    });
    await Promise.race([Promise.allSettled([...this.pending]), deadline]);
    clearTimeout(timer);
  }

  /** Waits for progress POSTs still in flight (each is bounded by its timeout). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.pending]);
  }

  /** Prints and stores the phase result; returns it as written. */
  async result(fields: ResultFields): Promise<PhaseResult> {
    const result: PhaseResult = { type: 'result', phase: this.phase, ...fields };
    const text = encodeResult(result);
    this.out.write(`${text}\n`);
    if (this.resultFile) {
      try {
        writeFileSync(this.resultFile, text);
      } catch (e) {
        this.err.write(`iacnas: cannot write the result file ${this.resultFile}: ${(e as Error).message}\n`);
      }
    }
    await this.flush();
    return result;
  }
}
