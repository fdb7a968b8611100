// The narrow Kubernetes API the controller needs. The controller, leader election and
// the HTTP server depend on this interface only; client.ts implements it on node:https
// and fake.ts in memory for unit tests.
import type { KubeObject } from '../reconcile/types.ts';

export type { KubeObject };

/** A resource type, named the way the REST paths need it. */
export interface ResourceType {
  /** "v1" for the core group, else "<group>/<version>". */
  apiVersion: string;
  kind: string;
  /** Lower-case plural used in REST paths, e.g. "pods". */
  plural: string;
  namespaced: boolean;
}

export interface ListOptions {
  /** Omitted: all namespaces. */
  namespace?: string;
  labelSelector?: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchOptions extends ListOptions {
  resourceVersion: string;
}

export interface WatchHandle {
  /** Ends the watch; onClose is not called for a stop the caller asked for. */
  stop(): void;
}

export interface KubeApi {
  list(type: ResourceType, opts?: ListOptions): Promise<ListResult>;
  /**
   * Streams changes after opts.resourceVersion. onEvent gets each event; an ERROR event
   * carries a metav1.Status (code 410 when the resource version is too old). onClose is
   * called once when the stream ends: without an error for a normal end (server timeout),
   * with the error otherwise.
   */
  watch(
    type: ResourceType,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    onClose: (err?: unknown) => void,
  ): Promise<WatchHandle>;
  /** undefined when the object does not exist. */
  get(type: ResourceType, namespace: string | undefined, name: string): Promise<KubeObject | undefined>;
  /** Throws ApiError 409 when the object exists. */
  create(object: KubeObject): Promise<KubeObject>;
  /** Replaces the object; metadata.resourceVersion is a precondition (409 when stale). */
  replace(object: KubeObject): Promise<KubeObject>;
  /** false when the object was already gone (404). Children are deleted in the background. */
  delete(type: ResourceType, namespace: string | undefined, name: string): Promise<boolean>;
  /** JSON merge patch (RFC 7386) of the object itself. */
  mergePatch(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject>;
  /** JSON merge patch of the status subresource. */
  mergePatchStatus(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject>;
}

/** An error answer of the API server, with its HTTP status code. */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly code: number;
  readonly reason: string | undefined;
  constructor(code: number, message: string, reason?: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

export function errorCode(err: unknown): number | undefined {
  if (err instanceof ApiError) return err.code;
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; statusCode?: unknown };
    if (typeof e.code === 'number') return e.code;
    if (typeof e.statusCode === 'number') return e.statusCode;
  }
  return undefined;
}

export const isNotFound = (err: unknown): boolean => errorCode(err) === 404;
export const isConflict = (err: unknown): boolean => errorCode(err) === 409;
export const isGone = (err: unknown): boolean => errorCode(err) === 410;

/** "<namespace>/<name>", or "<name>" for a cluster-scoped object: the workqueue key. */
export function objectKey(obj: { metadata: { namespace?: string; name: string } }): string {
  return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : obj.metadata.name;
}

export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: undefined, name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}
