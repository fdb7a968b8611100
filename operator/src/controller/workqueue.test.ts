import { describe, expect, it } from 'vitest';
import { WorkQueue } from './workqueue.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('WorkQueue', () => {
  it('de-duplicates a key that is already waiting', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.len()).toBe(0);
  });

  it('never hands a key to two workers at once, and processes a key added meanwhile again afterwards', async () => {
    const q = new WorkQueue();
    const active = new Set<string>();
    let overlaps = 0;
    const processed: string[] = [];
    q.add('k');
    const worker = async () => {
      for (;;) {
        const key = await q.get();
        if (key === undefined) return;
        if (active.has(key)) overlaps++;
        active.add(key);
        processed.push(key);
        if (processed.length === 1) {
          // added while in progress: must not go to the second worker now
          q.add('k');
          q.add('k');
        }
        await sleep(20);
        active.delete(key);
        q.done(key);
      }
    };
    const workers = [worker(), worker(), worker()];
    await sleep(100);
    await q.shutDown();
    await Promise.all(workers);
    expect(overlaps).toBe(0);
    expect(processed).toEqual(['k', 'k']);
  });

  it('runs different keys concurrently on several workers', async () => {
    const q = new WorkQueue();
    let concurrent = 0;
    let peak = 0;
    for (const k of ['a', 'b', 'c', 'd']) q.add(k);
    const worker = async () => {
      for (;;) {
        const key = await q.get();
        if (key === undefined) return;
        concurrent++;
        peak = Math.max(peak, concurrent);
        await sleep(30);
        concurrent--;
        q.done(key);
      }
    };
    const ws = [worker(), worker(), worker(), worker()];
    await sleep(60);
    await q.shutDown();
    await Promise.all(ws);
    expect(peak).toBe(4);
  });

  it('backs off a failing key exponentially from 5 ms up to 1000 s and resets on forget', () => {
    const q = new WorkQueue();
    const delays = [0, 1, 2, 3, 10].map((n) => q.backoffDelay(n));
    expect(delays).toEqual([5, 10, 20, 40, 5 * 1024]);
    expect(q.backoffDelay(30)).toBe(1_000_000);
    expect(q.addRateLimited('x')).toBe(5);
    expect(q.addRateLimited('x')).toBe(10);
    expect(q.addRateLimited('y')).toBe(5); // per key
    expect(q.numRequeues('x')).toBe(2);
    q.forget('x');
    expect(q.numRequeues('x')).toBe(0);
    expect(q.addRateLimited('x')).toBe(5);
    void q.shutDown();
  });

  it('delivers a rate-limited key only after its delay', async () => {
    const q = new WorkQueue({ baseDelayMs: 40 });
    const t0 = Date.now();
    q.addRateLimited('x');
    expect(q.len()).toBe(0);
    expect(await q.get()).toBe('x');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(35);
    void q.shutDown();
  });

  it('honours addAfter and coalesces repeated delayed adds into the earliest', async () => {
    const q = new WorkQueue();
    q.addAfter('k', 200);
    q.addAfter('k', 30);
    q.addAfter('k', 500);
    expect(q.delayedLen()).toBe(1);
    const t0 = Date.now();
    expect(await q.get()).toBe('k');
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(25);
    expect(waited).toBeLessThan(190);
    q.done('k');
    await sleep(250);
    expect(q.len()).toBe(0); // the later adds were dropped
    await q.shutDown();
  });

  it('shutDown stops handing out keys and waits for in-flight keys within a bound', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    const key = await q.get();
    expect(key).toBe('a');
    let finished = false;
    setTimeout(() => {
      finished = true;
      q.done('a');
    }, 30);
    expect(await q.shutDown(1000)).toBe(true);
    expect(finished).toBe(true);
    expect(await q.get()).toBeUndefined();
    q.add('c');
    expect(q.len()).toBe(0);

    const q2 = new WorkQueue();
    q2.add('slow');
    await q2.get();
    expect(await q2.shutDown(20)).toBe(false); // never done: the bound ends the wait
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const q = new WorkQueue();
    const pending = q.get();
    setTimeout(() => q.add('late'), 10);
    expect(await pending).toBe('late');
    expect(q.inProgress()).toBe(1);
    q.done('late');
    expect(q.inProgress()).toBe(0);
    await q.shutDown();
  });
});
