// A keyed, de-duplicating work queue with delayed adds and per-key exponential backoff,
// after client-go's workqueue: a key waits in the queue at most once, is handed to one
// worker at a time, and a key added while a worker holds it is queued again when the
// worker calls done().

export interface WorkQueueOptions {
  /** First retry delay of a failing key (ms). */
  baseDelayMs?: number;
  /** Largest retry delay (ms). */
  maxDelayMs?: number;
}

interface Waiter {
  resolve: (key: string | undefined) => void;
}

export class WorkQueue {
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  /** Keys ready for a worker, in order. */
  private readonly queue: string[] = [];
  /** Keys that need processing (queued, or to be queued again when their worker is done). */
  private readonly dirty = new Set<string>();
  /** Keys a worker holds. */
  private readonly processing = new Set<string>();
  /** Delayed adds: key -> when it becomes ready and its timer. */
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly waiters: Waiter[] = [];
  private shuttingDown = false;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(opts: WorkQueueOptions = {}) {
    this.baseDelayMs = opts.baseDelayMs ?? 5;
    this.maxDelayMs = opts.maxDelayMs ?? 1_000_000;
  }

  /** Marks key as needing processing. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    if (this.processing.has(key)) return; // queued again by done()
    this.push(key);
  }

  /**
   * Adds key after delayMs. A pending delayed add of the same key is kept if it is due
   * earlier, so repeated calls coalesce into the earliest one.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending) {
      if (pending.at <= at) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.delayed.set(key, { at, timer });
  }

  /** Adds key after its backoff delay (base doubling per consecutive failure, capped). */
  addRateLimited(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    const delay = this.backoffDelay(n);
    this.addAfter(key, delay);
    return delay;
  }

  /** The delay of the (n+1)-th consecutive failure. */
  backoffDelay(n: number): number {
    return Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(n, 60));
  }

  /** Clears the failure count of key (after it succeeded). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Waits for the next key; undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    const key = this.take();
    if (key !== undefined) return Promise.resolve(key);
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push({ resolve }));
  }

  /** Tells the queue a worker finished key; re-queues it if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    else if (this.dirty.has(key)) this.dirty.delete(key);
    if (this.processing.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Keys waiting for a worker (not counting delayed ones). */
  len(): number {
    return this.queue.length;
  }

  /** Keys waiting for a timer (delayed adds and backoff). */
  delayedLen(): number {
    return this.delayed.size;
  }

  inProgress(): number {
    return this.processing.size;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Stops handing out keys: waiting and future get() calls return undefined, queued and
   * delayed keys are dropped. Resolves when no key is in progress, or after timeoutMs
   * (false then).
   */
  async shutDown(timeoutMs = Infinity): Promise<boolean> {
    this.shuttingDown = true;
    for (const d of this.delayed.values()) clearTimeout(d.timer);
    this.delayed.clear();
    this.queue.length = 0;
    for (const key of [...this.dirty]) if (!this.processing.has(key)) this.dirty.delete(key);
    for (const w of this.waiters.splice(0)) w.resolve(undefined);
    if (this.processing.size === 0) return true;
    return new Promise<boolean>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const onIdle = () => {
        if (timer) clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(onIdle);
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          const i = this.idleWaiters.indexOf(onIdle);
          if (i >= 0) this.idleWaiters.splice(i, 1);
          resolve(false);
        }, timeoutMs);
        timer.unref?.();
      }
    });
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      this.dirty.delete(key);
      this.processing.add(key);
      waiter.resolve(key);
    } else {
      this.queue.push(key);
    }
  }

  private take(): string | undefined {
    const key = this.queue.shift();
    if (key === undefined) return undefined;
    this.dirty.delete(key);
    this.processing.add(key);
    return key;
  }
}
