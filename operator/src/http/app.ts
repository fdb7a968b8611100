// The operator's HTTP server, built by a factory so tests drive it with inject():
// /metrics, /healthz, /readyz and POST /v1/progress (trainer progress events).
//
// POST /v1/progress faces anything that can reach the port, so everything cheap comes
// first: token buckets per client address and for all clients (before the request is
// looked at), then the X-IACSearch header and the bearer token (one Secret, one hash),
// then the per-search bucket, and only then is the body read and checked. Timeouts on
// headers, the whole request, idle sockets and kept-alive connections cut off slow clients.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { HEADER_FORWARDED, HEADER_SEARCH, type ProgressEvent } from '../../../contract/src/index.ts';
import { MAX_TOKEN_LENGTH, parseProgressEvent, type ProgressIssue, type TokenCheck } from '../controller/progress.ts';
import { silentLogger, type Logger } from '../controller/log.ts';
import type { OperatorMetrics } from '../metrics/registry.ts';

export interface ProgressSink {
  /** False on a standby replica: only the leader keeps progress. */
  accepting(): boolean;
  /** On a standby: the leader's base URL (from the Lease), to forward progress to. */
  leaderURL?(): string | undefined;
  /** 'ok' only for the token in the progress Secret the operator created for that search. */
  checkToken(namespace: string, name: string, token: string): TokenCheck;
  /** Keeps the event; or returns the fields that do not fit the search's spec (answered with 400). */
  accept(namespace: string, name: string, event: ProgressEvent): ProgressIssue[] | undefined;
}

export interface RateLimit {
  burst: number;
  perSecond: number;
}

/** HTTP timeouts in milliseconds; 0 turns one off. */
export interface HttpTimeouts {
  /** Until a request's headers are in (Node's headersTimeout; at most requestMs). */
  headersMs?: number;
  /** Until the whole request, body included, is in (Node's requestTimeout); then 408 and close. */
  requestMs?: number;
  /** A socket with no traffic at all for this long is closed (fastify's connectionTimeout). */
  idleMs?: number;
  /** A kept-alive connection is closed after this long without a new request. */
  keepAliveMs?: number;
  /** How often Node checks the headers and request timeouts (connectionsCheckingInterval). */
  checkIntervalMs?: number;
}

export const DEFAULT_TIMEOUTS: Required<HttpTimeouts> = {
  headersMs: 10_000,
  requestMs: 30_000,
  idleMs: 60_000,
  keepAliveMs: 15_000,
  checkIntervalMs: 1_000,
};

/** Progress requests per client address, and from all clients together (before any token check). */
export const DEFAULT_CLIENT_RATE_LIMIT: RateLimit = { burst: 200, perSecond: 100 };
export const DEFAULT_GLOBAL_RATE_LIMIT: RateLimit = { burst: 1000, perSecond: 500 };

export interface AppOptions {
  metrics: OperatorMetrics;
  /** Ready when the informers have synced. */
  isReady: () => boolean;
  progress?: ProgressSink;
  /** Largest accepted request body in bytes. */
  bodyLimit?: number;
  /** Per-search token bucket of authenticated progress requests. */
  rateLimit?: RateLimit;
  /** Per-client-address token bucket of progress requests, before the token is checked. */
  clientRateLimit?: RateLimit;
  /** One token bucket for all progress requests, before the token is checked. */
  globalRateLimit?: RateLimit;
  timeouts?: HttpTimeouts;
  log?: Logger;
  now?: () => number;
}

/** "<namespace>/<name>" as in the X-IACSearch header, both DNS labels/subdomains. */
const SEARCH_HEADER = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;
const MAX_SEARCH_HEADER = 63 + 1 + 253;

/** Token buckets by key; at most maxKeys buckets (the oldest goes first). */
class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly now: () => number;
  private readonly maxKeys: number;
  constructor(limit: RateLimit, now: () => number, maxKeys = 10_000) {
    this.burst = limit.burst;
    this.perSecond = limit.perSecond;
    this.now = now;
    this.maxKeys = maxKeys;
  }
  /** Takes a token for key; returns 0 when allowed, else the whole seconds until the next token. */
  take(key: string): number {
    const now = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
      if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    b.tokens = Math.min(this.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perSecond));
  }
}

/** What the checks before the body established about a progress request. */
interface Admitted {
  namespace: string;
  name: string;
  header: string;
  authorization: string;
}
const admitted = new WeakMap<FastifyRequest, Admitted>();

const tooMany = (reply: FastifyReply, wait: number, error: string) => reply.code(429).header('retry-after', String(wait)).send({ error });

const invalid = (reply: FastifyReply, issues: ProgressIssue[]) =>
  reply.code(400).send({ error: `invalid progress event: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`, issues });

export function buildApp(opts: AppOptions): FastifyInstance {
  const log = opts.log ?? silentLogger;
  const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  const headersMs = t.requestMs > 0 && t.headersMs > 0 ? Math.min(t.headersMs, t.requestMs) : t.headersMs || t.requestMs;
  const app = Fastify({
    logger: false,
    bodyLimit: opts.bodyLimit ?? 64 * 1024,
    connectionTimeout: t.idleMs,
    requestTimeout: t.requestMs,
    keepAliveTimeout: t.keepAliveMs,
    http: { headersTimeout: headersMs, requestTimeout: t.requestMs, keepAliveTimeout: t.keepAliveMs, connectionsCheckingInterval: t.checkIntervalMs },
  });
  const now = opts.now ?? Date.now;
  const perSearch = new RateLimiter(opts.rateLimit ?? { burst: 20, perSecond: 2 }, now);
  const perClient = new RateLimiter(opts.clientRateLimit ?? DEFAULT_CLIENT_RATE_LIMIT, now);
  const global = new RateLimiter(opts.globalRateLimit ?? DEFAULT_GLOBAL_RATE_LIMIT, now, 1);

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_req, reply) => {
    if (opts.isReady()) return { status: 'ready' };
    return reply.code(503).send({ status: 'not ready', reason: 'informers have not synced yet' });
  });

  app.get('/metrics', async (_req, reply) => {
    const text = await opts.metrics.metrics();
    return reply.type(opts.metrics.registry.contentType).send(text);
  });

  app.addHook('onResponse', async (req, reply) => {
    if (req.routeOptions.url === '/v1/progress') opts.metrics.progressEvents.inc({ code: String(reply.statusCode) });
  });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    const status = err.statusCode ?? 500;
    if (status >= 500) log.error('http: request failed', { error: err.message });
    const message = err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' ? `request body is larger than ${opts.bodyLimit ?? 64 * 1024} bytes` : err.message;
    return reply.code(status).send({ error: message });
  });

  /**
   * Everything about a progress request that needs no body: limits, header, token. A
   * request refused here is answered before its body is read, and its connection is
   * closed (Connection: close) rather than kept to drain a body nobody wants.
   */
  const admit = async (req: FastifyRequest, reply: FastifyReply) => {
    reply.header('connection', 'close');
    const sink = opts.progress;
    if (!sink) return reply.code(404).send({ error: 'progress is not enabled on this server' });
    const client = req.ip;
    let wait = perClient.take(client);
    if (wait > 0) return tooMany(reply, wait, `too many progress requests from ${client}; retry in ${wait} s`);
    wait = global.take('*');
    if (wait > 0) return tooMany(reply, wait, `too many progress requests; retry in ${wait} s`);
    const header = req.headers[HEADER_SEARCH];
    const m = typeof header === 'string' && header.length <= MAX_SEARCH_HEADER ? SEARCH_HEADER.exec(header) : null;
    if (!m) {
      return reply.code(400).send({ error: "header X-IACSearch: required, as '<namespace>/<name>' of the IACSearch" });
    }
    const namespace = m[1];
    const name = m[3];
    const auth = req.headers.authorization;
    const token = typeof auth === 'string' && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : '';
    if (!token) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: `header Authorization: required, as 'Bearer <token>' with the token of Secret ${name}-progress` });
    }
    if (token.length > MAX_TOKEN_LENGTH || sink.checkToken(namespace, name, token) !== 'ok') {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: `the bearer token is not the token of IACSearch ${namespace}/${name}` });
    }
    wait = perSearch.take(`${namespace}/${name}`);
    if (wait > 0) return tooMany(reply, wait, `too many progress events for ${namespace}/${name}; retry in ${wait} s`);
    reply.removeHeader('connection');
    admitted.set(req, { namespace, name, header: header as string, authorization: auth as string });
  };

  app.post('/v1/progress', { onRequest: admit }, async (req, reply) => {
    const sink = opts.progress!;
    const { namespace, name, header, authorization } = admitted.get(req)!;
    const parsed = parseProgressEvent(req.body);
    if (!parsed.ok) return invalid(reply, parsed.issues);
    if (!sink.accepting()) {
      // A standby hands the event to the leader once; it never keeps progress itself.
      const leader = req.headers[HEADER_FORWARDED] ? undefined : sink.leaderURL?.();
      if (!leader) {
        return reply
          .code(503)
          .header('retry-after', '5')
          .send({ error: 'this operator replica is not the leader; progress is advisory, send the next event later' });
      }
      try {
        const res = await fetch(new URL('/v1/progress', leader), {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization, [HEADER_SEARCH]: header, [HEADER_FORWARDED]: '1' },
          body: JSON.stringify(parsed.event),
          signal: AbortSignal.timeout(1500),
        });
        const text = await res.text();
        return reply.code(res.status).type('application/json').send(text);
      } catch (err) {
        log.warn('http: could not forward progress to the leader', { leader, error: err instanceof Error ? err.message : String(err) });
        return reply.code(503).header('retry-after', '5').send({ error: 'the leader could not be reached; send the next event later' });
      }
    }
    const refused = sink.accept(namespace, name, parsed.event);
    if (refused?.length) return invalid(reply, refused);
    log.debug('progress accepted', { namespace, name, phase: parsed.event.phase, epoch: parsed.event.epoch });
    return reply.code(202).send({ status: 'accepted' });
  });

  return app;
}
