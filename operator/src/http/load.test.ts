// Attack 6 as an in-process load test: labelled Secrets made by anyone who may create
// Secrets must not slow the progress endpoint nor /healthz. Each request goes through the
// whole fastify stack with inject(); the figures are printed, and only a loose ratio is
// asserted (the machine may be busy with other work).
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { Controller } from '../controller/controller.ts';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import type { KubeObject } from '../k8s/types.ts';
import type { AppOptions } from './app.ts';
import { appFor } from '../../testing/app.ts';

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

/** An operator's Secret cache holding `decoys` hand-made labelled Secrets next to one real search. */
async function operatorWith(decoys: number, limits: Partial<AppOptions> = {}) {
  const api = new FakeKubeApi();
  const search = await api.create({
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearch',
    metadata: { name: 'acdc', namespace: 'lab' },
    spec: { dataset: { format: 'phantom' }, search: { maxEpochs: 20 } },
  });
  api.seed({
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: 'acdc-progress',
      namespace: 'lab',
      labels: { 'iac.dev/search': 'acdc' },
      ownerReferences: [{ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', name: 'acdc', uid: search.metadata.uid!, controller: true }],
    },
    data: { token: Buffer.from('token-acdc').toString('base64') },
  });
  for (let i = 0; i < decoys; i++) {
    const secret: KubeObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: `s${i}-progress`, namespace: `tenant-${i % 40}`, labels: { 'iac.dev/search': `s${i}` } },
      data: { token: Buffer.from(`decoy-token-${i}-${'x'.repeat(32)}`).toString('base64') },
    };
    api.seed(secret);
  }
  const controller = new Controller({
    api,
    reconcile: () => {
      throw new Error('not reconciling here');
    },
    settings: { defaultImage: 'trainer:test' },
  });
  controller.startInformers();
  await until(() => controller.hasSynced() && controller.secrets.list().length === decoys + 1);
  const app = appFor(controller, limits);
  return { app, controller };
}

const event = JSON.stringify({ type: 'progress', phase: 'search', epoch: 2, maxEpochs: 20 });

/**
 * Sends `count` wrong-token progress requests, `concurrency` at a time, while /healthz is
 * probed every 10 ms. A probe's latency counts from when it was due, so time the event
 * loop spent blocked (what a kubelet probe or a Lease renewal would wait) is in it.
 */
async function flood(app: Awaited<ReturnType<typeof operatorWith>>['app'], count: number, concurrency: number) {
  const codes = new Map<number, number>();
  let sent = 0;
  let finished = false;
  const health: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const poller = (async () => {
    let due = performance.now();
    while (!finished) {
      due += 10;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const res = await app.inject({ url: '/healthz' });
      if (res.statusCode !== 200) throw new Error(`/healthz answered ${res.statusCode}`);
      health.push(Math.max(0, performance.now() - due)); // a timer may fire a fraction of a ms early
      due = Math.max(due, performance.now() - 10); // a late probe does not make the next ones late
    }
  })();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (sent < count) {
        sent++;
        // As requests from sockets do, each comes in a turn of the event loop of its own
        // (inject() alone would run the whole flood without ever letting a timer fire).
        await new Promise((r) => setImmediate(r));
        const res = await app.inject({
          method: 'POST',
          url: '/v1/progress',
          headers: { 'content-type': 'application/json', authorization: `Bearer wrong-${sent}`, 'x-iacsearch': 'lab/acdc' },
          payload: event,
          remoteAddress: `10.1.0.${w}`,
        });
        codes.set(res.statusCode, (codes.get(res.statusCode) ?? 0) + 1);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  finished = true;
  await poller;
  loop.disable();
  health.sort((a, b) => a - b);
  const pct = (p: number) => health[Math.min(health.length - 1, Math.floor(p * health.length))] ?? NaN;
  return {
    perSecond: count / seconds,
    codes: Object.fromEntries(codes),
    healthP50: pct(0.5),
    healthP99: pct(0.99),
    healthMax: health.at(-1) ?? NaN,
    healthSamples: health.length,
    loopP99: loop.percentile(99) / 1e6,
    loopMax: loop.max / 1e6,
  };
}

const unlimited: Partial<AppOptions> = {
  clientRateLimit: { burst: 1e9, perSecond: 1e9 },
  globalRateLimit: { burst: 1e9, perSecond: 1e9 },
};

describe('progress endpoint under a wrong-token flood with 2,000 labelled Secrets', () => {
  it('answers as fast as with 10 Secrets, and /healthz stays quick', async () => {
    const few = await operatorWith(10, unlimited);
    const many = await operatorWith(2000, unlimited);
    try {
      const runs: Record<'few' | 'many', Array<Awaited<ReturnType<typeof flood>>>> = { few: [], many: [] };
      await flood(few.app, 200, 16); // warm-up (JIT)
      await flood(many.app, 200, 16);
      for (let round = 0; round < 3; round++) {
        runs.few.push(await flood(few.app, 2000, 16));
        runs.many.push(await flood(many.app, 2000, 16));
      }
      const best = (rs: Array<Awaited<ReturnType<typeof flood>>>) => rs.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
      const f = best(runs.few);
      const m = best(runs.many);
      const fmt = (r: typeof f) =>
        `${r.perSecond.toFixed(0)} wrong-token requests/s (codes ${JSON.stringify(r.codes)}); /healthz p50 ${r.healthP50.toFixed(2)} ms, p99 ${r.healthP99.toFixed(2)} ms, max ${r.healthMax.toFixed(2)} ms over ${r.healthSamples} probes; event-loop delay p99 ${r.loopP99.toFixed(1)} ms, max ${r.loopMax.toFixed(1)} ms`;
      console.log(`10 labelled Secrets:    ${fmt(f)}`);
      console.log(`2,000 labelled Secrets: ${fmt(m)}`);
      expect(f.codes).toEqual({ 401: 2000 });
      expect(m.codes).toEqual({ 401: 2000 });
      // Loose: checking every Secret per request made it about 50 times slower.
      expect(m.perSecond).toBeGreaterThan(f.perSecond / 4);
    } finally {
      await few.controller.shutdown();
      await many.controller.shutdown();
    }
  });

  it('with the default limits, a flood from one address is turned away cheaply (429) before any token check', async () => {
    const many = await operatorWith(2000);
    try {
      let checks = 0;
      const check = many.controller.checkProgressToken.bind(many.controller);
      many.controller.checkProgressToken = (ns, name, token) => {
        checks++;
        return check(ns, name, token);
      };
      const codes = new Map<number, number>();
      const t0 = performance.now();
      for (let i = 0; i < 2000; i++) {
        const res = await many.app.inject({
          method: 'POST',
          url: '/v1/progress',
          headers: { 'content-type': 'application/json', authorization: `Bearer wrong-${i}`, 'x-iacsearch': 'lab/acdc' },
          payload: event,
          remoteAddress: '10.9.9.9',
        });
        codes.set(res.statusCode, (codes.get(res.statusCode) ?? 0) + 1);
      }
      const perSecond = 2000 / ((performance.now() - t0) / 1000);
      console.log(
        `default limits, one address: ${perSecond.toFixed(0)} requests/s answered, codes ${JSON.stringify(Object.fromEntries(codes))}, ${checks} token checks`,
      );
      expect(codes.get(429)).toBeGreaterThan(1000);
      expect(checks).toBe(codes.get(401) ?? 0);
    } finally {
      await many.controller.shutdown();
    }
  });
});
