// The contract of the phase state machine: a pure function from what the API server
// holds (and the clock) to actions and the new status. No I/O, no client-node: the
// Kubernetes objects here are plain JSON shapes, as the API server serves them.
import type { ProgressEvent } from '../../../trainer/src/report/events.ts';

/** The subset of Kubernetes object metadata the state machine reads and writes. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: Array<{
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
    blockOwnerDeletion?: boolean;
  }>;
}

/** A Kubernetes object as JSON: apiVersion, kind, metadata and the rest untyped. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

/** What reconcile observes: the IACSearch as stored (unvalidated) and its children. */
export interface ReconcileInput {
  /** The IACSearch object exactly as read (the state machine validates it). */
  search: KubeObject;
  /** Pods owned by the search (label iac.dev/search=<name>). */
  pods: KubeObject[];
  secrets: KubeObject[];
  persistentVolumeClaims: KubeObject[];
  /** Latest progress event accepted for this search, if any (advisory). */
  progress?: ProgressEvent;
  now: Date;
  /**
   * A fresh random token (the caller generates one per call, e.g. 32 random bytes
   * base64url). Used only when the search's progress Secret must be created, so
   * reconcile stays a pure function of its input.
   */
  newToken: string;
  /** Operator settings that the state machine needs (progress URL, default image). */
  settings: OperatorSettings;
}

export interface OperatorSettings {
  /** URL that trainer pods POST progress to, e.g. http://iac-operator.iac-system.svc:8080/v1/progress. */
  progressURL?: string;
  /** Trainer image used when spec.image is empty. */
  defaultImage: string;
}

export type Action =
  | { type: 'create'; object: KubeObject }
  | { type: 'delete'; kind: 'Pod' | 'Secret' | 'PersistentVolumeClaim' | 'IACSearch'; name: string; namespace: string }
  | { type: 'event'; eventType: 'Normal' | 'Warning'; reason: string; message: string };

export interface ReconcileResult {
  actions: Action[];
  /** The complete new status (written only when it differs from the stored one). */
  status: Record<string, unknown>;
  /** Look again after this many milliseconds even if nothing changes (backoff, deadlines, TTL). */
  requeueAfterMs?: number;
}
