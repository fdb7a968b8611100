// Kubernetes Events through events.k8s.io/v1. The same event (object, type, reason,
// note) repeated within the de-duplication window updates the first one's series
// (count, lastObservedTime) instead of creating another object.
import { randomBytes } from 'node:crypto';
import { EventType } from './resources.ts';
import { isNotFound, type KubeApi, type KubeObject } from './types.ts';

export const REPORTING_CONTROLLER = 'nas.iac.dev/iac-operator';

/** metav1.MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Longest object name (a DNS subdomain), the Event's own included. */
const MAX_NAME = 253;

/**
 * `<object name>.<suffix>`, the object's name shortened when needed: an object with a
 * name of 253 characters (the most the API server allows) still gets its events.
 */
export function eventName(objectName: string, suffix: string): string {
  const room = MAX_NAME - suffix.length - 1;
  // A cut must not leave a DNS label ending in '-' or '.'.
  const prefix = objectName.length <= room ? objectName : objectName.slice(0, room).replace(/[-.]+$/, '');
  return `${prefix}.${suffix}`;
}

export interface EventRecorderOptions {
  /** reportingInstance: this replica (pod name). */
  instance: string;
  /** Repeats within this many ms update the series of the first event. */
  windowMs?: number;
  /** Distinct events remembered for de-duplication. */
  maxTracked?: number;
  now?: () => Date;
}

interface Tracked {
  name: string;
  namespace: string;
  count: number;
  first: number;
}

export class EventRecorder {
  private readonly api: KubeApi;
  private readonly opts: Required<Omit<EventRecorderOptions, 'now'>> & { now: () => Date };
  private readonly seen = new Map<string, Tracked>();

  constructor(api: KubeApi, opts: EventRecorderOptions) {
    this.api = api;
    this.opts = { windowMs: 30 * 60_000, maxTracked: 4096, now: () => new Date(), ...opts };
  }

  /** Records an event about `regarding`; returns the event object's name. */
  async record(regarding: KubeObject, type: 'Normal' | 'Warning', reason: string, note: string, action = 'Reconcile'): Promise<string> {
    const namespace = regarding.metadata.namespace ?? 'default';
    const now = this.opts.now();
    const key = [regarding.metadata.uid ?? `${namespace}/${regarding.metadata.name}`, type, reason, note].join('\u0000');
    const tracked = this.seen.get(key);
    if (tracked && now.getTime() - tracked.first < this.opts.windowMs) {
      tracked.count++;
      try {
        await this.api.mergePatch(EventType, tracked.namespace, tracked.name, {
          series: { count: tracked.count, lastObservedTime: microTime(now) },
        });
        return tracked.name;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        // the event expired on the server: create a new one
      }
    }
    const name = eventName(regarding.metadata.name, `${now.getTime().toString(16)}${randomBytes(3).toString('hex')}`);
    await this.api.create({
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace },
      eventTime: microTime(now),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: (this.opts.instance || 'iac-operator').slice(0, 128),
      action: action.slice(0, 128),
      reason: reason.slice(0, 128),
      note: note.length > 1024 ? `${note.slice(0, 1021)}...` : note,
      type,
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: regarding.metadata.name,
        namespace: regarding.metadata.namespace,
        uid: regarding.metadata.uid,
        resourceVersion: regarding.metadata.resourceVersion,
      },
    });
    this.seen.delete(key);
    this.seen.set(key, { name, namespace, count: 1, first: now.getTime() });
    while (this.seen.size > this.opts.maxTracked) this.seen.delete(this.seen.keys().next().value!);
    return name;
  }
}
