// What a search may ask of its pods. The operator creates pods with its own service
// account, so without a policy anyone who may edit IACSearches could have it create a pod
// with any image, any priority class, any toleration and any claim of the namespace
// mounted read-write: a pod-creation proxy. The platform team sets the policy with the
// operator's flags (docs/pod-policy.md); a search that asks for more gets
// Stalled=True, reason PolicyViolation, one Warning event, and no pod.
import { LABEL_SEARCH, type IACSearch } from '../api/index.ts';
import type { AllowedToleration, KubeObject, PodPolicy } from './types.ts';

export type { AllowedToleration, PodPolicy } from './types.ts';

/**
 * Node labels a search may select by default: GPU models and counts (NVIDIA GPU feature
 * discovery, cloud accelerators), instance types, node pools and zones. Not
 * node-role.kubernetes.io/* or kubernetes.io/hostname: a search picks a kind of GPU node,
 * not a particular node.
 */
export const DEFAULT_NODE_SELECTOR_KEYS = [
  'nvidia.com/*',
  'node.kubernetes.io/instance-type',
  'topology.kubernetes.io/*',
  'cloud.google.com/gke-accelerator',
  'cloud.google.com/gke-nodepool',
  'eks.amazonaws.com/nodegroup',
  'karpenter.sh/nodepool',
  'kubernetes.azure.com/agentpool',
];

/** Tolerations a search may set by default: the usual taint of GPU nodes, nothing else. */
export const DEFAULT_TOLERATIONS = ['nvidia.com/gpu'];

export interface ImageRef {
  /** registry/path, Docker Hub names completed (ubuntu -> docker.io/library/ubuntu). */
  repository: string;
  /** ":tag" or "". */
  tag: string;
  /** "@sha256:..." or "". */
  digest: string;
}

/** Splits an image reference the way a container runtime resolves it. */
export function parseImageRef(ref: string): ImageRef {
  let rest = ref.trim();
  let digest = '';
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at);
    rest = rest.slice(0, at);
  }
  let tag = '';
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon);
    rest = rest.slice(0, colon);
  }
  const first = rest.split('/')[0];
  const hasRegistry = rest.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasRegistry) rest = `docker.io/${rest.includes('/') ? rest : `library/${rest}`}`;
  else if (first === 'index.docker.io') rest = `docker.io/${rest.slice(first.length + 1)}`;
  return { repository: rest, tag, digest };
}

/** The repository of an image, as a pattern that allows any tag or digest of it. */
export function imageRepository(image: string): string {
  return parseImageRef(image).repository;
}

function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        re += '.*';
        i++;
      } else {
        re += '[^/]*';
      }
    } else {
      re += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}

/** Glob match: `*` within one path segment, `**` across segments; a lone `*` matches anything. */
export function globMatch(pattern: string, value: string): boolean {
  if (pattern === '*' || pattern === '**') return true;
  return globRegExp(pattern).test(value);
}

/** Whether an image matches a pattern: `[registry/]repository[:tag][@digest]`; no tag and no digest allows any. */
export function imageMatches(pattern: string, image: string): boolean {
  if (pattern === '*' || pattern === '**') return true;
  const p = parseImageRef(pattern);
  const i = parseImageRef(image);
  if (!globMatch(p.repository, i.repository)) return false;
  if (p.tag && !globMatch(p.tag, i.tag)) return false;
  if (p.digest && !globMatch(p.digest, i.digest)) return false;
  return true;
}

const EFFECTS = ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] as const;

/** Parses `key[=value][:effect]` (e.g. nvidia.com/gpu, dedicated=ml:NoSchedule). */
export function parseAllowedToleration(text: string): AllowedToleration {
  let rest = text.trim();
  let effect: AllowedToleration['effect'];
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    const e = rest.slice(colon + 1);
    if (!(EFFECTS as readonly string[]).includes(e)) throw new Error(`'${text}': the effect after ':' must be one of ${EFFECTS.join(', ')}`);
    effect = e as AllowedToleration['effect'];
    rest = rest.slice(0, colon);
  }
  let value: string | undefined;
  const eq = rest.indexOf('=');
  if (eq >= 0) {
    value = rest.slice(eq + 1);
    rest = rest.slice(0, eq);
  }
  if (!rest) throw new Error(`'${text}': a toleration needs a key (use * for any key)`);
  return { key: rest, ...(value !== undefined && { value }), ...(effect && { effect }) };
}

export function formatAllowedToleration(t: AllowedToleration): string {
  return `${t.key}${t.value !== undefined ? `=${t.value}` : ''}${t.effect ? `:${t.effect}` : ''}`;
}

/** The policy when the platform team sets nothing: the default trainer image's repository, GPU node pools, the GPU taint. */
export function defaultPolicy(defaultImage: string): PodPolicy {
  return {
    allowedImages: [imageRepository(defaultImage)],
    allowedPriorityClasses: [],
    allowedNodeSelectorKeys: [...DEFAULT_NODE_SELECTOR_KEYS],
    allowedTolerations: DEFAULT_TOLERATIONS.map(parseAllowedToleration),
  };
}

interface TolerationSpec {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
}

/** Whether an allowed entry covers a toleration: never one broader than the entry (any key, any value, any effect). */
function tolerationAllowed(t: TolerationSpec, allowed: AllowedToleration): boolean {
  const anyKey = allowed.key === '*' || allowed.key === '**';
  if (!t.key) {
    if (!anyKey) return false; // an empty key with Exists tolerates every taint
  } else if (!globMatch(allowed.key, t.key)) {
    return false;
  }
  if (allowed.value !== undefined && (t.operator === 'Exists' || (t.value ?? '') !== allowed.value)) return false;
  if (allowed.effect && t.effect !== allowed.effect) return false;
  return true;
}

const list = (items: string[]) => (items.length ? items.join(', ') : 'none');

/** A claim the search may mount read-write: created by the operator for it, or labelled iac.dev/search=<name> and controlled by nothing else. */
function claimForSearch(claims: KubeObject[], search: IACSearch, name: string): boolean {
  const claim = claims.find((c) => c.metadata.name === name);
  if (!claim || claim.metadata.labels?.[LABEL_SEARCH] !== search.metadata.name) return false;
  const controller = claim.metadata.ownerReferences?.find((r) => r.controller);
  return !controller || (controller.kind === 'IACSearch' && (!search.metadata.uid || controller.uid === search.metadata.uid));
}

/**
 * Everything the search asks of its pods that the policy does not allow, one line per
 * field naming what is allowed. Empty: the pods may be created.
 */
export function policyViolations(search: IACSearch, policy: PodPolicy, defaultImage: string, claims: KubeObject[]): string[] {
  const out: string[] = [];
  const { spec } = search;
  const name = search.metadata.name;
  if (spec.image !== undefined && spec.image !== defaultImage && !policy.allowedImages.some((p) => imageMatches(p, spec.image!))) {
    out.push(`spec.image: '${spec.image}' matches none of the allowed images (${list(policy.allowedImages)}); leave it unset for the operator's trainer image`);
  }
  const pc = spec.resources.priorityClassName;
  if (pc && !policy.allowedPriorityClasses.some((p) => globMatch(p, pc))) {
    out.push(`spec.resources.priorityClassName: '${pc}' is not an allowed priority class (allowed: ${list(policy.allowedPriorityClasses)})`);
  }
  for (const key of Object.keys(spec.resources.nodeSelector ?? {})) {
    if (!policy.allowedNodeSelectorKeys.some((p) => globMatch(p, key))) {
      out.push(`spec.resources.nodeSelector: key '${key}' is not allowed (allowed keys: ${list(policy.allowedNodeSelectorKeys)})`);
    }
  }
  for (const [i, t] of (spec.resources.tolerations ?? []).entries()) {
    if (!policy.allowedTolerations.some((a) => tolerationAllowed(t, a))) {
      const what = t.key ? `'${t.key}${t.operator === 'Exists' ? '' : `=${t.value ?? ''}`}${t.effect ? `:${t.effect}` : ''}'` : 'of every taint (empty key)';
      out.push(
        `spec.resources.tolerations[${i}]: the toleration ${what} is not allowed (allowed: ${list(policy.allowedTolerations.map(formatAllowedToleration))})`,
      );
    }
  }
  const artifacts = spec.artifacts.claimName;
  if (artifacts && !claimForSearch(claims, search, artifacts)) {
    out.push(
      `spec.artifacts.claimName: claim '${artifacts}' is not labelled for this search (or does not exist); the phase pods write to it, so it must carry the label ${LABEL_SEARCH}=${name} and belong to nothing else (kubectl label pvc ${artifacts} ${LABEL_SEARCH}=${name}), or leave claimName unset for a claim of the search's own`,
    );
  }
  const dataset = spec.dataset.pvc;
  if (dataset && !dataset.readOnly && !claimForSearch(claims, search, dataset.claimName)) {
    out.push(
      `spec.dataset.pvc.readOnly: false mounts claim '${dataset.claimName}' read-write, which needs the label ${LABEL_SEARCH}=${name} on it (kubectl label pvc ${dataset.claimName} ${LABEL_SEARCH}=${name}); set readOnly: true to read a shared dataset`,
    );
  }
  for (const [i, item] of spec.evaluate.external.entries()) {
    const pvc = item.pvc;
    if (pvc && !pvc.readOnly && !claimForSearch(claims, search, pvc.claimName)) {
      out.push(
        `spec.evaluate.external[${i}].pvc.readOnly: false mounts claim '${pvc.claimName}' read-write, which needs the label ${LABEL_SEARCH}=${name} on it (kubectl label pvc ${pvc.claimName} ${LABEL_SEARCH}=${name}); set readOnly: true to read a shared dataset`,
      );
    }
  }
  return out;
}
