// Shared set-up of the end-to-end suites: a control plane with the IACSearch CRD
// installed, test-kubelet nodes, namespaces, and the operator run from this checkout.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, startCluster, waitFor, type Cluster, type ClusterOptions } from '../cluster/control-plane.ts';
import type { KubeJSON } from '../cluster/kube-client.ts';
import { spawnGroup, type ManagedProcess } from '../cluster/processes.ts';
import { REPO_ROOT, TestKubelet, type TestKubeletOptions } from '../cluster/test-kubelet.ts';

/** The CRD under test: the generated one, or another copy of it (e.g. a chart's) named by IACNAS_E2E_CRD. */
export const CRD_PATH = process.env.IACNAS_E2E_CRD ?? path.join(REPO_ROOT, 'crds', 'nas.iac.dev_iacsearches.yaml');
export const CRD_NAME = 'iacsearches.nas.iac.dev';
/** The IACSearchSet CRD, beside the IACSearch one (crds/ or a chart's copy). */
export const SET_CRD_PATH = path.join(path.dirname(CRD_PATH), 'nas.iac.dev_iacsearchsets.yaml');
export const SET_CRD_NAME = 'iacsearchsets.nas.iac.dev';
export const IACS_API = '/apis/nas.iac.dev/v1alpha1';

export const setsPath = (namespace: string, name?: string) => `${IACS_API}/namespaces/${namespace}/iacsearchsets${name ? `/${name}` : ''}`;
export const iacsPath = (namespace: string, name?: string) => `${IACS_API}/namespaces/${namespace}/iacsearches${name ? `/${name}` : ''}`;

/** Installs the generated CRD with server-side apply and waits until it is served. */
export async function installCRD(cluster: Cluster): Promise<void> {
  const crds = existsSync(SET_CRD_PATH) ? [CRD_PATH, SET_CRD_PATH] : [CRD_PATH];
  await cluster.kubectl(['apply', '--server-side', '--field-manager=iacnas-e2e', ...crds.flatMap((f) => ['-f', f])]);
  // (kubectl wait fails outright while a fresh CRD has no conditions yet.)
  for (const name of crds.length > 1 ? [CRD_NAME, SET_CRD_NAME] : [CRD_NAME]) {
    await waitFor(
      `CRD ${name} Established`,
      async () => {
        const crd = await cluster.client.get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
        return condition(crd, 'Established')?.status === 'True';
      },
      60_000,
    );
  }
  // Discovery and the OpenAPI document follow the Established condition by a moment.
  await waitFor('IACSearch served', () => cluster.client.get(`${IACS_API}/iacsearches`), 30_000);
  await waitFor(
    'IACSearch in discovery',
    async () => {
      const resources = await cluster.client.get(IACS_API);
      return resources.resources?.some((r: { name: string; shortNames?: string[] }) => r.name === 'iacsearches' && r.shortNames?.includes('iacs'));
    },
    30_000,
  );
  await waitFor(
    'IACSearch OpenAPI v3 schema',
    async () => {
      const doc = await cluster.client.get('/openapi/v3');
      return Object.keys(doc.paths ?? {}).includes('apis/nas.iac.dev/v1alpha1');
    },
    30_000,
  );
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

// ---------------------------------------------------------------- the operator

export interface OperatorHandle {
  name: string;
  port: number;
  url: string;
  logFile: string;
  proc: ManagedProcess;
  /** SIGKILL: no graceful shutdown, no lease release. */
  kill(): Promise<void>;
  /** SIGTERM (graceful). */
  stop(): Promise<void>;
}

export interface OperatorOptions {
  name?: string;
  leaderElect?: boolean;
  args?: string[];
}

let operatorSeq = 0;

/** Runs `iacnas operator --kubeconfig ...` from this checkout and waits until it is ready. */
export async function startOperator(cluster: Cluster, opts: OperatorOptions = {}): Promise<OperatorHandle> {
  const name = opts.name ?? `operator-${operatorSeq++}`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = cluster.logFile(name);
  const args = [
    path.join(REPO_ROOT, 'bin', 'iacnas.ts'),
    'operator',
    `--kubeconfig=${cluster.kubeconfigPath}`,
    '--host=127.0.0.1',
    `--port=${port}`,
    `--progress-url=${url}/v1/progress`,
    '--advertise-address=127.0.0.1',
    '--progress-interval=1s',
    '--log-level=debug',
    ...(opts.leaderElect ? ['--leader-elect', `--leader-election-identity=${name}`, '--leader-election-namespace=default'] : []),
    ...(opts.args ?? []),
  ];
  const proc = spawnGroup(name, process.execPath, args, { logFile, env: { ...process.env, POD_NAMESPACE: '', POD_NAME: '', POD_IP: '' } });
  const handle: OperatorHandle = {
    name,
    port,
    url,
    logFile,
    proc,
    kill: async () => {
      proc.signal('SIGKILL');
      await proc.exited;
    },
    stop: async () => {
      await proc.stop(10_000);
    },
  };
  cluster.onStop(() => handle.stop());
  await Promise.race([
    waitFor(`${name} /healthz`, async () => (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) })).ok, 60_000, 300),
    proc.exited.then((s) => {
      throw new Error(`${name} exited during start (code ${s.code}): ${readFileSync(logFile, 'utf8').slice(-3000)}`);
    }),
  ]);
  return handle;
}

// ---------------------------------------------------------------- searches

type Spec = Record<string, unknown>;

function merge(base: Spec, over: Spec): Spec {
  const out: Spec = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b) ? merge(b as Spec, v as Spec) : v;
  }
  return out;
}

/**
 * A search small enough that each phase of the real trainer takes seconds: 6 phantom
 * patients of 16x16 slices, a one-level U-Net, a one-node cell with two operations.
 * `searchEpochs` with stability off makes the search phase last a chosen while.
 */
export function tinySearch(name: string, namespace: string, opts: { searchEpochs?: number; spec?: Spec } = {}): KubeJSON {
  const epochs = opts.searchEpochs;
  const base: Spec = {
    dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
    backbone: { depth: 1, baseFilters: 4, pretrainEpochs: 2 },
    search: {
      maxEpochs: epochs ?? 3,
      nodes: 1,
      batchSize: 4,
      stepsPerEpoch: 2,
      warmupEpochs: 1,
      operations: ['skip_connect', 'conv_3x3'],
      stability: epochs ? { enabled: false } : { window: 1 },
    },
    retrain: { epochs: 2, stepsPerEpoch: 2 },
    resources: { gpus: 1, cpu: '1', memory: '1Gi' },
    cost: { gpuHourlyUSD: 3.6 },
    artifacts: { size: '1Gi' },
  };
  return { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name, namespace }, spec: merge(base, opts.spec ?? {}) };
}

/**
 * Polls the search until `check` holds; the timeout error shows its last status. `hopeless`, when given, is asked after each
 * failed check: a message there (the condition can no longer come) fails the wait at
 * once with that message instead of at the timeout.
 */
export async function waitForSearch(
  cluster: Cluster,
  namespace: string,
  name: string,
  what: string,
  check: (s: KubeJSON) => boolean,
  timeoutMs = 180_000,
  hopeless?: () => Promise<string | undefined | false> | string | undefined | false,
): Promise<KubeJSON> {
  let last: KubeJSON;
  let gaveUp: string | undefined;
  try {
    const found = await waitFor(
      `${namespace}/${name}: ${what}`,
      async () => {
        last = await cluster.client.find(iacsPath(namespace, name));
        if (last && check(last)) return last;
        // waitFor retries a check that throws; a hopeless wait ends it with a value instead.
        const why = hopeless ? await hopeless() : undefined;
        if (why) gaveUp = why;
        return why ? (last ?? {}) : undefined;
      },
      timeoutMs,
      500,
    );
    if (gaveUp !== undefined) throw new Error(`${namespace}/${name}: gave up waiting for ${what}: ${gaveUp}`);
    return found;
  } catch (err) {
    throw new Error(`${(err as Error).message}\nlast status: ${JSON.stringify(last?.status ?? null, null, 1).slice(0, 6000)}`);
  }
}

/** Pods of a search (label iac.dev/search), sorted by name. */
export async function searchPods(cluster: Cluster, namespace: string, name: string): Promise<KubeJSON[]> {
  const list = await cluster.client.get(`/api/v1/namespaces/${namespace}/pods?labelSelector=${encodeURIComponent(`iac.dev/search=${name}`)}`);
  return (list.items as KubeJSON[]).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
}

/** GPU-seconds of pods from their container start and finish times, as the API server holds them. */
export function podGPUSeconds(pods: KubeJSON[]): number {
  let total = 0;
  for (const p of pods) {
    const t = p.status?.containerStatuses?.[0]?.state?.terminated;
    const gpus = Number(p.spec.containers[0].resources?.limits?.['nvidia.com/gpu'] ?? 0);
    if (!t || !gpus) continue;
    total += ((Date.parse(t.finishedAt) - Date.parse(t.startedAt)) / 1000) * gpus;
  }
  return total;
}

export const isPhase = (phase: string) => (s: KubeJSON) => s.status?.phase === phase;

/** Waits until a pod's container output (as the test kubelet saw it) contains `text`. */
export async function waitForLog(kubelet: TestKubelet, namespace: string, pod: string, text: string | RegExp, timeoutMs = 120_000): Promise<void> {
  await waitFor(
    `log of ${namespace}/${pod} to show ${String(text)}`,
    () => {
      const log = kubelet.logs(namespace, pod);
      return typeof text === 'string' ? log.includes(text) : text.test(log);
    },
    timeoutMs,
    250,
  );
}

/** Creates a claim and waits until it is bound; returns the local directory of its volume. */
export async function boundClaim(cluster: Cluster, namespace: string, name: string): Promise<string> {
  await cluster.client.create(`/api/v1/namespaces/${namespace}/persistentvolumeclaims`, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  });
  const pvc = await waitFor(
    `claim ${name} bound`,
    async () => {
      const c = await cluster.client.get(`/api/v1/namespaces/${namespace}/persistentvolumeclaims/${name}`);
      return c.status?.phase === 'Bound' ? c : undefined;
    },
    60_000,
  );
  const pv = await cluster.client.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
  return pv.spec.hostPath.path as string;
}
