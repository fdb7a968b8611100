// What the operator's caches keep of the objects it owns. At fleet scale the informers'
// caches are most of the operator's memory: a pod as the API server serves it is 5-8 KB
// of JSON (managedFields, volumes, environment, tolerations, node-written status); the
// reconcile reads a few hundred bytes of it. Each informer reduces its objects to the
// fields below before caching them (Informer's `transform`), and indexes them by the
// search that owns them (`ownerIndex`), so a reconcile reads its children without a scan.
import type { KubeObject } from '../k8s/types.ts';
import { LABEL_SEARCH, LABEL_SEARCH_SET } from '../../../contract/src/index.ts';

type Json = Record<string, unknown>;

/** The owner index key of a child: `<namespace>/<search>` from its search label. */
export function ownerIndex(object: KubeObject): string | undefined {
  const search = object.metadata.labels?.[LABEL_SEARCH];
  return search && object.metadata.namespace ? `${object.metadata.namespace}/${search}` : undefined;
}

/** The set index key of an IACSearch an IACSearchSet created: `<namespace>/<set>` from its set label. */
export function setIndex(object: KubeObject): string | undefined {
  const set = object.metadata.labels?.[LABEL_SEARCH_SET];
  return set && object.metadata.namespace ? `${object.metadata.namespace}/${set}` : undefined;
}

/** Metadata a reconcile reads of a child (identity, labels, owner, lifecycle). */
function childMetadata(m: KubeObject['metadata']): KubeObject['metadata'] {
  const out: KubeObject['metadata'] = { name: m.name };
  for (const key of ['namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'labels', 'ownerReferences'] as const) {
    if (m[key] !== undefined) (out as unknown as Json)[key] = m[key];
  }
  return out;
}

function pick(from: Json | undefined, keys: readonly string[]): Json | undefined {
  if (!from) return undefined;
  const out: Json = {};
  for (const key of keys) if (from[key] !== undefined) out[key] = from[key];
  return out;
}

/**
 * A pod as observePod (reconcile/observe.ts) reads it: labels and lifecycle, each
 * container's name and resources, its scheduling gates, and the status' phase, reason, conditions and
 * container states (with the termination message, the phase's result).
 */
export function slimPod(pod: KubeObject): KubeObject {
  const spec = pod.spec as Json | undefined;
  const status = pod.status as Json | undefined;
  const slim: KubeObject = { apiVersion: pod.apiVersion, kind: pod.kind, metadata: childMetadata(pod.metadata) };
  if (spec) {
    const containers = (spec.containers as Json[] | undefined)?.map((c) => pick(c, ['name', 'resources']));
    // Scheduling gates: Kueue holds a pod back with one (reconcile/kueue.ts).
    const schedulingGates = (spec.schedulingGates as Json[] | undefined)?.map((g) => pick(g, ['name']));
    slim.spec = { ...pick(spec, ['nodeName']), ...(containers ? { containers } : {}), ...(schedulingGates?.length ? { schedulingGates } : {}) };
  }
  if (status) {
    const conditions = (status.conditions as Json[] | undefined)?.map((c) => pick(c, ['type', 'status', 'reason', 'message']));
    const containerStatuses = (status.containerStatuses as Json[] | undefined)?.map((c) => pick(c, ['name', 'state']));
    slim.status = {
      ...pick(status, ['phase', 'reason', 'message', 'startTime']),
      ...(conditions ? { conditions } : {}),
      ...(containerStatuses ? { containerStatuses } : {}),
    };
  }
  return slim;
}

/** A claim: metadata (the policy checks its label and owner) and its phase. */
export function slimClaim(claim: KubeObject): KubeObject {
  const slim: KubeObject = { apiVersion: claim.apiVersion, kind: claim.kind, metadata: childMetadata(claim.metadata) };
  const phase = (claim.status as Json | undefined)?.phase;
  if (phase !== undefined) slim.status = { phase };
  return slim;
}
