// The IACSearchSet controller: an informer on the sets and the IACSearch informer of the
// search controller (indexed by set) feed a keyed workqueue; workers take a set's key,
// read the set and its children from the caches, call the pure reconcile (fleet/) and
// apply its actions (creates, merge patches, deletes of children, events), then write the
// set's status with one merge patch when it changed. Only the leader runs workers.
import { LABEL_SEARCH_SET } from '../../../contract/src/index.ts';
import type { SetAction, SetReconcileInput, SetReconcileResult } from '../fleet/index.ts';
import type { EventRecorder } from '../k8s/events.ts';
import { createMergePatch, jsonEqual } from '../k8s/merge-patch.ts';
import { IACSearchSetType, IACSearchType } from '../k8s/resources.ts';
import { isConflict, isNotFound, objectKey, splitKey, type KubeApi, type KubeObject } from '../k8s/types.ts';
import { Informer } from './informer.ts';
import { silentLogger, type Logger } from './log.ts';
import { WorkQueue, type WorkQueueOptions } from './workqueue.ts';

export interface SetControllerOptions {
  api: KubeApi;
  reconcile: (input: SetReconcileInput) => SetReconcileResult;
  /** The search controller's IACSearch informer, indexed by set (cache.ts setIndex). */
  searches: Informer;
  namespaces?: string[];
  workers?: number;
  events?: EventRecorder;
  log?: Logger;
  queue?: WorkQueueOptions;
  informerBackoffMs?: number;
  now?: () => Date;
}

/** How long a reconcile waits for the cache to show the controller's own status write. */
const CACHE_LAG_LIMIT_MS = 2_000;
const STALE_CACHE_RETRY_MS = 500;

export class SetController {
  readonly sets: Informer;
  private readonly o: SetControllerOptions;
  private readonly log: Logger;
  private queue: WorkQueue | undefined;
  private term = 0;
  private workerLoops: Promise<void>[] = [];
  /** Per key, the resourceVersion a status write replaced and when (see sync()). */
  private readonly replacedVersion = new Map<string, { rv: string; at: number }>();

  constructor(opts: SetControllerOptions) {
    this.o = opts;
    this.log = opts.log ?? silentLogger;
    this.sets = new Informer(opts.api, IACSearchSetType, { namespaces: opts.namespaces, initialBackoffMs: opts.informerBackoffMs, log: this.log });
    this.sets.on((event, obj, old) => {
      // The set's own status write needs no new pass: spec, labels and deletion do.
      if (
        event === 'update' &&
        old &&
        old.metadata.generation === obj.metadata.generation &&
        old.metadata.deletionTimestamp === obj.metadata.deletionTimestamp &&
        jsonEqual(old.spec, obj.spec)
      ) {
        const key = objectKey(obj);
        if (this.replacedVersion.has(key)) this.enqueue(key);
        return;
      }
      this.enqueue(objectKey(obj));
    });
    // A child changed (its status, its suspend, its deletion): its set looks again.
    opts.searches.on((_e, obj, old) => {
      for (const o of [obj, old]) {
        const set = o?.metadata.labels?.[LABEL_SEARCH_SET];
        if (set && o?.metadata.namespace) this.enqueue(`${o.metadata.namespace}/${set}`);
      }
    });
  }

  startInformers(): void {
    this.sets.start();
  }

  hasSynced(): boolean {
    return this.sets.hasSynced() && this.o.searches.hasSynced();
  }

  isRunning(): boolean {
    return this.queue !== undefined;
  }

  startWorkers(): void {
    if (this.queue) return;
    this.term++;
    const queue = new WorkQueue(this.o.queue);
    this.queue = queue;
    for (const s of this.sets.list()) queue.add(objectKey(s));
    const term = this.term;
    this.workerLoops = Array.from({ length: Math.max(1, this.o.workers ?? 2) }, () => this.worker(queue, term));
  }

  async stopWorkers(timeoutMs = 10_000): Promise<boolean> {
    const queue = this.queue;
    if (!queue) return true;
    this.queue = undefined;
    this.term++;
    const drained = await queue.shutDown(timeoutMs);
    if (drained) await Promise.all(this.workerLoops);
    return drained;
  }

  async shutdown(timeoutMs = 10_000): Promise<boolean> {
    const drained = await this.stopWorkers(timeoutMs);
    this.sets.stop();
    return drained;
  }

  queueDepth(): number {
    return this.queue?.len() ?? 0;
  }

  enqueue(key: string): void {
    this.queue?.add(key);
  }

  private async worker(queue: WorkQueue, term: number): Promise<void> {
    while (!this.hasSynced()) {
      if (queue.isShuttingDown()) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      try {
        const after = await this.sync(key, term);
        queue.forget(key);
        if (after !== undefined) queue.addAfter(key, after);
      } catch (err) {
        if (term !== this.term) continue; // leadership ended: nothing more is written
        const delay = queue.addRateLimited(key);
        if (!isConflict(err)) {
          const { namespace, name } = splitKey(key);
          this.log.error('set reconcile failed, retrying', { namespace, name, error: err instanceof Error ? err.message : String(err), retryInMs: delay });
        }
      } finally {
        queue.done(key);
      }
    }
  }

  /** One reconcile of one set; returns the requeue delay, if any. */
  async sync(key: string, term = this.term): Promise<number | undefined> {
    const { namespace, name } = splitKey(key);
    const set = this.sets.get(namespace, name);
    if (!set) {
      this.replacedVersion.delete(key); // deleted: garbage collection removes its children
      return undefined;
    }
    if (!this.sets.isCurrent(namespace) || !this.o.searches.isCurrent(namespace)) return STALE_CACHE_RETRY_MS;
    const replaced = this.replacedVersion.get(key);
    if (replaced) {
      // Our own status write has not reached the cache: a pass now would work from the old status.
      if (replaced.rv === set.metadata.resourceVersion && Date.now() - replaced.at < CACHE_LAG_LIMIT_MS) return 100;
      this.replacedVersion.delete(key);
    }
    const uid = set.metadata.uid;
    // Only the children this set controls: a search that merely carries the label is not one.
    const children = this.o.searches.byIndex(key).filter((c) => {
      const ref = c.metadata.ownerReferences?.find((r) => r.controller);
      return ref?.kind === 'IACSearchSet' && ref.name === name && (!uid || ref.uid === uid);
    });
    const log = this.log.child({ namespace, name });
    const result = this.o.reconcile({ set, children, now: this.o.now?.() ?? new Date() });
    for (const action of result.actions) {
      if (term !== this.term) return undefined;
      await this.apply(action, set, log);
    }
    if (term !== this.term) return undefined;
    const oldStatus = (set.status ?? {}) as Record<string, unknown>;
    const patch = createMergePatch(oldStatus, result.status);
    if (patch === undefined || jsonEqual(oldStatus, result.status)) return undefined;
    try {
      await this.o.api.mergePatchStatus(IACSearchSetType, namespace, name, { metadata: { resourceVersion: set.metadata.resourceVersion }, status: patch });
      if (set.metadata.resourceVersion) this.replacedVersion.set(key, { rv: set.metadata.resourceVersion, at: Date.now() });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return undefined;
  }

  private async apply(action: SetAction, set: KubeObject, log: Logger): Promise<void> {
    const { api } = this.o;
    const ns = set.metadata.namespace;
    switch (action.type) {
      case 'create':
        try {
          await api.create(action.object);
          log.info('created child', { child: action.object.metadata.name });
        } catch (err) {
          if (!isConflict(err)) throw err; // it exists already: a cache that lags
        }
        return;
      case 'patch':
        try {
          await api.mergePatch(IACSearchType, ns, action.name, action.patch);
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        return;
      case 'delete':
        if (await api.delete(IACSearchType, ns, action.name)) log.info('deleted child', { child: action.name });
        return;
      case 'event':
        // Best effort, as for searches: an event never fails the reconcile.
        await this.o.events?.record(set, action.eventType, action.reason, action.message).catch((err: unknown) => {
          log.warn('could not record event', { reason: action.reason, error: err instanceof Error ? err.message : String(err) });
        });
        return;
    }
  }
}
