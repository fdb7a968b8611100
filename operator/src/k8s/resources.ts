// The resource types the operator reads and writes.
import type { ResourceType } from './types.ts';

export const IACSearchType: ResourceType = {
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  plural: 'iacsearches',
  namespaced: true,
};
export const IACSearchSetType: ResourceType = {
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearchSet',
  plural: 'iacsearchsets',
  namespaced: true,
};
export const PodType: ResourceType = { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true };
export const SecretType: ResourceType = { apiVersion: 'v1', kind: 'Secret', plural: 'secrets', namespaced: true };
export const PersistentVolumeClaimType: ResourceType = {
  apiVersion: 'v1',
  kind: 'PersistentVolumeClaim',
  plural: 'persistentvolumeclaims',
  namespaced: true,
};
export const LeaseType: ResourceType = {
  apiVersion: 'coordination.k8s.io/v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
};
export const EventType: ResourceType = {
  apiVersion: 'events.k8s.io/v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
};

const byKind = new Map([IACSearchType, IACSearchSetType, PodType, SecretType, PersistentVolumeClaimType, LeaseType, EventType].map((t) => [t.kind, t]));

/** The resource type of a kind the operator handles; throws for any other kind. */
export function resourceTypeOf(kind: string): ResourceType {
  const t = byKind.get(kind);
  if (!t) throw new Error(`unsupported kind '${kind}' (the operator handles ${[...byKind.keys()].join(', ')})`);
  return t;
}

/** The REST path of a collection or, with a name, of one object. */
export function resourcePath(type: ResourceType, namespace?: string, name?: string, subresource?: string): string {
  const base = type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
  let path = base;
  if (type.namespaced && namespace) path += `/namespaces/${encodeURIComponent(namespace)}`;
  path += `/${type.plural}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  if (subresource) path += `/${subresource}`;
  return path;
}
