// The IACSearch controller: informers on IACSearch and on the pods, secrets and claims
// it owns feed a keyed workqueue; workers take a key, read the search and its children
// from the cache, call the pure reconcile, apply its actions (idempotent creates,
// deletes, events) and write the status with one merge patch when it changed.
// Only the leader runs workers; the informers (and so /readyz and the token checks)
// run on every replica.
import { randomBytes } from 'node:crypto';
import type { ProgressEvent } from '../../../contract/src/index.ts';
import type { EventRecorder } from '../k8s/events.ts';
import { createMergePatch, jsonEqual } from '../k8s/merge-patch.ts';
import { IACSearchType, PersistentVolumeClaimType, PodType, SecretType, resourceTypeOf } from '../k8s/resources.ts';
import { ApiError, errorCode, isConflict, isNotFound, objectKey, splitKey, type KubeApi, type KubeObject } from '../k8s/types.ts';
import type { OperatorMetrics } from '../metrics/registry.ts';
import type { Action, OperatorSettings, ReconcileInput, ReconcileResult, RefusedCreate } from '../reconcile/types.ts';
import { controllerReference } from '../reconcile/children.ts';
import { Informer } from './informer.ts';
import { silentLogger, type Logger } from './log.ts';
import { ownerIndex, setIndex, slimClaim, slimPod } from './cache.ts';
import { LABEL_SEARCH, progressSecretName } from '../../../contract/src/index.ts';
import { ProgressStore, checkToken, progressIssuesAgainstSpec, slimSecret, type ProgressIssue, type TokenCheck } from './progress.ts';
import { isTransition } from './status-change.ts';
import { WorkQueue, type WorkQueueOptions } from './workqueue.ts';

export type ReconcileFn = (input: ReconcileInput) => ReconcileResult;

export interface ControllerOptions {
  api: KubeApi;
  reconcile: ReconcileFn;
  settings: OperatorSettings;
  /** Namespaces to watch; undefined or empty for all. */
  namespaces?: string[];
  workers?: number;
  metrics?: OperatorMetrics;
  events?: EventRecorder;
  log?: Logger;
  /**
   * Progress events, and other status changes that are no transition (status-change.ts),
   * are written at most once per this many ms per search.
   */
  progressIntervalMs?: number;
  queue?: WorkQueueOptions;
  informerBackoffMs?: number;
  newToken?: () => string;
  now?: () => Date;
}

/** Thrown inside a sync that outlived this replica's leadership: nothing more is written. */
class NotLeading extends Error {
  override name = 'NotLeading';
}

/** How long a reconcile waits for the cache to show the operator's own status write. */
const CACHE_LAG_LIMIT_MS = 2_000;
/** How often a key is tried again while an informer relists after a failed watch. */
const STALE_CACHE_RETRY_MS = 500;
/** Events written in the background at once, at most (see apply()). */
const MAX_EVENTS_IN_FLIGHT = 64;

export const newProgressToken = () => randomBytes(32).toString('base64url');

export class Controller {
  readonly searches: Informer;
  readonly pods: Informer;
  readonly secrets: Informer;
  readonly claims: Informer;
  readonly progress = new ProgressStore();
  private readonly o: ControllerOptions;
  private readonly log: Logger;
  private queue: WorkQueue | undefined;
  /** Increases at every start or stop of the workers; a sync of an older term stops writing. */
  private term = 0;
  private workerLoops: Promise<void>[] = [];
  private readonly lastProgressSync = new Map<string, number>();
  /**
   * Per key, the resourceVersion a status write replaced and when: until the cache shows
   * a newer version, a reconcile would work from the old status (and end in 409).
   */
  private readonly replacedVersion = new Map<string, { rv: string; at: number }>();
  /**
   * Per key, the status this operator last wrote: a status change that is not it was
   * written by someone else, and is reconciled (and corrected) at once.
   */
  private readonly writtenStatus = new Map<string, Record<string, unknown>>();
  /** Keys whose reconcile waits for the cache to show this operator's own status write. */
  private readonly awaitingCache = new Set<string>();
  /** Per key, when this operator last wrote the search's status (news waits for the interval after it). */
  private readonly lastStatusWrite = new Map<string, number>();
  /** Events being written in the background. */
  private readonly eventsInFlight = new Set<Promise<void>>();

  constructor(opts: ControllerOptions) {
    this.o = opts;
    this.log = opts.log ?? silentLogger;
    const common = {
      namespaces: opts.namespaces,
      initialBackoffMs: opts.informerBackoffMs,
      log: this.log,
      onRestart: (resource: string) => opts.metrics?.informerRestarts.inc({ resource }),
    };
    // Indexed by IACSearchSet: the set controller reads a set's children from this cache.
    this.searches = new Informer(opts.api, IACSearchType, { ...common, indexBy: setIndex });
    // The children: only labelled ones, cached reduced to what the reconcile reads
    // (cache.ts) and indexed by their search.
    const owned = { ...common, labelSelector: LABEL_SEARCH, indexBy: ownerIndex };
    this.pods = new Informer(opts.api, PodType, { ...owned, transform: slimPod });
    // Secrets are cached slimmed (a token hash, no data): anyone may create labelled ones.
    this.secrets = new Informer(opts.api, SecretType, { ...owned, transform: slimSecret });
    this.claims = new Informer(opts.api, PersistentVolumeClaimType, { ...owned, transform: slimClaim });

    this.searches.on((event, obj, old) => {
      // A status-only change (our own write) needs no new reconcile: generation,
      // labels, annotations, deletion and finalizers are what matter.
      // Someone else's status write is reconciled: the status is checked against the pods.
      const key = objectKey(obj);
      if (event === 'update' && old && sameIntent(old, obj) && !this.foreignStatus(obj)) {
        // Our own write reached the cache: a reconcile that waited for it goes ahead.
        if (this.awaitingCache.delete(key)) this.enqueue(key);
        return;
      }
      this.enqueue(key);
    });
    for (const inf of [this.pods, this.secrets, this.claims]) inf.on((_e, obj) => this.enqueueOwner(obj));
  }

  /** Starts the informers (every replica). */
  startInformers(): void {
    for (const inf of this.informers()) inf.start();
  }

  hasSynced(): boolean {
    return this.informers().every((i) => i.hasSynced());
  }

  isRunning(): boolean {
    return this.queue !== undefined;
  }

  /** Becomes the active controller: starts the workers and enqueues every search. */
  startWorkers(): void {
    if (this.queue) return;
    this.term++;
    const queue = new WorkQueue(this.o.queue);
    this.queue = queue;
    for (const s of this.searches.list()) queue.add(objectKey(s));
    const n = Math.max(1, this.o.workers ?? 2);
    this.workerLoops = Array.from({ length: n }, () => this.worker(queue, this.term));
    this.log.info('controller: workers started', { workers: n });
  }

  /**
   * Stops reconciling at once (leadership lost): no key is taken any more and syncs in
   * flight write nothing further. Resolves when they returned, or after timeoutMs.
   */
  async stopWorkers(timeoutMs = 10_000): Promise<boolean> {
    const queue = this.queue;
    if (!queue) return true;
    this.queue = undefined;
    this.term++;
    const drained = await queue.shutDown(timeoutMs);
    if (drained) await Promise.all(this.workerLoops);
    this.log.info('controller: workers stopped', { drained });
    return drained;
  }

  /** Graceful stop: finish the keys in flight (within timeoutMs), then stop watching. */
  async shutdown(timeoutMs = 10_000): Promise<boolean> {
    const queue = this.queue;
    let drained = true;
    if (queue) {
      this.queue = undefined;
      drained = await queue.shutDown(timeoutMs); // in-flight syncs keep their term: they finish
      if (drained) await Promise.all(this.workerLoops);
      this.term++;
    }
    await this.flushEvents(timeoutMs);
    for (const inf of this.informers()) inf.stop();
    return drained;
  }

  /** Waits (at most timeoutMs) for the events still being written. */
  async flushEvents(timeoutMs = 10_000): Promise<void> {
    if (this.eventsInFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.eventsInFlight), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  queueDepth(): number {
    return this.queue?.len() ?? 0;
  }

  /** Checks a trainer's bearer token against the progress Secret the operator created for the named search. */
  checkProgressToken(namespace: string, name: string, token: string): TokenCheck {
    return checkToken(this.secrets.get(namespace, progressSecretName(name)), this.searches.get(namespace, name), token);
  }

  /**
   * Keeps an accepted progress event and schedules a reconcile of its search so that
   * the status follows at most once per progressIntervalMs.
   */
  acceptProgress(namespace: string, name: string, event: ProgressEvent): ProgressIssue[] | undefined {
    const issues = progressIssuesAgainstSpec(this.searches.get(namespace, name), event);
    if (issues.length) return issues; // refused (400): more epochs than the spec gives the phase
    const key = `${namespace}/${name}`;
    this.progress.set(key, event);
    const interval = this.o.progressIntervalMs ?? 60_000;
    const now = Date.now();
    const due = Math.max(now, (this.lastProgressSync.get(key) ?? 0) + interval);
    this.lastProgressSync.set(key, due);
    this.queue?.addAfter(key, due - now);
  }

  /** Whether a search's status differs from what this operator last wrote (a status-only update by someone else). */
  private foreignStatus(obj: KubeObject): boolean {
    const written = this.writtenStatus.get(objectKey(obj));
    return written !== undefined && obj.status !== undefined && !jsonEqual(obj.status, written);
  }

  enqueue(key: string): void {
    this.queue?.add(key);
  }

  private informers(): Informer[] {
    return [this.searches, this.pods, this.secrets, this.claims];
  }

  private enqueueOwner(obj: KubeObject): void {
    const ns = obj.metadata.namespace;
    const ref = obj.metadata.ownerReferences?.find((r) => r.controller && r.kind === 'IACSearch');
    const owner = ref?.name ?? obj.metadata.labels?.[LABEL_SEARCH];
    if (ns && owner) this.enqueue(`${ns}/${owner}`);
  }

  /** Resolves once every informer has listed, or when the queue shuts down first (false). */
  private async waitForSync(queue: WorkQueue): Promise<boolean> {
    while (!this.hasSynced()) {
      if (queue.isShuttingDown()) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  }

  private async worker(queue: WorkQueue, term: number): Promise<void> {
    // A search reconciled before its pods are cached would look as if its pods had vanished.
    if (!(await this.waitForSync(queue))) return;
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      const started = performance.now();
      let result: 'success' | 'requeue' | 'conflict' | 'error' | undefined = 'success';
      try {
        const requeueAfterMs = await this.sync(key, term);
        queue.forget(key);
        if (requeueAfterMs !== undefined && requeueAfterMs >= 0) {
          result = 'requeue';
          queue.addAfter(key, requeueAfterMs);
        }
      } catch (err) {
        if (err instanceof NotLeading) {
          result = undefined; // cut short by the end of leadership: not a reconcile outcome
        } else if (isConflict(err)) {
          result = 'conflict';
          queue.addRateLimited(key);
        } else {
          result = 'error';
          const delay = queue.addRateLimited(key);
          this.o.metrics?.workqueueRetries.inc();
          const { namespace, name } = splitKey(key);
          this.log.error('reconcile failed, retrying', {
            namespace,
            name,
            error: err instanceof Error ? err.message : String(err),
            retryInMs: delay,
          });
        }
      } finally {
        queue.done(key);
        const seconds = (performance.now() - started) / 1000;
        if (result) {
          this.o.metrics?.reconcileTotal.inc({ result });
          this.o.metrics?.reconcileDuration.observe({ result }, seconds);
        }
      }
    }
  }

  private guard(term: number): void {
    if (term !== this.term) throw new NotLeading('leadership ended');
  }

  /** One reconcile of one key; returns the requeue delay, if any. */
  async sync(key: string, term = this.term): Promise<number | undefined> {
    const { namespace, name } = splitKey(key);
    const log = this.log.child({ namespace, name });
    const search = this.searches.get(namespace, name);
    if (!search) {
      // deleted: its children go with it (owner references); forget its progress
      this.progress.delete(key);
      this.lastProgressSync.delete(key);
      this.replacedVersion.delete(key);
      this.writtenStatus.delete(key);
      this.lastStatusWrite.delete(key);
      this.awaitingCache.delete(key);
      return undefined;
    }
    if (!this.informers().every((i) => i.isCurrent(namespace))) {
      // A watch failed (an API server restart, a network cut) and its informer has not
      // listed again: a child created meanwhile may be missing from the cache, and a
      // reconcile would take it for vanished. Wait for the lists.
      return STALE_CACHE_RETRY_MS;
    }
    const replaced = this.replacedVersion.get(key);
    if (replaced) {
      if (replaced.rv === search.metadata.resourceVersion && Date.now() - replaced.at < CACHE_LAG_LIMIT_MS) {
        // Our own status write has not reached the cache yet: its watch event enqueues
        // the key again (awaitingCache); the requeue is the fallback.
        this.awaitingCache.add(key);
        return CACHE_LAG_LIMIT_MS;
      }
      this.replacedVersion.delete(key);
    }
    const uid = search.metadata.uid;
    const owned = (o: KubeObject) => {
      if (o.metadata.labels?.[LABEL_SEARCH] !== name) return false;
      const ref = o.metadata.ownerReferences?.find((r) => r.controller);
      return !ref || !uid || ref.uid === uid;
    };
    // Cached objects are frozen and the reconcile copies what it changes: no clones here.
    const input: ReconcileInput = {
      search,
      pods: this.pods.byIndex(key).filter(owned),
      secrets: this.secrets.byIndex(key).filter(owned),
      persistentVolumeClaims: this.claims.byIndex(key).filter(owned),
      progress: this.progress.get(key),
      now: this.o.now?.() ?? new Date(),
      newToken: (this.o.newToken ?? newProgressToken)(),
      settings: this.o.settings,
    };
    const result = this.o.reconcile(input);
    // Creates (and events) that follow each other go out together: a new search's Secret
    // and claim take one round trip instead of two. A pod is created only after what
    // comes before it (its Secret and claim exist before it does, and nothing follows a
    // lost leadership), and deletes keep their order.
    const alone = (a: Action) => a.type === 'delete' || (a.type === 'create' && a.object.kind === 'Pod');
    for (let i = 0; i < result.actions.length; ) {
      this.guard(term);
      let j = i + 1;
      if (!alone(result.actions[i])) while (j < result.actions.length && !alone(result.actions[j])) j++;
      const batch = result.actions.slice(i, j);
      const outcomes = await Promise.allSettled(batch.map((action) => this.apply(action, search, log)));
      const failedAt = outcomes.findIndex((o) => o.status === 'rejected');
      if (failedAt >= 0) {
        const err = (outcomes[failedAt] as PromiseRejectedResult).reason;
        const refused = refusalOf(batch[failedAt], err);
        if (refused) {
          // The API server said no (quota, admission, a missing priority class, ...): the
          // search says so itself, in its status and a Warning event with the server's
          // message, instead of only this log; the key is retried with backoff below.
          const told = this.o.reconcile({ ...input, refused });
          const said = new Set(result.actions.map((a) => (a.type === 'event' ? `${a.reason}\u0000${a.message}` : '')));
          for (const action of told.actions) {
            if (action.type === 'event' && !said.has(`${action.reason}\u0000${action.message}`)) await this.apply(action, search, log);
          }
          this.guard(term);
          if ((await this.writeStatus(key, search, told.status, log)) === 'gone') return undefined;
        }
        throw err;
      }
      i = j;
    }
    this.guard(term);
    const wait = this.newsWait(key, search, result.status);
    if (wait > 0) {
      // Only news since the last write (status-change.ts): it goes out with the next write.
      return Math.min(result.requeueAfterMs ?? wait, wait);
    }
    if ((await this.writeStatus(key, search, result.status, log)) === 'gone') return undefined;
    return result.requeueAfterMs;
  }

  /**
   * How long a status change that is only news (no transition, status-change.ts) waits
   * for its write: until --progress-interval after this search's last status write. 0:
   * write now (a transition, a status someone else wrote, or no recent write).
   */
  private newsWait(key: string, search: KubeObject, status: Record<string, unknown>): number {
    const last = this.lastStatusWrite.get(key);
    if (last === undefined) return 0;
    const wait = last + (this.o.progressIntervalMs ?? 60_000) - Date.now();
    const old = (search.status ?? {}) as Record<string, unknown>;
    if (wait <= 0 || jsonEqual(old, status) || this.foreignStatus(search)) return 0;
    return isTransition(old, status) ? 0 : wait;
  }

  /** Writes a status when it changed: one merge patch, the read resourceVersion as precondition. */
  private async writeStatus(key: string, search: KubeObject, status: Record<string, unknown>, log: Logger): Promise<'written' | 'same' | 'gone'> {
    const { namespace, name } = splitKey(key);
    const oldStatus = (search.status ?? {}) as Record<string, unknown>;
    const patch = createMergePatch(oldStatus, status);
    if (patch === undefined || jsonEqual(oldStatus, status)) return 'same';
    this.writtenStatus.set(key, status); // before the write: its watch event may come before the answer
    try {
      await this.o.api.mergePatchStatus(IACSearchType, namespace, name, {
        metadata: { resourceVersion: search.metadata.resourceVersion },
        status: patch,
      });
      if (search.metadata.resourceVersion) this.replacedVersion.set(key, { rv: search.metadata.resourceVersion, at: Date.now() });
      this.lastStatusWrite.set(key, Date.now());
      log.debug('status written', { phase: status.phase });
      return 'written';
    } catch (err) {
      if (isNotFound(err)) return 'gone'; // deleted meanwhile
      throw err;
    }
  }

  private async apply(action: Action, search: KubeObject, log: Logger): Promise<void> {
    const api = this.o.api;
    const ns = search.metadata.namespace!;
    switch (action.type) {
      case 'create': {
        const obj = withOwner(action.object, search);
        try {
          await api.create(obj);
          log.info('created', { kind: obj.kind, object: obj.metadata.name });
        } catch (err) {
          if (!isConflict(err)) throw err;
          // It exists already (an earlier attempt, or a cache that lags): read it.
          const existing = await api.get(resourceTypeOf(obj.kind), ns, obj.metadata.name);
          const ref = existing?.metadata.ownerReferences?.find((r) => r.controller);
          if (existing && ref && ref.uid !== search.metadata.uid) {
            log.warn('an object of that name belongs to something else', { kind: obj.kind, object: obj.metadata.name, owner: ref.name });
          }
        }
        return;
      }
      case 'delete': {
        const gone = await api.delete(resourceTypeOf(action.kind), action.namespace, action.name);
        if (gone) log.info('deleted', { kind: action.kind, object: action.name });
        return;
      }
      case 'event': {
        if (!this.o.events) return;
        // An event is best effort: it never fails the reconcile, nor waits for the API
        // server (as client-go's recorder, it is written in the background). Beyond
        // MAX_EVENTS_IN_FLIGHT the reconcile waits for one, so a slow API server is not flooded.
        while (this.eventsInFlight.size >= MAX_EVENTS_IN_FLIGHT) await Promise.race(this.eventsInFlight);
        const written: Promise<void> = this.o.events.record(search, action.eventType, action.reason, action.message).then(
          () => undefined,
          (err: unknown) => log.warn('could not record event', { reason: action.reason, error: err instanceof Error ? err.message : String(err) }),
        );
        this.eventsInFlight.add(written);
        void written.finally(() => this.eventsInFlight.delete(written));
        return;
      }
    }
  }
}

/** Answers of the API server that retrying alone will not change: a refused create the search must show. */
const REFUSALS = new Set([400, 403, 404, 422]);

/** The refusal of a create, in the API server's words; undefined for other failures (timeouts, 5xx, 429). */
function refusalOf(action: Action, err: unknown): RefusedCreate | undefined {
  const code = errorCode(err);
  if (action.type !== 'create' || code === undefined || !REFUSALS.has(code)) return undefined;
  const text = err instanceof Error ? err.message : String(err);
  return {
    kind: action.object.kind,
    name: action.object.metadata.name,
    code,
    reason: err instanceof ApiError ? err.reason : undefined,
    // client.ts prefixes "<METHOD> <path>: <code> " to the server's own message
    message: text.replace(/^[A-Z]+ \S+: \d{3} /, ''),
  };
}

/** True when old and next differ only in status and server bookkeeping. */
function sameIntent(old: KubeObject, next: KubeObject): boolean {
  const a = old.metadata;
  const b = next.metadata;
  return (
    a.generation === b.generation &&
    a.deletionTimestamp === b.deletionTimestamp &&
    jsonEqual(a.labels ?? {}, b.labels ?? {}) &&
    jsonEqual(a.annotations ?? {}, b.annotations ?? {}) &&
    jsonEqual(old.spec, next.spec)
  );
}

/** Makes sure a child carries the search's label and controller owner reference. */
function withOwner(obj: KubeObject, search: KubeObject): KubeObject {
  const refs = obj.metadata.ownerReferences ?? [];
  const hasController = refs.some((r) => r.controller);
  const labels = { ...obj.metadata.labels };
  if (obj.kind !== 'IACSearch') labels[LABEL_SEARCH] ??= search.metadata.name;
  return {
    ...obj,
    metadata: {
      ...obj.metadata,
      namespace: obj.metadata.namespace ?? search.metadata.namespace,
      labels,
      ownerReferences: hasController ? refs : [...refs, controllerReference(search)],
    },
  };
}
