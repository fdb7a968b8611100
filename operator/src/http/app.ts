// The operator's HTTP server, built by a factory so tests drive it with inject():
// /metrics, /healthz, /readyz and POST /v1/progress (trainer progress events).
import Fastify, { type FastifyInstance } from 'fastify';
import { ProgressEvent } from '../../../trainer/src/report/events.ts';
import type { TokenCheck } from '../controller/progress.ts';
import { silentLogger, type Logger } from '../controller/log.ts';
import type { OperatorMetrics } from '../metrics/registry.ts';

export interface ProgressSink {
  /** False on a standby replica: only the leader keeps progress. */
  accepting(): boolean;
  /** On a standby: the leader's base URL (from the Lease), to forward progress to. */
  leaderURL?(): string | undefined;
  checkToken(namespace: string, name: string, token: string): TokenCheck;
  accept(namespace: string, name: string, event: ProgressEvent): void;
}

export interface AppOptions {
  metrics: OperatorMetrics;
  /** Ready when the informers have synced. */
  isReady: () => boolean;
  progress?: ProgressSink;
  /** Largest accepted request body in bytes. */
  bodyLimit?: number;
  /** Per-search token bucket of progress requests. */
  rateLimit?: { burst: number; perSecond: number };
  log?: Logger;
  now?: () => number;
}

/** Marks a progress request a standby forwarded to the leader (never forwarded again). */
export const FORWARDED_HEADER = 'x-iac-forwarded';

/** "<namespace>/<name>" as in the X-IACSearch header, both DNS labels/subdomains. */
const SEARCH_HEADER = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;

class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly now: () => number;
  constructor(burst: number, perSecond: number, now: () => number) {
    this.burst = burst;
    this.perSecond = perSecond;
    this.now = now;
  }
  /** Takes a token for key; returns 0 when allowed, else the seconds until the next token. */
  take(key: string): number {
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    this.buckets.set(key, b);
    if (this.buckets.size > 10_000) this.buckets.delete(this.buckets.keys().next().value!);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.perSecond);
  }
}

export function buildApp(opts: AppOptions): FastifyInstance {
  const log = opts.log ?? silentLogger;
  const app = Fastify({ logger: false, bodyLimit: opts.bodyLimit ?? 64 * 1024 });
  const limiter = new RateLimiter(opts.rateLimit?.burst ?? 20, opts.rateLimit?.perSecond ?? 2, opts.now ?? Date.now);

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
    const message =
      err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? `request body is larger than ${opts.bodyLimit ?? 64 * 1024} bytes`
        : err.message;
    return reply.code(status).send({ error: message });
  });

  app.post('/v1/progress', async (req, reply) => {
    const sink = opts.progress;
    if (!sink) return reply.code(404).send({ error: 'progress is not enabled on this server' });
    const header = req.headers['x-iacsearch'];
    const m = typeof header === 'string' ? SEARCH_HEADER.exec(header) : null;
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
    const check = sink.checkToken(namespace, name, token);
    if (check === 'unauthorized') {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: `the bearer token is not the token of IACSearch ${namespace}/${name}` });
    }
    if (check === 'forbidden') {
      return reply.code(403).send({ error: `the bearer token belongs to another IACSearch; it cannot report for ${namespace}/${name}` });
    }
    const wait = limiter.take(`${namespace}/${name}`);
    if (wait > 0) {
      return reply.code(429).header('retry-after', String(wait)).send({ error: `too many progress events for ${namespace}/${name}; retry in ${wait} s` });
    }
    const parsed = ProgressEvent.safeParse(req.body);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => ({ field: i.path.map(String).join('.') || '(body)', message: i.message }));
      return reply.code(400).send({
        error: `invalid progress event: ${issues.map((i) => `${i.field}: ${i.message}`).join('; ')}`,
        issues,
      });
    }
    if (!sink.accepting()) {
      // A standby hands the event to the leader once; it never keeps progress itself.
      const leader = req.headers[FORWARDED_HEADER] ? undefined : sink.leaderURL?.();
      if (!leader) {
        return reply.code(503).header('retry-after', '5').send({ error: 'this operator replica is not the leader; progress is advisory, send the next event later' });
      }
      try {
        const res = await fetch(new URL('/v1/progress', leader), {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: auth as string, 'x-iacsearch': header as string, [FORWARDED_HEADER]: '1' },
          body: JSON.stringify(parsed.data),
          signal: AbortSignal.timeout(1500),
        });
        const text = await res.text();
        return reply.code(res.status).type('application/json').send(text);
      } catch (err) {
        log.warn('http: could not forward progress to the leader', { leader, error: err instanceof Error ? err.message : String(err) });
        return reply.code(503).header('retry-after', '5').send({ error: 'the leader could not be reached; send the next event later' });
      }
    }
    sink.accept(namespace, name, parsed.data);
    log.debug('progress accepted', { namespace, name, phase: parsed.data.phase, epoch: parsed.data.epoch });
    return reply.code(202).send({ status: 'accepted' });
  });

  return app;
}
