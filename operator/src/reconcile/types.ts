// The contract of the phase state machine: a pure function from what the API server
// holds (and the clock) to actions and the new status. No I/O, no API client: the
// Kubernetes objects here are plain JSON shapes, as the API server serves them.
import type { ProgressEvent } from '../../../contract/src/index.ts';

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
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
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
  /** Operator settings that the state machine needs (progress URL, default image, pod policy). */
  settings: OperatorSettings;
  /**
   * The API server refused a create of the previous reconcile of this same input (the
   * controller reconciles once more with it, writes the status and retries with backoff):
   * the search then says so (Stalled, reason CreateRefused) instead of only the log.
   */
  refused?: RefusedCreate;
}

/** A create the API server refused (403 quota or admission, 422 invalid, 404 namespace gone, ...). */
export interface RefusedCreate {
  kind: string;
  name: string;
  /** HTTP status code of the answer. */
  code: number;
  /** The Status reason, e.g. Forbidden, Invalid, NotFound. */
  reason?: string;
  /** The API server's message. */
  message: string;
}

export interface OperatorSettings {
  /** URL that trainer pods POST progress to, e.g. http://iac-operator.iac-system.svc:8080/v1/progress. */
  progressURL?: string;
  /** Trainer image used when spec.image is empty. */
  defaultImage: string;
  /**
   * What a search may ask of its pods (set by the platform team). Unset: no restriction
   * (`iacnas run`, where the pods are local processes); the operator always sets one.
   */
  policy?: PodPolicy;
  /**
   * A Normal event at every phase start and end (reasons Searching, Pruning, ...,
   * PhaseSucceeded) and when the search Succeeded. Off: Normal events only for suspend,
   * resume and a retry's pod; Warnings (failures, refusals, budget, corrections) always.
   * Phase changes and the outcome are in the status either way.
   */
  phaseEvents?: boolean;
}

/**
 * What an IACSearch may ask of its pods: an IACSearch editor must not get more than
 * "run the trainer" through the operator's pod-creation rights. Patterns are globs: `*`
 * matches within one path segment, `**` across segments.
 */
export interface PodPolicy {
  /** Image patterns a spec.image must match (the default image is always allowed). */
  allowedImages: string[];
  /** priorityClassName values allowed besides empty. */
  allowedPriorityClasses: string[];
  /** Patterns of the nodeSelector keys a search may set. */
  allowedNodeSelectorKeys: string[];
  /** Tolerations a search may set: each of its tolerations must fall within one of these. */
  allowedTolerations: AllowedToleration[];
}

/** An allowed toleration: `key[=value][:effect]`; an unset value or effect allows any. */
export interface AllowedToleration {
  key: string;
  value?: string;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
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
