// A list-and-watch cache of one resource type (client-go's reflector + indexer). It lists,
// then watches from the list's resource version; a watch that ends normally is resumed
// from the last seen version, 410 Gone triggers a fresh list, and any other error
// restarts the informer after an exponential backoff (client-node's informer stops on
// such errors). Cached objects are frozen: the cache is shared and never mutated.
import type { KubeApi, KubeObject, ResourceType, WatchHandle } from '../k8s/types.ts';
import { errorCode, isGone, objectKey } from '../k8s/types.ts';
import type { Logger } from './log.ts';

export type InformerEvent = 'add' | 'update' | 'delete';
export type InformerHandler = (event: InformerEvent, object: KubeObject, old?: KubeObject) => void;

export interface InformerOptions {
  /** Namespaces to list and watch; undefined for all namespaces. */
  namespaces?: string[];
  labelSelector?: string;
  /** First restart delay after an error (ms); doubles up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called each time the informer restarts after an error. */
  onRestart?: (resource: string, err: unknown) => void;
  log?: Logger;
  /**
   * Reduces each object before it is cached (client-go's SetTransform): the cache holds
   * only what its readers use. Applied after the fields every cache drops (stripObject).
   */
  transform?: (object: KubeObject) => KubeObject;
  /** Indexes cached objects by the key this returns (undefined: not indexed); read with byIndex(). */
  indexBy?: (object: KubeObject) => string | undefined;
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * What no reader of the cache uses and every object carries: managedFields (often larger
 * than the object itself) and kubectl's copy of the last applied object.
 */
export function stripObject(object: KubeObject): KubeObject {
  const { managedFields: _managed, ...metadata } = object.metadata as KubeObject['metadata'] & { managedFields?: unknown };
  if (metadata.annotations && LAST_APPLIED in metadata.annotations) {
    const { [LAST_APPLIED]: _applied, ...annotations } = metadata.annotations;
    metadata.annotations = annotations;
  }
  return { ...object, metadata };
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/** One list+watch loop over one namespace (or all). */
class Reflector {
  private readonly api: KubeApi;
  private readonly type: ResourceType;
  readonly namespace: string | undefined;
  private readonly owner: Informer;
  private readonly opts: InformerOptions;
  private stopped = false;
  private watchHandle: WatchHandle | undefined;
  private lastRV = '';
  private backoffMs: number;
  private wakeUp: (() => void) | undefined;
  synced = false;
  /** False from an error until the next successful list: the cache may miss changes meanwhile. */
  current = false;

  constructor(owner: Informer, api: KubeApi, type: ResourceType, namespace: string | undefined, opts: InformerOptions) {
    this.owner = owner;
    this.api = api;
    this.type = type;
    this.namespace = namespace;
    this.opts = opts;
    this.backoffMs = opts.initialBackoffMs ?? 200;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.watchHandle?.stop();
    this.wakeUp?.();
  }

  private async run(): Promise<void> {
    let needList = true;
    while (!this.stopped) {
      try {
        if (needList) {
          const { items, resourceVersion } = await this.api.list(this.type, {
            namespace: this.namespace,
            labelSelector: this.opts.labelSelector,
          });
          if (this.stopped) return;
          this.owner.replaceNamespace(this.namespace, items);
          this.lastRV = resourceVersion;
          this.synced = true;
          this.current = true;
          // Listed again: the next error starts from the first delay (after an outage
          // the caches come back soon after the API server, not up to the last delay later).
          this.backoffMs = this.opts.initialBackoffMs ?? 200;
        }
        const outcome = await this.watchOnce();
        if (outcome === 'gone') {
          needList = true;
          this.current = false;
          continue;
        }
        // A normal end (server timeout): resume from the last version without a list.
        needList = false;
        this.backoffMs = this.opts.initialBackoffMs ?? 200;
      } catch (err) {
        if (this.stopped) return;
        if (isGone(err)) {
          needList = true;
          this.current = false;
          continue;
        }
        needList = true;
        this.current = false;
        this.opts.onRestart?.(this.type.plural, err);
        this.opts.log?.warn('informer restarts after an error', {
          resource: this.type.plural,
          namespace: this.namespace,
          error: err instanceof Error ? err.message : String(err),
          hint: hintFor(err, this.type),
          backoffMs: this.backoffMs,
        });
        await this.sleep(this.backoffMs);
        this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
      }
    }
  }

  /** Watches until the stream ends: resolves 'ended' or 'gone', rejects on an error. */
  private watchOnce(): Promise<'ended' | 'gone'> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (f: () => void) => {
        if (!settled) {
          settled = true;
          f();
        }
      };
      this.api
        .watch(
          this.type,
          { namespace: this.namespace, labelSelector: this.opts.labelSelector, resourceVersion: this.lastRV },
          (eventType, object) => {
            if (this.stopped || settled) return;
            if (eventType === 'ERROR') {
              const code = (object as { code?: number }).code;
              this.watchHandle?.stop();
              if (code === 410) settle(() => resolve('gone'));
              else settle(() => reject(Object.assign(new Error(`watch error: ${(object as { message?: string }).message ?? code}`), { code })));
              return;
            }
            if (object.metadata?.resourceVersion) this.lastRV = object.metadata.resourceVersion;
            if (eventType === 'BOOKMARK') return;
            if (eventType === 'DELETED') this.owner.remove(object);
            else this.owner.upsert(object);
          },
          (err) => {
            if (err === undefined || err === null || isTimeout(err)) settle(() => resolve('ended'));
            else if (isGone(err)) settle(() => resolve('gone'));
            else settle(() => reject(err));
          },
        )
        .then(
          (handle) => {
            this.watchHandle = handle;
            if (this.stopped) {
              handle.stop();
              settle(() => resolve('ended'));
            }
          },
          (err) => settle(() => reject(err)),
        );
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeUp = undefined;
        resolve();
      }, ms);
      t.unref?.();
      this.wakeUp = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}

/** What to do about the usual causes of a failing list. */
function hintFor(err: unknown, type: ResourceType): string | undefined {
  const code = errorCode(err);
  if (code === 404) return `the API server does not serve ${type.plural}.${type.apiVersion}: install the CRD (kubectl apply -f crds/)`;
  if (code === 401 || code === 403) {
    return `not allowed to list/watch ${type.plural}: check the operator's RBAC, or restrict it with --namespaces to namespaces it has a Role in`;
  }
  return undefined;
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}

export class Informer {
  readonly type: ResourceType;
  private readonly cache = new Map<string, KubeObject>();
  private readonly index = new Map<string, Map<string, KubeObject>>();
  private readonly handlers: InformerHandler[] = [];
  private readonly reflectors: Reflector[];
  private readonly transform?: (object: KubeObject) => KubeObject;
  private readonly indexBy?: (object: KubeObject) => string | undefined;

  constructor(api: KubeApi, type: ResourceType, opts: InformerOptions = {}) {
    this.type = type;
    this.transform = opts.transform;
    this.indexBy = opts.indexBy;
    const namespaces = opts.namespaces?.length ? opts.namespaces : [undefined];
    this.reflectors = namespaces.map((ns) => new Reflector(this, api, type, ns, opts));
  }

  on(handler: InformerHandler): void {
    this.handlers.push(handler);
  }

  start(): void {
    for (const r of this.reflectors) r.start();
  }

  stop(): void {
    for (const r of this.reflectors) r.stop();
  }

  /** True once every namespace has been listed at least once. */
  hasSynced(): boolean {
    return this.reflectors.every((r) => r.synced);
  }

  /**
   * True when no watch covering `namespace` (every namespace when omitted) has failed
   * since its last list: the cache misses nothing it could know there.
   */
  isCurrent(namespace?: string): boolean {
    return this.reflectors.every((r) => r.current || (namespace !== undefined && r.namespace !== undefined && r.namespace !== namespace));
  }

  get(namespace: string | undefined, name: string): KubeObject | undefined {
    return this.cache.get(namespace ? `${namespace}/${name}` : name);
  }

  list(): KubeObject[] {
    return [...this.cache.values()];
  }

  /** The cached objects whose indexBy key is `key` (needs the indexBy option). */
  byIndex(key: string): KubeObject[] {
    const hit = this.index.get(key);
    return hit ? [...hit.values()] : [];
  }

  private setCached(key: string, obj: KubeObject | undefined, old: KubeObject | undefined): void {
    if (obj) this.cache.set(key, obj);
    else this.cache.delete(key);
    if (!this.indexBy) return;
    const before = old && this.indexBy(old);
    const after = obj && this.indexBy(obj);
    if (before !== undefined && before !== after) {
      const set = this.index.get(before);
      set?.delete(key);
      if (set?.size === 0) this.index.delete(before);
    }
    if (after !== undefined && obj) {
      let set = this.index.get(after);
      if (!set) {
        set = new Map();
        this.index.set(after, set);
      }
      set.set(key, obj);
    }
  }

  /** @internal the reflector's result of a fresh list: adds, updates and deletes the difference. */
  replaceNamespace(namespace: string | undefined, items: KubeObject[]): void {
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(objectKey(item));
      this.upsert(item);
    }
    for (const [key, old] of [...this.cache]) {
      if ((namespace === undefined || old.metadata.namespace === namespace) && !seen.has(key)) {
        this.setCached(key, undefined, old);
        this.dispatch('delete', old);
      }
    }
  }

  /** @internal */
  upsert(object: KubeObject): void {
    const key = objectKey(object);
    const old = this.cache.get(key);
    if (old && old.metadata.resourceVersion === object.metadata.resourceVersion) return;
    let obj = stripObject(object.apiVersion ? object : { ...object, apiVersion: this.type.apiVersion, kind: this.type.kind });
    if (this.transform) obj = this.transform(obj);
    deepFreeze(obj);
    this.setCached(key, obj, old);
    this.dispatch(old ? 'update' : 'add', obj, old);
  }

  /** @internal */
  remove(object: KubeObject): void {
    const key = objectKey(object);
    const old = this.cache.get(key);
    this.setCached(key, undefined, old);
    this.dispatch('delete', old ?? deepFreeze(this.transform ? this.transform(stripObject(object)) : stripObject(object)));
  }

  private dispatch(event: InformerEvent, obj: KubeObject, old?: KubeObject): void {
    for (const h of this.handlers) h(event, obj, old);
  }
}
