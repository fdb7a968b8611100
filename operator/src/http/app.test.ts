import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '../../../trainer/src/report/events.ts';
import { checkToken } from '../controller/progress.ts';
import type { KubeObject } from '../k8s/types.ts';
import { OperatorMetrics } from '../metrics/registry.ts';
import { buildApp, type AppOptions } from './app.ts';

const secret = (ns: string, search: string, token: string): KubeObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: `${search}-progress`, namespace: ns, labels: { 'iac.dev/search': search } },
  data: { token: Buffer.from(token).toString('base64') },
});

const secrets = [secret('lab', 'acdc', 'token-acdc'), secret('lab', 'brats', 'token-brats')];
const event = { type: 'progress', phase: 'search', epoch: 3, maxEpochs: 200, valDice: 0.81, stableEdges: 2, totalEdges: 8, edgeJsd: { '0.1': 0.02 } };

function app(overrides: Partial<AppOptions> = {}, leader = true) {
  let ready = false;
  const accepted: Array<{ ns: string; name: string; event: ProgressEvent }> = [];
  const metrics = new OperatorMetrics({ searches: () => [], exportsSearchMetrics: () => leader, queueDepth: () => 0 });
  const a = buildApp({
    metrics,
    isReady: () => ready,
    progress: {
      accepting: () => leader,
      checkToken: (ns, name, token) => checkToken(secrets, ns, name, token),
      accept: (ns, name, e) => accepted.push({ ns, name, event: e }),
    },
    ...overrides,
  });
  return { a, accepted, metrics, setReady: (r: boolean) => (ready = r) };
}

const post = (a: ReturnType<typeof app>['a'], headers: Record<string, string>, payload: unknown) =>
  a.inject({ method: 'POST', url: '/v1/progress', headers: { 'content-type': 'application/json', ...headers }, payload: JSON.stringify(payload) });

const good = { authorization: 'Bearer token-acdc', 'x-iacsearch': 'lab/acdc' };

describe('HTTP app', () => {
  it('serves /healthz always and /readyz once the informers synced', async () => {
    const { a, setReady } = app();
    expect((await a.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await a.inject({ url: '/readyz' })).statusCode).toBe(503);
    setReady(true);
    expect((await a.inject({ url: '/readyz' })).statusCode).toBe(200);
  });

  it('serves Prometheus metrics', async () => {
    const { a, metrics } = app();
    metrics.setLeader(true);
    const res = await a.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/plain/);
    expect(res.body).toMatch(/^iac_operator_leader 1$/m);
  });

  it('accepts a valid progress event with the search\'s own token', async () => {
    const { a, accepted, metrics } = app();
    const res = await post(a, good, event);
    expect(res.statusCode).toBe(202);
    expect(accepted).toEqual([{ ns: 'lab', name: 'acdc', event }]);
    expect(await metrics.metrics()).toMatch(/iac_operator_progress_requests_total\{code="202"\} 1/);
  });

  it('answers 401 without a token or with a wrong one', async () => {
    const { a, accepted } = app();
    const none = await post(a, { 'x-iacsearch': 'lab/acdc' }, event);
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toMatch(/Authorization/);
    const wrong = await post(a, { ...good, authorization: 'Bearer nope' }, event);
    expect(wrong.statusCode).toBe(401);
    const basic = await post(a, { ...good, authorization: 'Basic dG9rZW4tYWNkYw==' }, event);
    expect(basic.statusCode).toBe(401);
    expect(accepted).toEqual([]);
  });

  it('answers 403 when one search\'s token reports for another', async () => {
    const { a, accepted } = app();
    const res = await post(a, { authorization: 'Bearer token-brats', 'x-iacsearch': 'lab/acdc' }, event);
    expect(res.statusCode).toBe(403);
    // the same token in another namespace is not that search either
    const otherNs = await post(a, { authorization: 'Bearer token-acdc', 'x-iacsearch': 'prod/acdc' }, event);
    expect(otherNs.statusCode).toBe(403);
    expect(accepted).toEqual([]);
  });

  it('answers 400 naming the header or the field', async () => {
    const { a } = app();
    const noHeader = await post(a, { authorization: 'Bearer token-acdc' }, event);
    expect(noHeader.statusCode).toBe(400);
    expect(noHeader.json().error).toMatch(/X-IACSearch/);
    const bad = await post(a, good, { ...event, epoch: 1.5, valDice: 2 });
    expect(bad.statusCode).toBe(400);
    const fields = bad.json().issues.map((i: { field: string }) => i.field);
    expect(fields).toEqual(expect.arrayContaining(['epoch', 'valDice']));
    expect(bad.json().error).toMatch(/epoch: /);
    const missing = await post(a, good, { type: 'progress', phase: 'search' });
    expect(missing.json().issues.map((i: { field: string }) => i.field)).toEqual(expect.arrayContaining(['epoch', 'maxEpochs']));
    const notJson = await a.inject({ method: 'POST', url: '/v1/progress', headers: { ...good, 'content-type': 'application/json' }, payload: '{not json' });
    expect(notJson.statusCode).toBe(400);
  });

  it('answers 413 to a body over the limit', async () => {
    const { a, accepted } = app({ bodyLimit: 1024 });
    const big = { ...event, edgeJsd: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`0.${i}`, 0.1])) };
    const res = await post(a, good, big);
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toMatch(/1024 bytes/);
    expect(accepted).toEqual([]);
  });

  it('answers 429 when one search reports too fast, without limiting the others', async () => {
    let t = 0;
    const { a } = app({ rateLimit: { burst: 3, perSecond: 1 }, now: () => t });
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await post(a, good, event)).statusCode);
    expect(codes).toEqual([202, 202, 202, 429, 429]);
    const limited = await post(a, good, event);
    expect(limited.headers['retry-after']).toBe('1');
    expect((await post(a, { authorization: 'Bearer token-brats', 'x-iacsearch': 'lab/brats' }, event)).statusCode).toBe(202);
    t += 1000;
    expect((await post(a, good, event)).statusCode).toBe(202);
  });

  it('a standby forwards progress to the leader, once', async () => {
    const leader = app();
    await leader.a.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = (leader.a.server.address() as { port: number }).port;
      const standby = app({}, false);
      const sb = buildApp({
        metrics: standby.metrics,
        isReady: () => true,
        progress: {
          accepting: () => false,
          leaderURL: () => `http://127.0.0.1:${port}`,
          checkToken: (ns, name, token) => checkToken(secrets, ns, name, token),
          accept: () => {
            throw new Error('a standby keeps no progress');
          },
        },
      });
      const res = await post(sb, good, event);
      expect(res.statusCode).toBe(202);
      expect(leader.accepted).toEqual([{ ns: 'lab', name: 'acdc', event }]);
      // the standby checks the token itself before forwarding
      expect((await post(sb, { ...good, authorization: 'Bearer token-brats' }, event)).statusCode).toBe(403);
      // a request another standby already forwarded is not forwarded again
      expect((await post(sb, { ...good, 'x-iac-forwarded': '1' }, event)).statusCode).toBe(503);
      expect(leader.accepted).toHaveLength(1);
    } finally {
      await leader.a.close();
    }
  });

  it('a standby without a known leader answers 503 to progress', async () => {
    const { a, accepted } = app({}, false);
    const res = await post(a, good, event);
    expect(res.statusCode).toBe(503);
    expect(accepted).toEqual([]);
  });
});
