// Shared set-up of the end-to-end suites: a control plane with the IACSearch CRD
// installed, test-kubelet nodes, namespaces, and the operator run from this checkout.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startCluster, waitFor, type Cluster, type ClusterOptions } from '../cluster/control-plane.ts';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { REPO_ROOT, TestKubelet, type TestKubeletOptions } from '../cluster/test-kubelet.ts';

export const CRD_PATH = path.join(REPO_ROOT, 'crds', 'nas.iac.dev_iacsearches.yaml');
export const CRD_NAME = 'iacsearches.nas.iac.dev';
export const IACS_API = '/apis/nas.iac.dev/v1alpha1';

export const iacsPath = (namespace: string, name?: string) => `${IACS_API}/namespaces/${namespace}/iacsearches${name ? `/${name}` : ''}`;

/** Installs the generated CRD with server-side apply and waits until it is served. */
export async function installCRD(cluster: Cluster): Promise<void> {
  await cluster.kubectl(['apply', '--server-side', '--field-manager=iacnas-e2e', '-f', CRD_PATH]);
  // (kubectl wait fails outright while a fresh CRD has no conditions yet.)
  await waitFor('CRD Established', async () => {
    const crd = await cluster.client.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${CRD_NAME}`);
    return condition(crd, 'Established')?.status === 'True';
  }, 60_000);
  // Discovery and the OpenAPI document follow the Established condition by a moment.
  await waitFor('IACSearch served', () => cluster.client.get(`${IACS_API}/iacsearches`), 30_000);
  await waitFor('IACSearch in discovery', async () => {
    const resources = await cluster.client.get(IACS_API);
    return resources.resources?.some((r: { name: string; shortNames?: string[] }) => r.name === 'iacsearches' && r.shortNames?.includes('iacs'));
  }, 30_000);
  await waitFor('IACSearch OpenAPI v3 schema', async () => {
    const doc = await cluster.client.get('/openapi/v3');
    return Object.keys(doc.paths ?? {}).includes('apis/nas.iac.dev/v1alpha1');
  }, 30_000);
  cluster.invalidateKubectlCache();
}

/** Creates a namespace and waits for its default service account (pods need it). */
export async function createNamespace(cluster: Cluster, name: string): Promise<void> {
  await cluster.client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await waitFor(`service account ${name}/default`, () => cluster.client.find(`/api/v1/namespaces/${name}/serviceaccounts/default`), 30_000);
}

export interface E2EEnv {
  cluster: Cluster;
  kubelet?: TestKubelet;
  stop(): Promise<void>;
}

export async function startE2E(opts: { cluster?: ClusterOptions; kubelet?: TestKubeletOptions } = {}): Promise<E2EEnv> {
  const cluster = await startCluster(opts.cluster);
  try {
    await installCRD(cluster);
    const kubelet = opts.kubelet ? await TestKubelet.start(cluster, opts.kubelet) : undefined;
    return { cluster, kubelet, stop: () => cluster.stop() };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

/** A condition of an object's status by type. */
export function condition(obj: KubeJSON, type: string): KubeJSON | undefined {
  return (obj?.status?.conditions ?? []).find((c: { type: string }) => c.type === type);
}

/** Reads the CRD file's text (for tests that inspect it). */
export function crdText(): string {
  return readFileSync(CRD_PATH, 'utf8');
}
