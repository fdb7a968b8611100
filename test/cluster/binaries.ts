// Where the control-plane binaries are: the same places test/cluster/build.sh puts them.
import { accessSync, constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const K8S_VERSION = process.env.K8S_VERSION ?? 'v1.34.4';
export const ETCD_VERSION = process.env.ETCD_VERSION ?? 'v3.6.16';

export const BINARY_NAMES = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'] as const;
export type BinaryName = (typeof BINARY_NAMES)[number];
export type Binaries = Record<BinaryName, string>;

export function defaultBinDir(): string {
  if (process.env.IACNAS_K8S_BIN_DIR) return process.env.IACNAS_K8S_BIN_DIR;
  const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(cache, 'iac-operator', `k8s-${K8S_VERSION}`, 'bin');
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export type BinaryLookup = { ok: true; binaries: Binaries } | { ok: false; missing: string[]; reason: string };

/** Finds each binary in KUBEBUILDER_ASSETS (envtest) first, then in the build cache. */
export function findBinaries(): BinaryLookup {
  const dirs = [process.env.KUBEBUILDER_ASSETS, defaultBinDir()].filter((d): d is string => !!d);
  const found: Partial<Binaries> = {};
  const missing: string[] = [];
  for (const name of BINARY_NAMES) {
    const hit = dirs.map((d) => path.join(d, name)).find(executable);
    if (hit) found[name] = hit;
    else missing.push(name);
  }
  if (missing.length === 0) return { ok: true, binaries: found as Binaries };
  return {
    ok: false,
    missing,
    reason:
      `cluster binaries missing (${missing.join(', ')}) in ${dirs.join(' or ')}; ` +
      `build them once with test/cluster/build.sh (needs Go; 10-25 min cold on 2 cores), ` +
      `or point KUBEBUILDER_ASSETS / IACNAS_K8S_BIN_DIR at a directory holding them`,
  };
}

/** The node binaries of the real-node suites (test/node); the control-plane suites never need them. */
export const NODE_BINARY_NAMES = ['kubelet', 'kube-proxy'] as const;
export type NodeBinaryName = (typeof NODE_BINARY_NAMES)[number];
export type NodeBinaries = Record<NodeBinaryName, string>;

export type NodeBinaryLookup = { ok: true; binaries: NodeBinaries } | { ok: false; missing: string[]; reason: string };

/** Finds kubelet and kube-proxy in the build cache (test/cluster/build.sh builds them). */
export function findNodeBinaries(): NodeBinaryLookup {
  const dir = defaultBinDir();
  const found: Partial<NodeBinaries> = {};
  const missing: string[] = [];
  for (const name of NODE_BINARY_NAMES) {
    const p = path.join(dir, name);
    if (executable(p)) found[name] = p;
    else missing.push(name);
  }
  if (missing.length === 0) return { ok: true, binaries: found as NodeBinaries };
  return {
    ok: false,
    missing,
    reason: `node binaries missing (${missing.join(', ')}) in ${dir}; build them with test/cluster/build.sh (about a minute when the control plane was built before)`,
  };
}
