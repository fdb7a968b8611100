// An in-memory KubeApi for unit tests: resource versions, label selectors, watches
// (with 410 Gone after compaction), optimistic concurrency on replace and patch,
// status subresource, and owner-reference garbage collection on delete. It also
// records every write so tests can count them, and lets a test inject failures.
import { randomUUID } from 'node:crypto';
import { applyMergePatch } from '../src/k8s/merge-patch.ts';
import { parseLabelSelector } from './label-selector.ts';
import { resourceTypeOf } from '../src/k8s/resources.ts';
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
} from '../src/k8s/types.ts';

interface HistoryEntry {
  rv: number;
  typeKey: string;
  eventType: WatchEventType;
  object: KubeObject;
}

interface FakeWatch {
  typeKey: string;
  opts: WatchOptions;
  onEvent: (type: WatchEventType, object: KubeObject) => void;
  onClose: (err?: unknown) => void;
  matches: (o: KubeObject) => boolean;
  closed: boolean;
}

export interface RecordedCall {
  verb: 'create' | 'replace' | 'delete' | 'patch' | 'patchStatus';
  kind: string;
  namespace?: string;
  name: string;
  body?: unknown;
}

type Verb = 'list' | 'watch' | 'get' | 'create' | 'replace' | 'delete' | 'patch' | 'patchStatus';

const typeKeyOf = (t: ResourceType) => `${t.apiVersion}/${t.kind}`;
const objKey = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`;

export class FakeKubeApi implements KubeApi {
  private rv = 100;
  private readonly store = new Map<string, Map<string, KubeObject>>();
  private readonly history: HistoryEntry[] = [];
  /** Watches cannot start from a resource version at or below this one (410 Gone). */
  private compactedRV = 0;
  private readonly watches = new Set<FakeWatch>();
  private readonly failures: Array<{ verb: Verb; kind?: string; error: unknown; times: number }> = [];
  readonly calls: RecordedCall[] = [];
  /** Wall clock of the fake (creationTimestamp etc.). */
  now: () => Date = () => new Date();

  /** Makes the next `times` calls of verb (optionally for one kind) fail with error. */
  failNext(verb: Verb, error: unknown, opts: { kind?: string; times?: number } = {}): void {
    this.failures.push({ verb, kind: opts.kind, error, times: opts.times ?? 1 });
  }

  /** Forgets the watch history: a watch from an older resource version gets 410 Gone. */
  compact(): void {
    this.compactedRV = this.rv;
    this.history.length = 0;
  }

  /** Ends every open watch with an error (a broken connection). */
  breakWatches(error: unknown = new Error('connection reset')): void {
    for (const w of [...this.watches]) this.closeWatch(w, error);
  }

  /** Ends every open watch normally (a server-side timeout). */
  endWatches(): void {
    for (const w of [...this.watches]) this.closeWatch(w);
  }

  openWatches(): number {
    return this.watches.size;
  }

  /** Stores an object as given (server-populated fields filled in), emitting a watch event. */
  seed(object: KubeObject): KubeObject {
    return this.write(object, 'ADDED');
  }

  /** All stored objects of a kind, optionally in one namespace. */
  objects(kind: string, namespace?: string): KubeObject[] {
    const m = this.store.get(typeKeyOf(resourceTypeOf(kind)));
    return [...(m?.values() ?? [])].filter((o) => namespace === undefined || o.metadata.namespace === namespace).map((o) => structuredClone(o));
  }

  callsOf(verb: RecordedCall['verb'], kind?: string): RecordedCall[] {
    return this.calls.filter((c) => c.verb === verb && (kind === undefined || c.kind === kind));
  }

  async list(type: ResourceType, opts: ListOptions = {}): Promise<ListResult> {
    await this.tick('list', type.kind);
    const match = this.matcher(type, opts);
    const items = [...(this.store.get(typeKeyOf(type))?.values() ?? [])].filter(match).map((o) => structuredClone(o));
    return { items, resourceVersion: String(this.rv) };
  }

  async watch(
    type: ResourceType,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, object: KubeObject) => void,
    onClose: (err?: unknown) => void,
  ): Promise<WatchHandle> {
    await this.tick('watch', type.kind);
    const from = Number(opts.resourceVersion || '0');
    const w: FakeWatch = { typeKey: typeKeyOf(type), opts, onEvent, onClose, matches: this.matcher(type, opts), closed: false };
    this.watches.add(w);
    if (from < this.compactedRV) {
      queueMicrotask(() => {
        if (w.closed) return;
        onEvent('ERROR', {
          apiVersion: 'v1',
          kind: 'Status',
          metadata: { name: '' },
          code: 410,
          reason: 'Expired',
          message: `too old resource version: ${from} (${this.compactedRV})`,
        });
        this.closeWatch(w);
      });
    } else {
      const backlog = this.history.filter((h) => h.rv > from && h.typeKey === w.typeKey && w.matches(h.object));
      queueMicrotask(() => {
        for (const h of backlog) if (!w.closed) onEvent(h.eventType, structuredClone(h.object));
      });
    }
    return {
      stop: () => {
        w.closed = true;
        this.watches.delete(w);
      },
    };
  }

  async get(type: ResourceType, namespace: string | undefined, name: string): Promise<KubeObject | undefined> {
    await this.tick('get', type.kind);
    const o = this.store.get(typeKeyOf(type))?.get(objKey(type.namespaced ? namespace : undefined, name));
    return o ? structuredClone(o) : undefined;
  }

  async create(object: KubeObject): Promise<KubeObject> {
    const type = resourceTypeOf(object.kind);
    this.calls.push({ verb: 'create', kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name, body: structuredClone(object) });
    await this.tick('create', type.kind);
    if (!object.metadata.name) throw new ApiError(422, `${object.kind}: metadata.name: Required value`, 'Invalid');
    if (this.find(type, object.metadata.namespace, object.metadata.name)) {
      throw new ApiError(409, `${type.plural} "${object.metadata.name}" already exists`, 'AlreadyExists');
    }
    const copy = structuredClone(object);
    delete copy.metadata.resourceVersion;
    return this.write(copy, 'ADDED');
  }

  async replace(object: KubeObject): Promise<KubeObject> {
    const type = resourceTypeOf(object.kind);
    this.calls.push({ verb: 'replace', kind: object.kind, namespace: object.metadata.namespace, name: object.metadata.name, body: structuredClone(object) });
    await this.tick('replace', type.kind);
    const current = this.find(type, object.metadata.namespace, object.metadata.name);
    if (!current) throw new ApiError(404, `${type.plural} "${object.metadata.name}" not found`, 'NotFound');
    this.checkVersion(type, current, object.metadata.resourceVersion);
    const next = structuredClone(object);
    next.metadata = { ...next.metadata, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp };
    if ('status' in current) next.status = current.status; // status is a subresource
    return this.write(next, 'MODIFIED');
  }

  async delete(type: ResourceType, namespace: string | undefined, name: string): Promise<boolean> {
    this.calls.push({ verb: 'delete', kind: type.kind, namespace, name });
    await this.tick('delete', type.kind);
    const current = this.find(type, namespace, name);
    if (!current) return false;
    this.remove(type, current);
    return true;
  }

  async mergePatch(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject> {
    this.calls.push({ verb: 'patch', kind: type.kind, namespace, name, body: structuredClone(patch) });
    await this.tick('patch', type.kind);
    return this.patchObject(type, namespace, name, patch, false);
  }

  async mergePatchStatus(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>): Promise<KubeObject> {
    this.calls.push({ verb: 'patchStatus', kind: type.kind, namespace, name, body: structuredClone(patch) });
    await this.tick('patchStatus', type.kind);
    return this.patchObject(type, namespace, name, patch, true);
  }

  private patchObject(type: ResourceType, namespace: string | undefined, name: string, patch: Record<string, unknown>, statusOnly: boolean): KubeObject {
    const current = this.find(type, namespace, name);
    if (!current) throw new ApiError(404, `${type.plural} "${name}" not found`, 'NotFound');
    const meta = patch.metadata as { resourceVersion?: string } | undefined;
    this.checkVersion(type, current, meta?.resourceVersion);
    let next: KubeObject;
    if (statusOnly) {
      const patched = applyMergePatch(current, { status: patch.status ?? null }) as KubeObject;
      next = patched;
    } else {
      const { status: _ignored, ...rest } = patch;
      next = applyMergePatch(current, rest) as KubeObject;
    }
    next.metadata.uid = current.metadata.uid;
    return this.write(next, 'MODIFIED', statusOnly);
  }

  private checkVersion(type: ResourceType, current: KubeObject, rv: string | undefined): void {
    if (rv !== undefined && rv !== current.metadata.resourceVersion) {
      throw new ApiError(
        409,
        `Operation cannot be fulfilled on ${type.plural} "${current.metadata.name}": the object has been modified; please apply your changes to the latest version and try again`,
        'Conflict',
      );
    }
  }

  private find(type: ResourceType, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.store.get(typeKeyOf(type))?.get(objKey(type.namespaced ? namespace : undefined, name));
  }

  private write(object: KubeObject, eventType: WatchEventType, statusOnly = false): KubeObject {
    const type = resourceTypeOf(object.kind);
    const key = typeKeyOf(type);
    if (!this.store.has(key)) this.store.set(key, new Map());
    const map = this.store.get(key)!;
    const id = objKey(type.namespaced ? object.metadata.namespace : undefined, object.metadata.name);
    const previous = map.get(id);
    const stored = structuredClone(object);
    this.rv++;
    stored.metadata.resourceVersion = String(this.rv);
    stored.metadata.uid ??= randomUUID();
    stored.metadata.creationTimestamp ??= this.now()
      .toISOString()
      .replace(/\.\d+Z$/, 'Z');
    if (type.kind === 'IACSearch' || type.kind === 'IACSearchSet') {
      const specChanged = !previous || JSON.stringify(previous.spec) !== JSON.stringify(stored.spec);
      stored.metadata.generation = (previous?.metadata.generation ?? 0) + (specChanged && !statusOnly ? 1 : 0);
      if (!previous) stored.metadata.generation = 1;
    }
    map.set(id, stored);
    this.emit(key, previous ? eventType : 'ADDED', stored);
    return structuredClone(stored);
  }

  private remove(type: ResourceType, object: KubeObject): void {
    const key = typeKeyOf(type);
    this.store.get(key)!.delete(objKey(type.namespaced ? object.metadata.namespace : undefined, object.metadata.name));
    this.rv++;
    const gone = structuredClone(object);
    gone.metadata.resourceVersion = String(this.rv);
    this.emit(key, 'DELETED', gone);
    // garbage collection: delete dependents whose owner this was
    const uid = object.metadata.uid;
    if (!uid) return;
    for (const [k, m] of this.store) {
      for (const child of [...m.values()]) {
        if (child.metadata.ownerReferences?.some((r) => r.uid === uid)) this.remove(resourceTypeOf(child.kind), child);
      }
      void k;
    }
  }

  private emit(typeKey: string, eventType: WatchEventType, object: KubeObject): void {
    this.history.push({ rv: this.rv, typeKey, eventType, object: structuredClone(object) });
    for (const w of this.watches) {
      if (w.typeKey !== typeKey || !w.matches(object)) continue;
      const copy = structuredClone(object);
      queueMicrotask(() => {
        if (!w.closed) w.onEvent(eventType, copy);
      });
    }
  }

  private closeWatch(w: FakeWatch, err?: unknown): void {
    if (w.closed) return;
    w.closed = true;
    this.watches.delete(w);
    queueMicrotask(() => w.onClose(err));
  }

  private matcher(type: ResourceType, opts: ListOptions): (o: KubeObject) => boolean {
    const labels = parseLabelSelector(opts.labelSelector);
    return (o) => o.kind === type.kind && (opts.namespace === undefined || o.metadata.namespace === opts.namespace) && labels(o.metadata.labels);
  }

  private async tick(verb: Verb, kind: string): Promise<void> {
    await Promise.resolve();
    const i = this.failures.findIndex((f) => f.verb === verb && (f.kind === undefined || f.kind === kind));
    if (i < 0) return;
    const f = this.failures[i];
    if (--f.times <= 0) this.failures.splice(i, 1);
    throw f.error;
  }
}
