import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '../../../contract/src/index.ts';
import { OperatorMetrics } from '../metrics/registry.ts';
import { buildApp, type AppOptions } from './app.ts';

// The token check itself (the search's own Secret, owner reference, constant time) is
// tested in controller/progress.test.ts; here a search's token is a plain lookup.
const tokens: Record<string, string> = { 'lab/acdc': 'token-acdc', 'lab/brats': 'token-brats' };
const event = { type: 'progress', phase: 'search', epoch: 3, maxEpochs: 200, valDice: 0.81, stableEdges: 2, totalEdges: 8, edgeJsd: { '0.1': 0.02 } };

function app(overrides: Partial<AppOptions> = {}, leader = true) {
  let ready = false;
  const accepted: Array<{ ns: string; name: string; event: ProgressEvent }> = [];
  const checked: string[] = [];
  const metrics = new OperatorMetrics({ searches: () => [], exportsSearchMetrics: () => leader, queueDepth: () => 0 });
  const a = buildApp({
    metrics,
    isReady: () => ready,
    progress: {
      accepting: () => leader,
      checkToken: (ns, name, token) => {
        checked.push(`${ns}/${name}`);
        return tokens[`${ns}/${name}`] === token ? 'ok' : 'unauthorized';
      },
      accept: (ns, name, e) => {
        accepted.push({ ns, name, event: e });
        return undefined;
      },
    },
    ...overrides,
  });
  return { a, accepted, checked, metrics, setReady: (r: boolean) => (ready = r) };
}

type App = ReturnType<typeof app>['a'];

const post = (a: App, headers: Record<string, string>, payload: unknown, remoteAddress?: string) =>
  a.inject({
    method: 'POST',
    url: '/v1/progress',
    headers: { 'content-type': 'application/json', ...headers },
    payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    ...(remoteAddress && { remoteAddress }),
  });

const good = { authorization: 'Bearer token-acdc', 'x-iacsearch': 'lab/acdc' };
const fieldsOf = (res: { json: () => { issues: Array<{ field: string }> } }) => res.json().issues.map((i) => i.field);

/** Opens a TCP connection to the app; resolves with the socket and everything the server sent until it closed. */
async function rawConnection(a: App): Promise<{ socket: Socket; closed: Promise<string> }> {
  const { port } = a.server.address() as { port: number };
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined); // writes after the server hung up
  let received = '';
  socket.on('data', (d) => (received += d.toString()));
  // 'close' comes after a reset too (the server may answer a slow client with RST)
  const closed = new Promise<string>((resolve) => socket.once('close', () => resolve(received)));
  await once(socket, 'connect');
  return { socket, closed };
}

/** Writes one byte every `ms` until the socket closes (a slow-body client). */
function drip(socket: Socket, byte: string, ms: number): () => void {
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(byte);
  }, ms);
  socket.once('close', () => clearInterval(timer));
  return () => clearInterval(timer);
}

const progressHead = (headers: Record<string, string>, contentLength: number) =>
  `POST /v1/progress HTTP/1.1\r\nHost: op\r\nContent-Type: application/json\r\nContent-Length: ${contentLength}\r\n` +
  Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('') +
  '\r\n';

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

  it("accepts a valid progress event with the search's own token", async () => {
    const { a, accepted, metrics } = app();
    const res = await post(a, good, event);
    expect(res.statusCode).toBe(202);
    expect(accepted).toEqual([{ ns: 'lab', name: 'acdc', event }]);
    expect(await metrics.metrics()).toMatch(/iac_operator_progress_requests_total\{code="202"\} 1/);
  });

  it("answers 401 without a token, with a wrong one, or with another search's", async () => {
    const { a, accepted, checked } = app();
    const none = await post(a, { 'x-iacsearch': 'lab/acdc' }, event);
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toMatch(/Authorization/);
    const wrong = await post(a, { ...good, authorization: 'Bearer nope' }, event);
    expect(wrong.statusCode).toBe(401);
    const basic = await post(a, { ...good, authorization: 'Basic dG9rZW4tYWNkYw==' }, event);
    expect(basic.statusCode).toBe(401);
    // a token is checked against the named search's Secret only: another search's token is just wrong
    const other = await post(a, { authorization: 'Bearer token-brats', 'x-iacsearch': 'lab/acdc' }, event);
    expect(other.statusCode).toBe(401);
    const otherNs = await post(a, { authorization: 'Bearer token-acdc', 'x-iacsearch': 'prod/acdc' }, event);
    expect(otherNs.statusCode).toBe(401);
    // an absurdly long token is refused before any check
    const long = await post(a, { ...good, authorization: `Bearer ${'x'.repeat(5000)}` }, event);
    expect(long.statusCode).toBe(401);
    expect(checked).toEqual(['lab/acdc', 'lab/acdc', 'prod/acdc']);
    expect(accepted).toEqual([]);
  });

  it('answers 400 naming the header or the field', async () => {
    const { a } = app();
    const noHeader = await post(a, { authorization: 'Bearer token-acdc' }, event);
    expect(noHeader.statusCode).toBe(400);
    expect(noHeader.json().error).toMatch(/X-IACSearch/);
    const bad = await post(a, good, { ...event, epoch: 1.5, valDice: 2 });
    expect(bad.statusCode).toBe(400);
    expect(fieldsOf(bad)).toEqual(expect.arrayContaining(['epoch', 'valDice']));
    expect(bad.json().error).toMatch(/epoch: /);
    const missing = await post(a, good, { type: 'progress', phase: 'search' });
    expect(fieldsOf(missing)).toEqual(expect.arrayContaining(['epoch', 'maxEpochs']));
    const notJson = await post(a, good, '{not json');
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

  // Attack 6: wrong-token floods are limited per client address and in total before any
  // token is looked at, so they cannot take the event loop from /healthz and the Lease.
  it('limits each client address and all clients together before any token check (429 with Retry-After)', async () => {
    let t = 0;
    const { a, checked, accepted } = app({ clientRateLimit: { burst: 3, perSecond: 1 }, globalRateLimit: { burst: 5, perSecond: 2 }, now: () => t });
    const wrong = { ...good, authorization: 'Bearer guess' };
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await post(a, wrong, event, '10.0.0.1')).statusCode);
    expect(codes).toEqual([401, 401, 401, 429]);
    const limited = await post(a, good, event, '10.0.0.1'); // the right token too: the limit comes first
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('1');
    expect(limited.json().error).toMatch(/10\.0\.0\.1/);
    expect(checked).toHaveLength(3);
    // another address has its own bucket, until the global one runs dry (5 requests in all)
    expect((await post(a, good, event, '10.0.0.2')).statusCode).toBe(202);
    expect((await post(a, wrong, event, '10.0.0.2')).statusCode).toBe(401);
    const global = await post(a, good, event, '10.0.0.3');
    expect(global.statusCode).toBe(429);
    expect(global.headers['retry-after']).toBe('1');
    expect(checked).toHaveLength(5);
    // health and metrics are never limited
    expect((await a.inject({ url: '/healthz', remoteAddress: '10.0.0.1' })).statusCode).toBe(200);
    t += 1000;
    expect((await post(a, good, event, '10.0.0.3')).statusCode).toBe(202);
    expect(accepted).toHaveLength(2);
  });

  // Attack 9: events are bounded and consistent before anything is kept.
  it.each([
    ['epoch', { epoch: 201, maxEpochs: 200 }],
    ['stableEdges', { stableEdges: 9, totalEdges: 8 }],
    ['activeOperations', { activeOperations: 50, totalOperations: 40 }],
    ['maxEpochs', { epoch: 1, maxEpochs: 1e9 }],
    ['totalOperations', { activeOperations: 1, totalOperations: 1e12 }],
    ['time', { time: `2025-01-01T00:00:00Z${'x'.repeat(60_000)}` }],
    ['time', { time: 'yesterday' }],
    ['etaSeconds', { etaSeconds: 1e308 }],
    ['etaMaxSeconds', { etaMaxSeconds: 1e308 }],
    ['epochSeconds', { epochSeconds: 1e308 }],
    ['trainLoss', { trainLoss: -1e308 }],
    ['edgeJsd', { edgeJsd: { ['0.'.padEnd(500, '1')]: 0.1 } }],
    ['edgeJsd', { edgeJsd: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`${i >> 4}.${i & 15}`, 0.1])) }],
  ])('refuses an event with a bad %s (400 naming it)', async (field, change) => {
    const { a, accepted, metrics } = app();
    const res = await post(a, good, { ...event, ...change });
    expect(res.statusCode).toBe(400);
    expect(
      fieldsOf(res).some((f: string) => f === field || f.startsWith(`${field}.`)),
      JSON.stringify(fieldsOf(res)),
    ).toBe(true);
    expect(res.json().error).toMatch(new RegExp(`(^|; |: )${field}[.:]`));
    expect(res.json().error.length).toBeLessThan(1000); // names the field, does not echo the input
    expect(accepted).toEqual([]);
    expect(await metrics.metrics()).toMatch(/iac_operator_progress_requests_total\{code="400"\} 1/);
  });

  it('refuses numbers JSON cannot carry (1e999 reads as Infinity)', async () => {
    const { a, accepted } = app();
    const res = await post(a, good, JSON.stringify(event).replace('"epoch":3', '"epoch":3,"etaSeconds":1e999'));
    expect(res.statusCode).toBe(400);
    expect(fieldsOf(res)).toContain('etaSeconds');
    expect(accepted).toEqual([]);
  });

  it('answers 400 naming the field when the event does not fit the search (the sink checks the spec)', async () => {
    const { a } = app({
      progress: {
        accepting: () => true,
        checkToken: () => 'ok',
        accept: (_ns, _name, e) => (e.epoch > 20 ? [{ field: 'epoch', message: 'more than spec.search.maxEpochs (20)' }] : undefined),
      },
    });
    const res = await post(a, good, { ...event, epoch: 21 });
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: 'invalid progress event: epoch: more than spec.search.maxEpochs (20)', issues: [{ field: 'epoch' }] });
    expect((await post(a, good, event)).statusCode).toBe(202);
  });

  it('a standby forwards progress to the leader, once', async () => {
    const leader = app();
    await leader.a.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = (leader.a.server.address() as { port: number }).port;
      const standby = app({ progress: undefined }, false);
      const sb = buildApp({
        metrics: standby.metrics,
        isReady: () => true,
        progress: {
          accepting: () => false,
          leaderURL: () => `http://127.0.0.1:${port}`,
          checkToken: (ns, name, token) => (tokens[`${ns}/${name}`] === token ? 'ok' : 'unauthorized'),
          accept: () => {
            throw new Error('a standby keeps no progress');
          },
        },
      });
      const res = await post(sb, good, event);
      expect(res.statusCode).toBe(202);
      expect(leader.accepted).toEqual([{ ns: 'lab', name: 'acdc', event }]);
      // the standby checks the token itself before forwarding
      expect((await post(sb, { ...good, authorization: 'Bearer token-brats' }, event)).statusCode).toBe(401);
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

// Attack 7: without timeouts a client that sends its body one byte every few seconds
// holds its connection (and a request slot) for as long as it likes. Each test waits for
// the server to close the socket; nothing here measures elapsed time.
describe('HTTP timeouts', () => {
  it('are on by default: headers, whole request, idle socket and keep-alive', () => {
    const { a } = app();
    const server = a.server;
    expect(server.headersTimeout).toBeGreaterThan(0);
    expect(server.requestTimeout).toBeGreaterThan(0);
    expect(server.headersTimeout).toBeLessThanOrEqual(server.requestTimeout);
    expect(server.requestTimeout).toBeLessThanOrEqual(60_000);
    expect(server.timeout).toBeGreaterThan(0);
    expect(server.keepAliveTimeout).toBeGreaterThan(0);
    expect(server.keepAliveTimeout).toBeLessThanOrEqual(60_000);
  });

  // Short timeouts; the idle timeout stays long so that only the one under test can cut.
  const short = (t: NonNullable<AppOptions['timeouts']>): Partial<AppOptions> => ({
    timeouts: { headersMs: 60_000, requestMs: 60_000, idleMs: 60_000, keepAliveMs: 60_000, checkIntervalMs: 20, ...t },
  });

  /** Runs `fn` with a raw connection to the app listening on loopback with these timeouts. */
  async function onRawConnection(
    t: NonNullable<AppOptions['timeouts']>,
    fn: (conn: Awaited<ReturnType<typeof rawConnection>>, accepted: ReturnType<typeof app>['accepted']) => Promise<void>,
  ) {
    const { a, accepted } = app(short(t));
    await a.listen({ host: '127.0.0.1', port: 0 });
    try {
      await fn(await rawConnection(a), accepted);
    } finally {
      await a.close();
    }
  }

  it.each([
    // authenticated: the request timeout ends it (408, or a reset)
    ["with the search's token", good, /^(|HTTP\/1\.1 408 [\s\S]*)$/],
    // refused before the body is read, and the connection closed at once
    ['without a token', { 'x-iacsearch': 'lab/acdc' }, /^HTTP\/1\.1 401 [\s\S]*connection: close/i],
  ])('cut off a client that sends its body one byte at a time (%s)', async (_what, headers, answered) => {
    await onRawConnection({ headersMs: 200, requestMs: 400 }, async ({ socket, closed }, accepted) => {
      socket.write(progressHead(headers, 10_000));
      drip(socket, ' ', 25);
      expect(await closed).toMatch(answered);
      expect(accepted).toEqual([]);
    });
  });

  it('cut off a client that never finishes its headers', async () => {
    await onRawConnection({ headersMs: 200, requestMs: 400 }, async ({ socket, closed }) => {
      socket.write('POST /v1/progress HTTP/1.1\r\nHost: op\r\n');
      drip(socket, 'x', 25); // one endless header line
      expect(await closed).toMatch(/^(|HTTP\/1\.1 (408|431|400)[\s\S]*)$/);
    });
  });

  it('close a connection that sends nothing', async () => {
    await onRawConnection({ idleMs: 200 }, async ({ closed }) => {
      await closed;
    });
  });

  it('close a kept-alive connection that stays idle after its request', async () => {
    await onRawConnection({ keepAliveMs: 200 }, async ({ socket, closed }) => {
      socket.write('GET /healthz HTTP/1.1\r\nHost: op\r\n\r\n');
      const answer = await closed;
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
      expect(answer).toMatch(/keep-alive/i);
    });
  });
});
