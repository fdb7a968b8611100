// KubeApi on @kubernetes/client-node: the only module that imports it. Requests go
// through the library's authenticated HTTP layer (kubeconfig or in-cluster service
// account, TLS, exec credentials) but carry plain JSON, so objects reach reconcile
// exactly as the API server serves them (no typed-model conversion of dates or
// dropping of unknown fields). Watches use the library's Watch.
import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  PatchStrategy,
  RequestContext,
  Watch,
} from '@kubernetes/client-node';
import { statSync } from 'node:fs';
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

export interface ClientOptions {
  /** Path of a kubeconfig file; without it: in-cluster service account, else $KUBECONFIG or ~/.kube/config. */
  kubeconfig?: string;
  /** Context of the kubeconfig to use. */
  context?: string;
  /** Server-side timeout of one watch request (s); the informer resumes after it. */
  watchTimeoutSeconds?: number;
  /** Timeout of one non-watch request (ms). */
  requestTimeoutMs?: number;
}

const WATCH_INACTIVITY_MS = 90_000;
/** How long requests share one connection pool before a fresh one takes over (see shareConnections). */
const POOL_MAX_AGE_MS = 5 * 60_000;

interface Closable {
  close?: () => Promise<void>;
}

export function loadKubeConfig(opts: ClientOptions = {}): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    const source = opts.kubeconfig ? `--kubeconfig ${opts.kubeconfig}` : process.env.KUBECONFIG ? `KUBECONFIG=${process.env.KUBECONFIG}` : 'the default kubeconfig';
    throw new Error(`cannot load ${source}: ${err instanceof Error ? err.message : String(err)} (pass --kubeconfig <file>, set KUBECONFIG, or run in a pod with a service account)`);
  }
  if (opts.context) kc.setCurrentContext(opts.context);
  if (!kc.getCurrentCluster()) {
    throw new Error('no Kubernetes cluster configured: pass --kubeconfig <file>, set KUBECONFIG, or run in a pod with a service account');
  }
  return kc;
}

/** The namespace of the pod this process runs in, when in a cluster. */
export function inClusterNamespace(): string | undefined {
  return process.env.POD_NAMESPACE || undefined;
}

export class ClientNodeKubeApi implements KubeApi {
  private readonly kc: KubeConfig;
  private readonly http = new IsomorphicFetchHttpLibrary();
  private readonly server: string;
  private readonly watchTimeoutSeconds: number;
  private readonly requestTimeoutMs: number;
  private pool?: { dispatcher: Closable; key: string; since: number };

  constructor(kc: KubeConfig, opts: ClientOptions = {}) {
    this.kc = kc;
    this.server = kc.getCurrentCluster()!.server.replace(/\/+$/, '');
    this.watchTimeoutSeconds = opts.watchTimeoutSeconds ?? 300;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
  }

  private async request(
    method: HttpMethod,
    path: string,
    opts: { query?: Record<string, string | undefined>; body?: unknown; contentType?: string } = {},
  ): Promise<{ status: number; body: unknown }> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== '') url.searchParams.set(k, v);
    const ctx = new RequestContext(url.toString(), method);
    ctx.setHeaderParam('Accept', 'application/json');
    if (opts.body !== undefined) {
      ctx.setHeaderParam('Content-Type', opts.contentType ?? 'application/json');
      ctx.setBody(JSON.stringify(opts.body));
    }
    ctx.setSignal(AbortSignal.timeout(this.requestTimeoutMs));
    await this.kc.applySecurityAuthentication(ctx);
    this.shareConnections(ctx);
    const response = await this.http.send(ctx).toPromise();
    const text = await response.body.text();
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (response.httpStatusCode >= 400) {
      const status = (body && typeof body === 'object' ? body : {}) as { message?: string; reason?: string };
      throw new ApiError(
        response.httpStatusCode,
        `${method} ${path}: ${response.httpStatusCode} ${status.message ?? (typeof body === 'string' ? body : '')}`.trim(),
        status.reason,
      );
    }
    return { status: response.httpStatusCode, body };
  }

  /**
   * The library gives every request a connection pool of its own: a TLS handshake and a
   * fresh TLS context (CA, certificate and key parsed again) per request, most of the
   * operator's CPU under load. Requests share one pool instead; it is replaced when the
   * kubeconfig's credentials change and every POOL_MAX_AGE_MS, so that credentials an
   * exec plugin or a rotated file hands out are picked up. A replaced pool closes once
   * its requests in flight are done.
   */
  private shareConnections(ctx: RequestContext): void {
    const fresh = ctx.getDispatcher() as Closable | undefined;
    if (!fresh) return;
    const key = this.credentialKey();
    const now = Date.now();
    if (this.pool && this.pool.key === key && now - this.pool.since < POOL_MAX_AGE_MS) {
      ctx.setDispatcher(this.pool.dispatcher as never);
      void fresh.close?.().catch(() => {}); // never connected: nothing to wait for
      return;
    }
    const old = this.pool;
    this.pool = { dispatcher: fresh, key, since: now };
    void old?.dispatcher.close?.().catch(() => {});
  }

  private credentialKey(): string {
    const c = this.kc.getCurrentCluster();
    const u = this.kc.getCurrentUser();
    const file = (f?: string) => {
      if (!f) return '';
      try {
        return `${f}@${statSync(f).mtimeMs}`;
      } catch {
        return f;
      }
    };
    return [c?.server, c?.caData, file(c?.caFile), c?.skipTLSVerify, c?.tlsServerName, u?.name, u?.certData, file(u?.certFile), u?.keyData, file(u?.keyFile)].join('\0');
  }

  /** Closes the shared connections (at shutdown). */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.dispatcher.close?.().catch(() => {});
  }

  async list(type: ResourceType, opts: ListOptions = {}): Promise<ListResult> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    let resourceVersion = '';
    do {
      const { body } = await this.request(HttpMethod.GET, resourcePath(type, opts.namespace), {
        query: { labelSelector: opts.labelSelector, limit: '500', continue: cont },
      });
      const list = body as { items?: KubeObject[]; metadata?: { resourceVersion?: string; continue?: string } };
      // list items carry neither apiVersion nor kind
      for (const item of list.items ?? []) items.push({ ...item, apiVersion: type.apiVersion, kind: type.kind });
      resourceVersion = list.metadata?.resourceVersion ?? resourceVersion;
      cont = list.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  async watch(
    type: ResourceType,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    onClose: (err?: unknown) => void,
  ): Promise<WatchHandle> {
    let stopped = false;
    const watcher = new Watch(this.kc);
    // client-node ends a watch after 30 s without data, before the API server's bookmarks
    // (about one a minute) arrive: an idle watch would reconnect every 30 s and, once its
    // version is compacted, relist. 90 s still detects a dead connection.
    (watcher as unknown as { requestTimeoutMs: number }).requestTimeoutMs = WATCH_INACTIVITY_MS;
    const controller = await watcher.watch(
      resourcePath(type, opts.namespace),
      {
        labelSelector: opts.labelSelector || undefined,
        resourceVersion: opts.resourceVersion || undefined,
        allowWatchBookmarks: true,
        timeoutSeconds: this.watchTimeoutSeconds,
      },
      (phase: string, obj: KubeObject) => {
        if (!stopped) onEvent(phase as WatchEventType, obj);
      },
      (err: unknown) => {
        if (stopped) return;
        stopped = true;
        const code = (err as { statusCode?: number; code?: number } | null)?.statusCode;
        onClose(err ? (typeof code === 'number' ? new ApiError(code, (err as Error).message ?? String(err)) : err) : undefined);
      },
    );
    return {
      stop: () => {
        stopped = true;
        controller.abort();
      },
    };
  }

  async get(type: ResourceType, namespace: string | undefined, name: string): Promise<KubeObject | undefined> {
    try {
      const { body } = await this.request(HttpMethod.GET, resourcePath(type, namespace, name));
      return body as KubeObject;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return undefined;
      throw err;
    }
  }

  async create(object: KubeObject): Promise<KubeObject> {
    const type = resourceTypeOf(object.kind);
    const { body } = await this.request(HttpMethod.POST, resourcePath(type, object.metadata.namespace), { body: object });
    return body as KubeObject;
  }

  async replace(object: KubeObject): Promise<KubeObject> {
    const type = resourceTypeOf(object.kind);
    const { body } = await this.request(HttpMethod.PUT, resourcePath(type, object.metadata.namespace, object.metadata.name), {
      body: object,
    });
    return body as KubeObject;
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string): Promise<boolean> {
    try {
      await this.request(HttpMethod.DELETE, resourcePath(type, namespace, name), {
        body: { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background' },
      });
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.code === 404) return false;
      throw err;
    }
  }

  async mergePatch(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject> {
    const { body } = await this.request(HttpMethod.PATCH, resourcePath(type, namespace, name), {
      body: patch,
      contentType: PatchStrategy.MergePatch,
    });
    return body as KubeObject;
  }

  async mergePatchStatus(
    type: ResourceType,
    namespace: string | undefined,
    name: string,
    patch: Record<string, unknown>,
  ): Promise<KubeObject> {
    const { body } = await this.request(HttpMethod.PATCH, resourcePath(type, namespace, name, 'status'), {
      body: patch,
      contentType: PatchStrategy.MergePatch,
    });
    return body as KubeObject;
  }
}
