// A real Kubernetes control plane on loopback for the cluster tests, the way
// controller-runtime's envtest runs one, plus the controllers the operator relies on:
// etcd, kube-apiserver (certificates, RBAC, service-account tokens), kube-controller-manager
// (garbage collector, service accounts, namespaces, persistent-volume binding and
// protection, pod GC) and kube-scheduler (real resource bin-packing, GPUs included).
// There is no storage provisioner: a pool of hostPath PersistentVolumes stands in for one,
// and released volumes are wiped and made Available again.
import { execFile } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findBinaries, type Binaries } from './binaries.ts';
import { adminKubeconfig, makeCerts, type ClusterCerts } from './certs.ts';
import { KubeClient, type ClientCredentials, type KubeJSON, type Watch } from './kube-client.ts';
import { spawnGroup, type ManagedProcess } from './processes.ts';

export interface ClusterOptions {
  /** Working directory for data, certificates, logs and volumes; default a fresh temp dir. */
  dir?: string;
  /** Keep the working directory after stop() (also env IACNAS_KEEP_CLUSTER=1). */
  keep?: boolean;
  /** hostPath PersistentVolumes in the pool (default 6). */
  persistentVolumes?: number;
  /** Capacity of each pool volume (default 10Gi). */
  volumeSize?: string;
  /** Extra kube-apiserver flags. */
  apiserverArgs?: string[];
  /**
   * Ready the control plane for real kubelets (test/node/real-node.ts): Node,RBAC
   * authorization with the NodeRestriction admission plugin, the admin client certificate
   * for the API server's calls to kubelets (logs, exec), and the controllers real pods
   * need besides the usual ones: the kube-root-ca.crt publisher (service-account token
   * volumes mount it) and the Endpoints/EndpointSlice controllers (kube-proxy routes
   * ClusterIP Services by their EndpointSlices), and the Deployment and ReplicaSet controllers
   * (the chart runs the operator as a Deployment). Default false: the test kubelet needs none.
   */
  realNodes?: boolean;
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface KubectlOptions {
  input?: string;
  /** Resolve with a non-zero exit code instead of throwing. */
  allowFail?: boolean;
  timeoutMs?: number;
}

export interface RestartOptions {
  /** How long etcd and kube-apiserver stay down after the kill (ms, default 0). */
  down?: number;
  /**
   * Hold the admin client's requests (`cluster.client`, also the test kubelet's) while the
   * API server is down and send them again, once it is ready, when the restart cut them
   * (default false: they fail as any client's do). A real kubelet retries its status
   * updates; the test kubelet does not (it reports a pod's status once per transition).
   */
  holdAdminRequests?: boolean;
}

export interface RestartResult {
  /** Epoch ms of the SIGKILL of etcd and kube-apiserver. */
  killedAt: number;
  /** Epoch ms when etcd and kube-apiserver were started again. */
  startedAt: number;
  /** Epoch ms when the new kube-apiserver answered /readyz ok. */
  readyAt: number;
}

export interface Cluster {
  readonly dir: string;
  readonly kubeconfigPath: string;
  readonly server: string;
  readonly binaries: Binaries;
  readonly certs: ClusterCerts;
  /** An admin client for the test code. */
  readonly client: KubeClient;
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** Forgets kubectl's cached discovery (after CRDs were added). */
  invalidateKubectlCache(): void;
  /** Path of a component's log file: etcd, kube-apiserver, kube-controller-manager, kube-scheduler. */
  logFile(component: string): string;
  /** Adds hostPath PersistentVolumes to the pool; returns their names. */
  addPersistentVolumes(count: number, size?: string): Promise<string[]>;
  /** Stops every component (also the ones started after, e.g. a test kubelet registered with onStop). */
  stop(): Promise<void>;
  /** Process ids of the control-plane components, by name. */
  componentPids(): Record<string, number>;
  /** Runs `fn` first thing in stop() (latest registered first). */
  onStop(fn: () => Promise<void> | void): void;
  /**
   * A crash of the API server: SIGKILLs etcd and kube-apiserver together, waits `down` ms,
   * starts them again with the same data directory, certificates, ports and flags, and
   * resolves when /readyz is ok. Every other process (controller-manager, scheduler, test
   * kubelet, operators) keeps running and must reconnect by itself.
   */
  restartApiServer(opts?: RestartOptions): Promise<RestartResult>;
}

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/** An error of the connection (refused, reset), not an answer of the API server. */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return (typeof code === 'string' && CONNECTION_ERRORS.has(code)) || (err instanceof Error && /socket hang up|timed out/.test(err.message));
}

/**
 * The admin client. Between holdRequests() and its release a request waits until the API
 * server is back, and a request the outage cut (refused, reset) is sent again afterwards;
 * outside an outage it behaves exactly as KubeClient.
 */
class AdminClient extends KubeClient {
  private outage: Promise<void> | undefined;
  /** Increases at each outage: a request that fails across one is retried. */
  private outages = 0;

  constructor(creds: ClientCredentials) {
    super(creds);
  }

  /** Starts holding requests; call the returned function when the API server is ready. */
  holdRequests(): () => void {
    let release!: () => void;
    this.outage = new Promise<void>((r) => (release = r));
    this.outages++;
    return () => {
      this.outage = undefined;
      release();
    };
  }

  /** A request that is never held (readiness probes during an outage). */
  probe(path: string): Promise<KubeJSON> {
    return super.request('GET', path);
  }

  override async request(method: string, path: string, body?: unknown, contentType?: string): Promise<KubeJSON> {
    for (;;) {
      if (this.outage) await this.outage;
      const seen = this.outages;
      try {
        return await super.request(method, path, body, contentType);
      } catch (err) {
        if (!isConnectionError(err) || (seen === this.outages && !this.outage)) throw err;
      }
    }
  }
}

export const POOL_LABEL = 'iacnas.test/volume-pool';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` until it returns a truthy value; fails with `what` and the last error. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last instanceof Error ? last.message : String(last)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

function httpsStatus(url: string, agentOpts: https.AgentOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ...agentOpts, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return res.ok;
}

function exitGuard(p: ManagedProcess, logFile: string): Promise<never> {
  return p.exited.then((s) => {
    const tail = readFileSync(logFile, 'utf8').split('\n').slice(-25).join('\n');
    throw new Error(`${p.name} exited during start (code ${s.code}, signal ${s.signal}); last log lines:\n${tail}`);
  });
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const lookup = findBinaries();
  if (!lookup.ok) throw new Error(lookup.reason);
  const bins = lookup.binaries;
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'iacnas-cluster-'));
  const keep = opts.keep ?? process.env.IACNAS_KEEP_CLUSTER === '1';
  for (const sub of ['pki', 'etcd', 'logs', 'volumes']) mkdirSync(path.join(dir, sub), { recursive: true });
  const logFile = (c: string) => path.join(dir, 'logs', `${c}.log`);

  const processes: ManagedProcess[] = [];
  const stopHooks: Array<() => Promise<void> | void> = [];
  const watches: Watch[] = [];
  let client: AdminClient | undefined;
  let stopped = false;
  let restarting: Promise<RestartResult> | undefined;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    for (const hook of stopHooks.reverse()) {
      try {
        await hook();
      } catch (err) {
        console.error(`cluster stop hook failed: ${String(err)}`);
      }
    }
    for (const w of watches) w.stop();
    client?.close();
    // Controllers first, etcd last, so nothing logs errors about a vanished store.
    for (const p of [...processes].reverse()) await p.stop(5000);
    if (!keep) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const certs = makeCerts(path.join(dir, 'pki'));
    const [etcdClient, etcdPeer, apiPort, kcmPort, schedPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);

    const etcdArgs = [
      '--name=default',
      `--data-dir=${path.join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdClient}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdClient}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeer}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ];
    // Stopped in reverse order: etcd stays first in `processes`, the API server second.
    const startEtcd = async () => {
      const p = spawnGroup('etcd', bins.etcd, etcdArgs, { logFile: logFile('etcd') });
      processes.unshift(p);
      await Promise.race([waitFor('etcd /health', () => httpOk(`http://127.0.0.1:${etcdClient}/health`), 30_000), exitGuard(p, logFile('etcd'))]);
      return p;
    };
    let etcd = await startEtcd();

    const server = `https://127.0.0.1:${apiPort}`;
    const apiserverArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdClient}`,
      `--bind-address=127.0.0.1`,
      `--advertise-address=127.0.0.1`,
      `--secure-port=${apiPort}`,
      `--cert-dir=${path.join(dir, 'pki')}`,
      `--tls-cert-file=${certs.serverCert}`,
      `--tls-private-key-file=${certs.serverKey}`,
      `--client-ca-file=${certs.caCert}`,
      `--service-account-key-file=${certs.serviceAccountPub}`,
      `--service-account-signing-key-file=${certs.serviceAccountKey}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--service-cluster-ip-range=10.0.0.0/24',
      ...(opts.realNodes
        ? [
            '--authorization-mode=Node,RBAC',
            '--enable-admission-plugins=NodeRestriction',
            `--kubelet-client-certificate=${certs.adminCert}`,
            `--kubelet-client-key=${certs.adminKey}`,
            // The Node's InternalIP (its bridge address), never a DNS lookup of its name.
            '--kubelet-preferred-address-types=InternalIP',
          ]
        : ['--authorization-mode=RBAC']),
      '--allow-privileged=true',
      // The endpoint reconciler would try to publish 127.0.0.1 as the `kubernetes`
      // Service's endpoint, which validation refuses (loopback); nothing here needs it.
      '--endpoint-reconciler-type=none',
      // No aggregated API servers here; the front-proxy CA only keeps every client of the
      // extension-apiserver-authentication ConfigMap from logging that it is missing.
      `--requestheader-client-ca-file=${certs.caCert}`,
      '--requestheader-allowed-names=front-proxy-client',
      '--requestheader-username-headers=X-Remote-User',
      '--requestheader-group-headers=X-Remote-Group',
      '--requestheader-extra-headers-prefix=X-Remote-Extra-',
      ...(opts.apiserverArgs ?? []),
    ];
    const spawnApiserver = () => {
      const p = spawnGroup('kube-apiserver', bins['kube-apiserver'], apiserverArgs, { logFile: logFile('kube-apiserver') });
      processes.splice(1, 0, p);
      return p;
    };
    let apiserver = spawnApiserver();

    const kubeconfigPath = path.join(dir, 'kubeconfig');
    writeFileSync(kubeconfigPath, adminKubeconfig(server, certs), { mode: 0o600 });
    const creds = { server, ca: readFileSync(certs.caCert, 'utf8'), cert: readFileSync(certs.adminCert, 'utf8'), key: readFileSync(certs.adminKey, 'utf8') };
    client = new AdminClient(creds);
    const c = client;
    const apiserverReady = (p: ManagedProcess) =>
      Promise.race([waitFor('kube-apiserver /readyz', async () => (await c.probe('/readyz')) === 'ok', 120_000, 500), exitGuard(p, logFile('kube-apiserver'))]);
    await apiserverReady(apiserver);

    const common = [
      `--kubeconfig=${kubeconfigPath}`,
      `--authentication-kubeconfig=${kubeconfigPath}`,
      `--authorization-kubeconfig=${kubeconfigPath}`,
      '--bind-address=127.0.0.1',
      '--leader-elect=false',
    ];
    const kcm = spawnGroup(
      'kube-controller-manager',
      bins['kube-controller-manager'],
      [
        ...common,
        `--secure-port=${kcmPort}`,
        `--cert-dir=${path.join(dir, 'pki', 'kcm')}`,
        `--controllers=garbage-collector-controller,serviceaccount-controller,namespace-controller,persistentvolume-binder-controller,persistentvolumeclaim-protection-controller,persistentvolume-protection-controller,pod-garbage-collector-controller${
          opts.realNodes
            ? ',root-ca-certificate-publisher-controller,endpoints-controller,endpointslice-controller,deployment-controller,replicaset-controller'
            : ''
        }`,
        `--root-ca-file=${certs.caCert}`,
        // Binding happens on claim events; the periodic resync is only a safety net.
        '--pvclaimbinder-sync-period=2s',
      ],
      { logFile: logFile('kube-controller-manager') },
    );
    processes.push(kcm);
    const sched = spawnGroup(
      'kube-scheduler',
      bins['kube-scheduler'],
      [...common, `--secure-port=${schedPort}`, `--cert-dir=${path.join(dir, 'pki', 'scheduler')}`],
      {
        logFile: logFile('kube-scheduler'),
      },
    );
    processes.push(sched);
    const insecure = { rejectUnauthorized: false };
    await Promise.race([
      Promise.all([
        waitFor('kube-controller-manager /healthz', async () => (await httpsStatus(`https://127.0.0.1:${kcmPort}/healthz`, insecure)) === 200, 60_000, 500),
        waitFor('kube-scheduler /healthz', async () => (await httpsStatus(`https://127.0.0.1:${schedPort}/healthz`, insecure)) === 200, 60_000, 500),
        // The service-account controller is running once the default namespace has its account.
        waitFor('ServiceAccount default/default', () => c.find('/api/v1/namespaces/default/serviceaccounts/default'), 60_000, 500),
      ]),
      exitGuard(kcm, logFile('kube-controller-manager')),
      exitGuard(sched, logFile('kube-scheduler')),
    ]);

    // kubectl's discovery cache lives with the cluster: it must not outlive it (ports are
    // reused) nor be shared with the user's ~/.kube.
    const kubectlCache = path.join(dir, 'kubectl-cache');
    const kubectl = (args: string[], kopts: KubectlOptions = {}) =>
      new Promise<KubectlResult>((resolve, reject) => {
        const child = execFile(
          bins.kubectl,
          [`--kubeconfig=${kubeconfigPath}`, `--cache-dir=${kubectlCache}`, ...args],
          { timeout: kopts.timeoutMs ?? 60_000, maxBuffer: 32 << 20 },
          (err, stdout, stderr) => {
            const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
            if (code !== 0 && !kopts.allowFail) reject(new Error(`kubectl ${args.join(' ')} exited ${code}: ${stderr || stdout}`));
            else resolve({ stdout, stderr, code });
          },
        );
        if (kopts.input !== undefined) child.stdin?.end(kopts.input);
        else child.stdin?.end();
      });

    let pvCount = 0;
    const addPersistentVolumes = async (count: number, size = opts.volumeSize ?? '10Gi') => {
      const names: string[] = [];
      for (let i = 0; i < count; i++) {
        const name = `iacnas-test-pv-${pvCount++}`;
        const hostPath = path.join(dir, 'volumes', name);
        mkdirSync(hostPath, { recursive: true });
        await c.create('/api/v1/persistentvolumes', {
          apiVersion: 'v1',
          kind: 'PersistentVolume',
          metadata: { name, labels: { [POOL_LABEL]: 'true' } },
          spec: {
            capacity: { storage: size },
            accessModes: ['ReadWriteOnce', 'ReadWriteMany'],
            persistentVolumeReclaimPolicy: 'Retain',
            storageClassName: '',
            hostPath: { path: hostPath, type: 'DirectoryOrCreate' },
          },
        });
        names.push(name);
      }
      return names;
    };
    await addPersistentVolumes(opts.persistentVolumes ?? 6);

    // The pool's reclaim policy: a Released volume is wiped and made Available again, as a
    // provisioner would hand out a fresh one.
    watches.push(
      c.watch(`/api/v1/persistentvolumes?labelSelector=${encodeURIComponent(`${POOL_LABEL}=true`)}`, (e) => {
        const pv = e.object;
        if (e.type === 'DELETED' || pv.status?.phase !== 'Released') return;
        const hostPath: string = pv.spec.hostPath.path;
        rmSync(hostPath, { recursive: true, force: true });
        mkdirSync(hostPath, { recursive: true });
        c.mergePatch(`/api/v1/persistentvolumes/${pv.metadata.name}`, { spec: { claimRef: null } }).catch(() => undefined);
      }),
    );

    const restart = async (ropts: RestartOptions): Promise<RestartResult> => {
      if (stopped) throw new Error('restartApiServer: the cluster is stopped');
      const release = ropts.holdAdminRequests ? c.holdRequests() : undefined;
      try {
        const killedAt = Date.now();
        // Both at once, as a crash of the control-plane node would; no graceful shutdown.
        apiserver.signal('SIGKILL');
        etcd.signal('SIGKILL');
        await Promise.all([apiserver.exited, etcd.exited]);
        for (const p of [apiserver, etcd]) processes.splice(processes.indexOf(p), 1);
        if (ropts.down) await sleep(ropts.down);
        if (stopped) throw new Error('restartApiServer: the cluster was stopped during the restart');
        const startedAt = Date.now();
        for (const comp of ['etcd', 'kube-apiserver'])
          appendFileSync(
            logFile(comp),
            `--- restartApiServer: killed at ${new Date(killedAt).toISOString()}, started again at ${new Date(startedAt).toISOString()}\n`,
          );
        // etcd first: the API server's storage must answer before its post-start hooks run.
        etcd = await startEtcd();
        apiserver = spawnApiserver();
        await apiserverReady(apiserver);
        return { killedAt, startedAt, readyAt: Date.now() };
      } finally {
        release?.();
      }
    };

    return {
      dir,
      kubeconfigPath,
      server,
      binaries: bins,
      certs,
      client: c,
      kubectl,
      logFile,
      invalidateKubectlCache: () => rmSync(kubectlCache, { recursive: true, force: true }),
      addPersistentVolumes,
      stop,
      componentPids: () => Object.fromEntries(processes.map((p) => [p.name, p.pid])),
      onStop: (fn) => stopHooks.push(fn),
      restartApiServer: async (ropts = {}) => {
        if (restarting) throw new Error('restartApiServer: a restart is already in progress');
        restarting = restart(ropts);
        try {
          return await restarting;
        } finally {
          restarting = undefined;
        }
      },
    };
  } catch (err) {
    // The working directory stays: its logs are the only way to tell why the start failed.
    await stopProcessesOnly();
    throw new Error(`${(err as Error).message}\n(cluster logs: ${path.join(dir, 'logs')})`);
  }

  async function stopProcessesOnly() {
    stopped = true;
    for (const w of watches) w.stop();
    client?.close();
    for (const p of [...processes].reverse()) await p.stop(3000);
  }
}
