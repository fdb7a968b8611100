// Kueue's manager (sigs.k8s.io/kueue, built by test/cluster/build-kueue.sh) beside a started
// test control plane, admitting plain Pods that carry the kueue.x-k8s.io/queue-name label.
// What makes it run on loopback (docs/cluster-tests.md, "Kueue"):
// - its CRDs are applied server-side (the Workload CRD is too big for a client-side apply)
//   and Established before the manager starts (its informers need the kinds);
// - its webhook serves on 127.0.0.1 with a certificate of the cluster's CA (internal cert
//   management only makes DNS-named ones), and the webhook configurations name that URL;
//   only the pod webhooks and Kueue's own kinds' are registered (every shipped webhook is
//   failurePolicy Fail), and the pod ones only see pods with the queue label;
// - with internal cert management off the manager reads a metrics certificate from the
//   fixed path /etc/kueue/metrics/certs and exits without it: it runs in a private mount
//   namespace whose /etc is an overlay holding that file (unshare and mount: root only);
// - every address it listens on is a free loopback port, VisibilityOnDemand is off (it
//   would start another server on :8082 and exit without its certificate).
import { accessSync, constants, cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { makeLoopbackServingCert } from './certs.ts';
import { freePort, waitFor, type Cluster } from './control-plane.ts';
import type { KubeJSON } from './kube-client.ts';
import { spawnGroup, type ManagedProcess } from './processes.ts';

export const KUEUE_VERSION = process.env.KUEUE_VERSION ?? 'v0.17.0';
export const KUEUE_API = '/apis/kueue.x-k8s.io/v1beta2';
/** The label that hands a pod to a LocalQueue. */
export const QUEUE_LABEL = 'kueue.x-k8s.io/queue-name';
/** The scheduling gate of a pod Kueue has not admitted yet. */
export const ADMISSION_GATE = 'kueue.x-k8s.io/admission';

/** Webhooks kept of the shipped manifests: Kueue's own kinds and the pod integration. */
const KEPT_WEBHOOKS = new Set([
  'mclusterqueue.kb.io',
  'vclusterqueue.kb.io',
  'vcohort.kb.io',
  'mresourceflavor.kb.io',
  'vresourceflavor.kb.io',
  'mworkload.kb.io',
  'vworkload.kb.io',
  'mpod.kb.io',
  'vpod.kb.io',
]);
const POD_WEBHOOKS = new Set(['mpod.kb.io', 'vpod.kb.io']);
const WEBHOOK_CONFIG_NAMES: Record<string, string> = {
  MutatingWebhookConfiguration: 'kueue-mutating-webhook-configuration',
  ValidatingWebhookConfiguration: 'kueue-validating-webhook-configuration',
};

export function kueueDir(): string {
  if (process.env.IACNAS_KUEUE_DIR) return process.env.IACNAS_KUEUE_DIR;
  const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(cache, 'iac-operator', `kueue-${KUEUE_VERSION}`);
}

export interface KueueAvailability {
  skip: boolean;
  reason?: string;
}

/**
 * Whether a Kueue suite runs here: it needs the built manager and root (for its private
 * mount namespace). Outside CI a machine without them skips the suite and says why; in CI
 * the suite runs and fails on what is missing.
 */
export function kueueAvailability(): KueueAvailability {
  let reason: string | undefined;
  try {
    accessSync(path.join(kueueDir(), 'bin', 'kueue'), constants.X_OK);
    accessSync(path.join(kueueDir(), 'webhook', 'manifests.yaml'), constants.R_OK);
  } catch {
    reason = `Kueue ${KUEUE_VERSION} is not built in ${kueueDir()}; build it once with test/cluster/build-kueue.sh (needs Go; about 6 min cold on 2 cores)`;
  }
  if (!reason && process.getuid?.() !== 0) {
    reason = "Kueue's manager runs in a private mount namespace (unshare --mount) for its fixed metrics-certificate path, which needs root";
  }
  if (!reason) return { skip: false };
  if (process.env.CI === 'true' || process.env.CI === '1') return { skip: false, reason };
  console.warn(`skipping Kueue suite: ${reason}`);
  return { skip: true, reason };
}

/**
 * The shipped webhook manifests rewritten for a manager on 127.0.0.1:`port`: a URL and the CA
 * bundle instead of a Service, only the kept webhooks, and the pod webhooks limited to pods
 * with the queue label outside kube-system (so that no other pod waits on, or is refused
 * for, a manager that is down).
 */
export function loopbackWebhookConfigurations(manifests: string, port: number, caPEM: string): KubeJSON[] {
  const caBundle = Buffer.from(caPEM).toString('base64');
  const out: KubeJSON[] = [];
  for (const doc of parseAllDocuments(manifests)) {
    const config = doc.toJS() as KubeJSON | null;
    if (!config?.kind || !WEBHOOK_CONFIG_NAMES[config.kind]) continue;
    const webhooks = (config.webhooks as KubeJSON[])
      .filter((w) => KEPT_WEBHOOKS.has(w.name))
      .map((w) => {
        const hook: KubeJSON = { ...w, clientConfig: { url: `https://127.0.0.1:${port}${w.clientConfig.service.path}`, caBundle }, timeoutSeconds: 10 };
        if (POD_WEBHOOKS.has(w.name)) {
          hook.namespaceSelector = { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system', 'kueue-system'] }] };
          hook.objectSelector = { matchExpressions: [{ key: QUEUE_LABEL, operator: 'Exists' }] };
        }
        return hook;
      });
    out.push({ apiVersion: config.apiVersion, kind: config.kind, metadata: { name: WEBHOOK_CONFIG_NAMES[config.kind] }, webhooks });
  }
  return out;
}

function managerConfig(healthPort: number, webhookPort: number, certDir: string): string {
  return [
    'apiVersion: config.kueue.x-k8s.io/v1beta2',
    'kind: Configuration',
    'namespace: kueue-system',
    'health:',
    `  healthProbeBindAddress: 127.0.0.1:${healthPort}`,
    'metrics:',
    '  bindAddress: "0"',
    'webhook:',
    '  host: 127.0.0.1',
    `  port: ${webhookPort}`,
    `  certDir: ${certDir}`,
    'leaderElection:',
    '  leaderElect: false',
    'internalCertManagement:',
    '  enable: false',
    'manageJobsWithoutQueueName: false',
    'managedJobsNamespaceSelector:',
    '  matchExpressions:',
    '  - key: kubernetes.io/metadata.name',
    '    operator: NotIn',
    '    values: [kube-system, kueue-system]',
    'integrations:',
    '  frameworks:',
    '  - pod',
    'featureGates:',
    '  VisibilityOnDemand: false',
    '',
  ].join('\n');
}

/** Whether anything answers TLS with a certificate of `ca` on 127.0.0.1:`port`. */
function tlsAnswers(port: number, ca: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const req = https.get(`https://127.0.0.1:${port}/`, { ca, timeout: 3000 }, (res) => {
      res.resume();
      resolve(true);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export interface KueueHandle {
  process: ManagedProcess;
  logFile: string;
  /** Stops the manager after removing its webhook configurations (also done by cluster.stop()). */
  stop(): Promise<void>;
}

/** Starts Kueue's manager against `cluster` and resolves once it admits pods. */
export async function startKueue(cluster: Cluster): Promise<KueueHandle> {
  const availability = kueueAvailability();
  if (availability.reason) throw new Error(availability.reason);
  const dir = kueueDir();
  const work = path.join(cluster.dir, 'kueue');
  const certDir = path.join(work, 'webhook-certs');
  const overlay = path.join(work, 'etc-overlay');
  const metricsCerts = path.join(overlay, 'upper', 'kueue', 'metrics', 'certs');
  for (const d of [certDir, metricsCerts, path.join(overlay, 'work')]) mkdirSync(d, { recursive: true });

  // CRDs first, Established before the manager starts.
  await cluster.kubectl(['apply', '--server-side', '--field-manager=iacnas-e2e', '-f', path.join(dir, 'crd')]);
  const crdCount = readdirSync(path.join(dir, 'crd')).filter((f) => f.endsWith('.yaml')).length;
  await waitFor(
    `${crdCount} Kueue CRDs Established`,
    async () => {
      const list = await cluster.client.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions');
      const kueue = (list.items as KubeJSON[]).filter((c) => c.spec.group === 'kueue.x-k8s.io' || c.spec.group.endsWith('.kueue.x-k8s.io'));
      const established = kueue.filter((c) => (c.status?.conditions ?? []).some((x: KubeJSON) => x.type === 'Established' && x.status === 'True'));
      return established.length >= crdCount;
    },
    60_000,
  );
  await waitFor('Kueue API served', () => cluster.client.get(`${KUEUE_API}/clusterqueues`), 30_000);
  cluster.invalidateKubectlCache();

  const serving = makeLoopbackServingCert(cluster.certs, 'kueue-webhook');
  for (const [from, name] of [
    [serving.cert, 'tls.crt'],
    [serving.key, 'tls.key'],
  ]) {
    cpSync(from, path.join(certDir, name));
    cpSync(from, path.join(metricsCerts, name));
  }
  const [healthPort, webhookPort] = await Promise.all([freePort(), freePort()]);
  const configPath = path.join(work, 'config.yaml');
  writeFileSync(configPath, managerConfig(healthPort, webhookPort, certDir));

  const logFile = cluster.logFile('kueue');
  // /etc is an overlay inside the manager's own mount namespace: the metrics certificate
  // exists for it alone, and nothing is written to the machine's /etc.
  const script = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc || exit 97; shift; exec "$@"';
  const proc = spawnGroup(
    'kueue',
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'kueue-ns',
      overlay,
      path.join(dir, 'bin', 'kueue'),
      `--config=${configPath}`,
      `--kubeconfig=${cluster.kubeconfigPath}`,
      '--zap-log-level=2',
    ],
    { logFile },
  );
  const ca = readFileSync(cluster.certs.caCert, 'utf8');
  const exited = proc.exited.then((s) => {
    throw new Error(
      `kueue exited during start (code ${s.code}, signal ${s.signal}); last log lines:\n${readFileSync(logFile, 'utf8').split('\n').slice(-25).join('\n')}`,
    );
  });
  exited.catch(() => undefined);
  let configs: KubeJSON[] = [];
  const stop = async () => {
    // The webhooks go first: the cluster then keeps admitting pods without Kueue.
    for (const c of configs)
      await cluster.client.delete(`/apis/admissionregistration.k8s.io/v1/${c.kind.toLowerCase()}s/${c.metadata.name}`).catch(() => undefined);
    configs = [];
    await proc.stop(5000);
  };
  cluster.onStop(stop);

  await Promise.race([
    (async () => {
      await waitFor(
        'kueue /readyz',
        async () => (await fetch(`http://127.0.0.1:${healthPort}/readyz`, { signal: AbortSignal.timeout(3000) })).ok,
        120_000,
        500,
      );
      await waitFor('kueue webhook TLS', () => tlsAnswers(webhookPort, ca), 30_000, 300);
    })(),
    exited,
  ]);
  // Registered only once the webhook answers: before that, every create they cover is refused.
  for (const c of loopbackWebhookConfigurations(readFileSync(path.join(dir, 'webhook', 'manifests.yaml'), 'utf8'), webhookPort, ca)) {
    await cluster.client.create(`/apis/admissionregistration.k8s.io/v1/${c.kind.toLowerCase()}s`, c);
    configs.push(c);
  }
  return { process: proc, logFile, stop };
}

export interface GPUQueueOptions {
  namespace: string;
  localQueue: string;
  clusterQueue: string;
  flavor?: string;
  /** nominalQuota of nvidia.com/gpu. */
  gpus: number;
}

/**
 * A ResourceFlavor, a ClusterQueue whose quota limits nvidia.com/gpu (and covers cpu and
 * memory generously: Kueue leaves a pod gated when it requests a resource its ClusterQueue
 * does not cover) and a LocalQueue in `namespace`; resolves when the ClusterQueue is Active.
 */
export async function createGPUQueue(cluster: Cluster, o: GPUQueueOptions): Promise<void> {
  const flavor = o.flavor ?? 'default-flavor';
  const c = cluster.client;
  await c.create(`${KUEUE_API}/resourceflavors`, { apiVersion: 'kueue.x-k8s.io/v1beta2', kind: 'ResourceFlavor', metadata: { name: flavor } });
  await c.create(`${KUEUE_API}/clusterqueues`, {
    apiVersion: 'kueue.x-k8s.io/v1beta2',
    kind: 'ClusterQueue',
    metadata: { name: o.clusterQueue },
    spec: {
      namespaceSelector: {},
      // BestEffortFIFO (Kueue's default) parks a Workload that does not fit until quota is
      // freed; with StrictFIFO the manager retried its blocked head about 40 times a second.
      // For Workloads of one size both admit in creation order.
      queueingStrategy: 'BestEffortFIFO',
      resourceGroups: [
        {
          coveredResources: ['cpu', 'memory', 'nvidia.com/gpu'],
          flavors: [
            {
              name: flavor,
              resources: [
                { name: 'cpu', nominalQuota: '1000' },
                { name: 'memory', nominalQuota: '10Ti' },
                { name: 'nvidia.com/gpu', nominalQuota: o.gpus },
              ],
            },
          ],
        },
      ],
    },
  });
  await c.create(`${KUEUE_API}/namespaces/${o.namespace}/localqueues`, {
    apiVersion: 'kueue.x-k8s.io/v1beta2',
    kind: 'LocalQueue',
    metadata: { name: o.localQueue, namespace: o.namespace },
    spec: { clusterQueue: o.clusterQueue },
  });
  await waitFor(
    `ClusterQueue ${o.clusterQueue} Active`,
    async () => {
      const cq = await c.get(`${KUEUE_API}/clusterqueues/${o.clusterQueue}`);
      return (cq.status?.conditions ?? []).some((x: KubeJSON) => x.type === 'Active' && x.status === 'True');
    },
    60_000,
  );
}
