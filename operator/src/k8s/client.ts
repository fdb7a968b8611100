// KubeApi over node:https (node:http for a plain-http server such as kubectl proxy): the
// only module that talks to the API server. Requests and watches carry plain JSON, so
// objects reach reconcile exactly as the API server serves them (no typed-model
// conversion of dates, no dropping of unknown fields). Where the server and the
// credentials come from is kubeconfig.ts.
//
// Connections: one keep-alive pool for requests and one for watches, both built from one
// TLS context and replaced only when the TLS material changes (a rotated certificate
// file, an exec plugin's new client certificate). A replaced pool closes once its
// requests and watches in flight are done.
import http from 'node:http';
import https from 'node:https';
import { createSecureContext, type SecureContext } from 'node:tls';
import { type Credentials, inClusterNamespace, KubeConfig, loadKubeConfig, type LoadKubeConfigOptions } from './kubeconfig.ts';
import { resourcePath, resourceTypeOf } from './resources.ts';
import {
  ApiError,
  type KubeApi,
  type KubeObject,
  type ListOptions,
  type ListResult,
  type ResourceType,
  type WatchEventType,
  type WatchHandle,
  type WatchOptions,
} from './types.ts';

export { inClusterNamespace, KubeConfig, loadKubeConfig, type LoadKubeConfigOptions };

/**
 * The field manager of every write (create, update, patch): managedFields then name the
 * operator as the owner of what it set, instead of the user agent's default.
 */
export const FIELD_MANAGER = 'iac-operator';
const WRITE_QUERY = { fieldManager: FIELD_MANAGER };

export interface ClientOptions {
  /** Server-side timeout of one watch request (s); the informer resumes after it. */
  watchTimeoutSeconds?: number;
  /** Timeout of one non-watch request (ms). */
  requestTimeoutMs?: number;
  /**
   * A watch that receives nothing for this long (ms) ends with a TimeoutError (the
   * informer resumes it). The API server sends a bookmark about once a minute.
   */
  watchInactivityMs?: number;
}

const WATCH_INACTIVITY_MS = 90_000;
/**
 * The most connections requests open at once; more wait in the agent for a free one. The
 * operator's own concurrency is small (8 workers by default, leader election, events,
 * status patches), but a burst (a resync of many searches, paginated lists of several
 * namespaces) should neither open a connection, TLS handshake and API-server goroutine
 * per request nor queue behind a handful: 32 keeps that bounded. Watches do not count:
 * they hold their connection for minutes and have a pool of their own.
 */
const MAX_REQUEST_SOCKETS = 32;
/** An idle kept-alive connection is closed after this long (Go's http.Transport: 90 s). */
const IDLE_SOCKET_MS = 90_000;
const USER_AGENT = 'iacnas-operator';
const MERGE_PATCH = 'application/merge-patch+json';
/** A reused keep-alive connection that the server had closed: safe to send once more. */
const IDEMPOTENT = new Set(['GET', 'PUT', 'DELETE']);

interface Pool {
  generation: number;
  requests: http.Agent;
  watches: http.Agent;
  /** Requests and watches in flight on this pool. */
  active: number;
  retired: boolean;
}

interface RequestOptions {
  query?: Record<string, string | undefined>;
  body?: unknown;
  contentType?: string;
}

function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError' });
}

function apiError(method: string, path: string, code: number, text: string): ApiError {
  let status: { message?: string; reason?: string } = {};
  try {
    const body: unknown = text ? JSON.parse(text) : undefined;
    if (body && typeof body === 'object') status = body as typeof status;
  } catch {
    status = { message: text };
  }
  return new ApiError(code, `${method} ${path}: ${code} ${status.message ?? ''}`.trim(), status.reason);
}

export class HttpKubeApi implements KubeApi {
  readonly config: KubeConfig;
  private readonly server: URL;
  private readonly watchTimeoutSeconds: number;
  private readonly requestTimeoutMs: number;
  private readonly watchInactivityMs: number;
  private pool?: Pool;
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly watches = new Set<WatchHandle>();

  constructor(config: KubeConfig, opts: ClientOptions = {}) {
    this.config = config;
    this.server = new URL(config.server);
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.watchInactivityMs = opts.watchInactivityMs ?? WATCH_INACTIVITY_MS;
  }

  private url(path: string, query: Record<string, string | undefined> = {}): URL {
    const url = new URL(this.config.server + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') url.searchParams.set(k, v);
    return url;
  }

  /** The pool for these credentials: the current one, or a new one when the TLS material changed. */
  private acquire(creds: Credentials): Pool {
    let pool = this.pool;
    if (!pool || pool.generation !== creds.tlsGeneration) {
      const old = pool;
      pool = this.newPool(creds);
      this.pool = pool;
      if (old) {
        old.retired = true;
        this.maybeDestroy(old);
      }
    }
    pool.active++;
    return pool;
  }

  private release(pool: Pool): void {
    pool.active--;
    this.maybeDestroy(pool);
  }

  private maybeDestroy(pool: Pool): void {
    if (pool.retired && pool.active <= 0) {
      pool.requests.destroy();
      pool.watches.destroy();
    }
  }

  private newPool(creds: Credentials): Pool {
    const common = { keepAlive: true, timeout: IDLE_SOCKET_MS, scheduling: 'lifo' as const };
    if (this.server.protocol === 'http:') {
      return {
        generation: creds.tlsGeneration,
        requests: new http.Agent({ ...common, maxSockets: MAX_REQUEST_SOCKETS }),
        watches: new http.Agent({ ...common, timeout: undefined }),
        active: 0,
        retired: false,
      };
    }
    // One TLS context (CA, certificate and key parsed once) for every connection of the pool.
    const { ca, cert, key, rejectUnauthorized, servername } = creds.tls;
    let secureContext: SecureContext;
    try {
      secureContext = createSecureContext({ ca, cert, key });
    } catch (err) {
      throw new Error(
        `the TLS settings of ${this.config.source} (context ${this.config.contextName}) are not usable: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    const tls = { secureContext, rejectUnauthorized, ...(servername ? { servername } : {}) };
    return {
      generation: creds.tlsGeneration,
      requests: new https.Agent({ ...common, ...tls, maxSockets: MAX_REQUEST_SOCKETS }),
      // no socket timeout: a watch may be quiet for a minute; its inactivity timer ends it
      watches: new https.Agent({ ...common, ...tls, timeout: undefined }),
      active: 0,
      retired: false,
    };
  }

  private headers(creds: Credentials): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json', 'user-agent': USER_AGENT };
    if (creds.authorization) h.authorization = creds.authorization;
    return h;
  }

  private async request(method: string, path: string, opts: RequestOptions = {}): Promise<unknown> {
    const url = this.url(path, opts.query);
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    let retriedStale = false;
    let retriedAuth = false;
    for (;;) {
      const creds = await this.config.credentials();
      let res: { status: number; text: string };
      try {
        const p = this.send(method, path, url, creds, payload, opts.contentType);
        this.inflight.add(p);
        try {
          res = await p;
        } finally {
          this.inflight.delete(p);
        }
      } catch (err) {
        if (!retriedStale && (err as { staleConnection?: boolean }).staleConnection && IDEMPOTENT.has(method)) {
          retriedStale = true;
          continue;
        }
        throw err;
      }
      if (res.status === 401 && !retriedAuth && this.config.unauthorized(creds)) {
        // an expired exec credential or a rotated token: once more with fresh ones
        retriedAuth = true;
        continue;
      }
      if (res.status >= 400) throw apiError(method, path, res.status, res.text);
      if (!res.text) return undefined;
      try {
        return JSON.parse(res.text);
      } catch {
        return res.text;
      }
    }
  }

  private send(
    method: string,
    path: string,
    url: URL,
    creds: Credentials,
    payload: string | undefined,
    contentType = 'application/json',
  ): Promise<{ status: number; text: string }> {
    const pool = this.acquire(creds);
    return new Promise<{ status: number; text: string }>((resolve, reject) => {
      let settled = false;
      let gotResponse = false;
      let timedOut: Error | undefined;
      let timer: NodeJS.Timeout | undefined;
      const done = (err: unknown, value?: { status: number; text: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.release(pool);
        if (timedOut) return reject(timedOut);
        if (err) {
          const e = err as NodeJS.ErrnoException;
          const wrapped = Object.assign(new Error(`${method} ${path}: ${e.message ?? String(err)}`, { cause: err }), {
            code: e.code,
            // the server closed an idle kept-alive connection as it was reused
            staleConnection: req.reusedSocket && !gotResponse && (e.code === 'ECONNRESET' || e.code === 'EPIPE'),
          });
          return reject(wrapped);
        }
        resolve(value!);
      };
      const headers = this.headers(creds);
      if (payload !== undefined) {
        headers['content-type'] = contentType;
        headers['content-length'] = String(Buffer.byteLength(payload));
      }
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, agent: pool.requests }, (res) => {
        gotResponse = true;
        res.setEncoding('utf8');
        let text = '';
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => done(undefined, { status: res.statusCode ?? 0, text }));
        res.on('error', (err) => done(err));
        res.on('close', () => {
          if (!res.complete) done(new Error('connection closed before the answer was complete'));
        });
      });
      timer = setTimeout(() => {
        timedOut = timeoutError(`${method} ${path}: no answer within ${this.requestTimeoutMs} ms`);
        req.destroy(timedOut);
      }, this.requestTimeoutMs);
      req.on('error', (err) => done(err));
      req.end(payload);
    });
  }

  /**
   * Closes the connections (at shutdown): stops the watches, waits for the requests in
   * flight, then closes the pool.
   */
  async close(): Promise<void> {
    for (const w of [...this.watches]) w.stop();
    await Promise.allSettled([...this.inflight]);
    const pool = this.pool;
    this.pool = undefined;
    if (pool) {
      pool.retired = true;
      this.maybeDestroy(pool);
    }
  }

  async list(type: ResourceType, opts: ListOptions = {}): Promise<ListResult> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const body = await this.request('GET', resourcePath(type, opts.namespace), {
        query: { labelSelector: opts.labelSelector, limit: '500', continue: cont },
      });
      const list = (body ?? {}) as { items?: KubeObject[]; metadata?: { resourceVersion?: string; continue?: string } };
      // list items carry neither apiVersion nor kind
      for (const item of list.items ?? []) items.push({ ...item, apiVersion: type.apiVersion, kind: type.kind });
      resourceVersion = list.metadata?.resourceVersion ?? resourceVersion;
      cont = list.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  /**
   * A watch request: newline-delimited JSON events until the server ends the stream
   * (timeoutSeconds). onClose(undefined) after a normal end; onClose(ApiError) when the
   * server refuses the watch (410: the version is too old, list again); onClose(err) on a
   * network error or after watchInactivityMs without data (a TimeoutError).
   */
  async watch(
    type: ResourceType,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    onClose: (err?: unknown) => void,
  ): Promise<WatchHandle> {
    const path = resourcePath(type, opts.namespace);
    const url = this.url(path, {
      watch: 'true',
      allowWatchBookmarks: 'true',
      labelSelector: opts.labelSelector,
      resourceVersion: opts.resourceVersion,
      timeoutSeconds: String(this.watchTimeoutSeconds),
    });
    const creds = await this.config.credentials();
    const pool = this.acquire(creds);
    let ended = false;
    let timer: NodeJS.Timeout | undefined;
    const end = (): boolean => {
      if (ended) return false;
      ended = true;
      clearTimeout(timer);
      this.watches.delete(handle);
      this.release(pool);
      return true;
    };
    const finish = (err?: unknown) => {
      if (!end()) return;
      if (err) req.destroy();
      onClose(err);
    };
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(timeoutError(`GET ${path}: watch received nothing for ${this.watchInactivityMs / 1000} s`)), this.watchInactivityMs);
    };
    const handle: WatchHandle = {
      stop: () => {
        if (end()) req.destroy();
      },
    };
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, { method: 'GET', headers: this.headers(creds), agent: pool.watches }, (res) => {
      arm();
      res.setEncoding('utf8');
      const code = res.statusCode ?? 0;
      let buffered = '';
      const line = (text: string) => {
        if (ended || !text.trim()) return;
        let event: { type?: WatchEventType; object?: KubeObject };
        try {
          event = JSON.parse(text);
        } catch {
          finish(new Error(`GET ${path}: the watch stream sent a line that is not JSON: ${text.slice(0, 200)}`));
          return;
        }
        try {
          onEvent(event.type as WatchEventType, event.object as KubeObject);
        } catch (err) {
          finish(err);
        }
      };
      res.on('data', (chunk: string) => {
        if (ended) return;
        arm();
        buffered += chunk;
        if (code >= 400) return;
        for (let nl = buffered.indexOf('\n'); nl >= 0 && !ended; nl = buffered.indexOf('\n')) {
          const text = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          line(text);
        }
      });
      res.on('end', () => {
        if (code >= 400) {
          if (code === 401) this.config.unauthorized(creds);
          finish(apiError('GET', path, code, buffered));
          return;
        }
        line(buffered);
        finish();
      });
      res.on('error', (err) => finish(err));
      res.on('close', () => {
        if (!res.complete) finish(new Error(`GET ${path}: the watch connection closed`));
      });
    });
    req.on('error', (err) => finish(err));
    arm(); // until the answer's headers arrive
    req.end();
    this.watches.add(handle);
    return handle;
  }

  async get(type: ResourceType, namespace: string | undefined, name: string): Promise<KubeObject | undefined> {
    try {
      return (await this.request('GET', resourcePath(type, namespace, name))) as KubeObject;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return undefined;
      throw err;
    }
  }

  async create(object: KubeObject): Promise<KubeObject> {
    const type = resourceTypeOf(object.kind);
    return (await this.request('POST', resourcePath(type, object.metadata.namespace), { body: object, query: WRITE_QUERY })) as KubeObject;
  }

  async replace(object: KubeObject): Promise<KubeObject> {
    const type = resourceTypeOf(object.kind);
    return (await this.request('PUT', resourcePath(type, object.metadata.namespace, object.metadata.name), { body: object, query: WRITE_QUERY })) as KubeObject;
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string): Promise<boolean> {
    try {
      await this.request('DELETE', resourcePath(type, namespace, name), {
        body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' },
      });
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return false;
      throw err;
    }
  }

  async mergePatch(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject> {
    return (await this.request('PATCH', resourcePath(type, namespace, name), { body: patch, contentType: MERGE_PATCH, query: WRITE_QUERY })) as KubeObject;
  }

  async mergePatchStatus(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject> {
    return (await this.request('PATCH', resourcePath(type, namespace, name, 'status'), {
      body: patch,
      contentType: MERGE_PATCH,
      query: WRITE_QUERY,
    })) as KubeObject;
  }
}
