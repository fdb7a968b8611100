// A tiny in-memory world for state-machine tests (and for `iacnas run` tests): it
// applies reconcile's actions to lists of objects and lets a test set pod states.
import { API_VERSION, KIND } from '../src/api/index.ts';
import type { ProgressEvent } from '../../contract/src/index.ts';
import { TRAINER_CONTAINER } from '../src/reconcile/children.ts';
import { reconcile } from '../src/reconcile/index.ts';
import type { Action, KubeObject, OperatorSettings, ReconcileResult, RefusedCreate } from '../src/reconcile/types.ts';

export const T0 = new Date('2026-03-01T12:00:00Z');
export const at = (seconds: number) => new Date(T0.getTime() + seconds * 1000);

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

const frozenCopy = <T>(o: T): T => deepFreeze(structuredClone(o));

export function searchObject(spec: Record<string, unknown> = {}, status?: Record<string, unknown>, name = 'demo'): KubeObject {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace: 'ml', uid: 'uid-1', generation: 1, creationTimestamp: T0.toISOString() },
    spec,
    ...(status && { status }),
  };
}

export const TEST_SETTINGS: OperatorSettings = { defaultImage: 'iacnas/trainer:test', progressURL: 'http://op:8080/v1/progress' };

export interface WorldOptions {
  /** metadata.name of the search (default demo). */
  name?: string;
  /** Settings merged over TEST_SETTINGS (e.g. a pod policy). */
  settings?: Partial<OperatorSettings>;
}

export type PodPhaseSpec =
  | { phase: 'Pending'; unschedulable?: string }
  | { phase: 'Running'; startedAt: Date }
  | { phase: 'Succeeded' | 'Failed'; startedAt?: Date; finishedAt: Date; exitCode?: number; message?: string; reason?: string; disruption?: string };

/** Sets a pod's status as a kubelet (and the scheduler) would report it. */
export function setPodState(pod: KubeObject, s: PodPhaseSpec): KubeObject {
  const status: Record<string, unknown> = { phase: s.phase };
  if (s.phase === 'Pending') {
    if (s.unschedulable) status.conditions = [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: s.unschedulable }];
  } else if (s.phase === 'Running') {
    status.containerStatuses = [{ name: TRAINER_CONTAINER, state: { running: { startedAt: s.startedAt.toISOString() } } }];
  } else {
    const exitCode = s.exitCode ?? (s.phase === 'Succeeded' ? 0 : 1);
    status.containerStatuses = [
      {
        name: TRAINER_CONTAINER,
        state: {
          terminated: {
            exitCode,
            reason: exitCode === 0 ? 'Completed' : 'Error',
            ...(s.startedAt && { startedAt: s.startedAt.toISOString() }),
            finishedAt: s.finishedAt.toISOString(),
            ...(s.message && { message: s.message }),
          },
        },
      },
    ];
    if (s.reason) status.reason = s.reason;
    if (s.disruption) status.conditions = [{ type: 'DisruptionTarget', status: 'True', reason: s.disruption, message: 'preempted by a higher-priority pod' }];
  }
  return { ...pod, status };
}

export class World {
  search: KubeObject;
  pods: KubeObject[] = [];
  secrets: KubeObject[] = [];
  claims: KubeObject[] = [];
  deleted: string[] = [];
  events: Array<Extract<Action, { type: 'event' }>> = [];
  progress?: ProgressEvent;
  last?: ReconcileResult;
  readonly settings: OperatorSettings;

  constructor(spec: Record<string, unknown> = {}, opts: WorldOptions = {}) {
    this.search = searchObject(spec, undefined, opts.name);
    this.settings = { ...TEST_SETTINGS, ...opts.settings };
  }

  /** One reconcile on frozen copies of the world, as the controller hands it its frozen cache. */
  reconcile(now: Date, refused?: RefusedCreate): ReconcileResult {
    return reconcile({
      search: frozenCopy(this.search),
      pods: this.pods.map(frozenCopy),
      secrets: this.secrets.map(frozenCopy),
      persistentVolumeClaims: this.claims.map(frozenCopy),
      progress: this.progress,
      now,
      newToken: `token-${now.getTime()}`,
      settings: this.settings,
      ...(refused && { refused }),
    });
  }

  /**
   * One reconcile, its actions applied (created pods start Pending, deleted ones vanish).
   * With `refuse`, the API server refuses creates that this returns true for, and the
   * reconcile runs once more with the refusal as the controller does.
   */
  step(now: Date, refuse?: (object: KubeObject) => RefusedCreate | undefined): ReconcileResult {
    let result = this.reconcile(now);
    const refusal = refuse && result.actions.map((a) => (a.type === 'create' ? refuse(a.object) : undefined)).find(Boolean);
    if (refusal) {
      // The creates before the refused one went through; then the controller reconciles
      // again with the refusal and applies only events and the status.
      const upTo = result.actions.findIndex((a) => a.type === 'create' && a.object.kind === refusal.kind && a.object.metadata.name === refusal.name);
      this.apply(result.actions.slice(0, upTo).filter((a) => a.type === 'create'));
      result = this.reconcile(now, refusal);
      this.apply(result.actions.filter((a) => a.type === 'event'));
      this.search = { ...this.search, status: result.status };
      this.last = result;
      return result;
    }
    this.apply(result.actions);
    this.search = { ...this.search, status: result.status };
    this.last = result;
    return result;
  }

  private apply(actions: Action[]) {
    for (const a of actions) {
      if (a.type === 'create') {
        const list = a.object.kind === 'Pod' ? this.pods : a.object.kind === 'Secret' ? this.secrets : this.claims;
        if (!list.some((o) => o.metadata.name === a.object.metadata.name)) list.push(structuredClone(a.object));
      } else if (a.type === 'delete') {
        this.deleted.push(`${a.kind}/${a.name}`);
        this.pods = this.pods.filter((p) => !(a.kind === 'Pod' && p.metadata.name === a.name));
      } else {
        this.events.push(a);
      }
    }
  }

  pod(name: string): KubeObject {
    const p = this.pods.find((x) => x.metadata.name === name);
    if (!p) throw new Error(`no pod ${name}; pods: ${this.pods.map((x) => x.metadata.name).join(', ')}`);
    return p;
  }

  setPod(name: string, s: PodPhaseSpec) {
    const i = this.pods.findIndex((x) => x.metadata.name === name);
    if (i < 0) throw new Error(`no pod ${name}`);
    this.pods[i] = setPodState(this.pods[i], s);
  }

  editSpec(patch: Record<string, unknown>) {
    this.search = {
      ...this.search,
      metadata: { ...this.search.metadata, generation: (this.search.metadata.generation ?? 1) + 1 },
      spec: { ...(this.search.spec as object), ...patch },
    };
  }

  // biome-ignore lint/suspicious/noExplicitAny: tests read the written status by path and assert on fields its schema keeps optional
  get status(): any {
    return this.search.status;
  }
}

export const result = (r: Record<string, unknown>) => JSON.stringify({ type: 'result', ok: true, ...r });

/** A world whose search pod demo-search-1 was created at 0 and runs from 10, seen at 20. */
export function runningWorld(spec: Record<string, unknown> = {}): World {
  const w = new World(spec);
  w.step(at(0));
  w.setPod('demo-search-1', { phase: 'Running', startedAt: at(10) });
  w.step(at(20));
  return w;
}
