// TEST KUBELET — test code, not a kubelet. It stands in for the node agent in the cluster
// tests, where there is no container runtime:
//   - registers Nodes with capacity (cpu, memory, pods, nvidia.com/gpu), keeps their Leases
//     and the Ready condition fresh;
//   - for each pod the scheduler binds to one of its nodes, runs the container's command
//     and args as a local process with the pod's environment (Secrets, ConfigMaps and the
//     downward API resolved) and with volume paths mapped to local directories (a claim ->
//     its bound hostPath PersistentVolume, emptyDir/secret/configMap/projected -> a per-pod
//     directory, the terminationMessagePath -> a local file);
//   - reports pod status as a kubelet does: Pending, Running, Succeeded/Failed, container
//     states with startedAt/finishedAt/exitCode and the termination message;
//   - finishes graceful deletions (kills the process, then removes the pod);
//   - on request evicts a pod (DisruptionTarget condition, phase Failed) or makes a node
//     vanish (its processes die, the Node object is deleted, nothing reports any more).
// The image is not run: a command `iacnas ...` (or no command: the image's entrypoint is
// `iacnas`) runs this repository's bin/iacnas.ts with the Node.js running the tests.
// Only restartPolicy Never is modelled (the operator's pods use it).
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { K8S_VERSION } from './binaries.ts';
import type { Cluster } from './control-plane.ts';
import { KubeApiError, type KubeClient, type KubeJSON, type Watch } from './kube-client.ts';
import { spawnGroup, type ExitStatus, type ManagedProcess } from './processes.ts';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const IACNAS = path.join(REPO_ROOT, 'bin', 'iacnas.ts');

export interface TestNodeSpec {
  name: string;
  cpu?: string;
  memory?: string;
  gpus?: number;
  pods?: number;
  labels?: Record<string, string>;
  taints?: Array<{ key: string; value?: string; effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' }>;
}

export interface TestKubeletOptions {
  nodes: TestNodeSpec[];
  /** Environment variables set in every container after the pod's own (e.g. IACNAS_BACKEND=cpu). */
  envOverrides?: Record<string, string>;
  /** The image's entrypoint, used when a container has no command. */
  imageEntrypoint?: string[];
  /** Lease renewal interval (default 5 s; the lease lasts 40 s as a kubelet's does). */
  leaseRenewMs?: number;
  /**
   * Runs a simulated trainer phase (`iacnas trainer ...` with IACNAS_SIMULATE_SECONDS in
   * its environment) inside this process instead of as a process of its own: the same
   * trainerMain with the container's arguments and environment, so the API objects,
   * progress POSTs and termination messages are the same, without a Node.js start per
   * pod. For benchmarks of thousands of pods on one machine; signals end the container
   * at once (the simulation's late output is ignored).
   */
  inProcessSimulation?: boolean;
}

export interface EvictOptions {
  /** status.reason of the failed pod (kubelet: Evicted). */
  reason?: string;
  message?: string;
  /** reason of the DisruptionTarget condition (kubelet: TerminationByKubelet; scheduler: PreemptionByScheduler). */
  conditionReason?: string;
  /** Also delete the pod afterwards, as the scheduler does when it preempts. */
  deletePod?: boolean;
}

interface PodRun {
  uid: string;
  namespace: string;
  name: string;
  nodeName: string;
  dir: string;
  pod: KubeJSON;
  proc?: ManagedProcess;
  containerName?: string;
  startedAt?: string;
  /** Serialises the status writes of one pod. */
  chain: Promise<unknown>;
  phase: 'Starting' | 'Running' | 'Done';
  evicting?: Required<Omit<EvictOptions, 'deletePod'>> & { deletePod: boolean };
  terminating?: boolean;
  forgotten?: boolean;
}

const rfc3339 = (d = new Date()) => d.toISOString().replace(/\.\d+Z$/, 'Z');
const microTime = (d = new Date()) => d.toISOString().replace(/Z$/, '000Z');
const b64decode = (s: string) => Buffer.from(s, 'base64').toString('utf8');
const TERMINATION_MESSAGE_LIMIT = 4096;

export class TestKubelet {
  readonly cluster: Cluster;
  private readonly client: KubeClient;
  private readonly opts: TestKubeletOptions;
  private readonly nodes = new Map<string, TestNodeSpec>();
  private readonly runs = new Map<string, PodRun>();
  private readonly timers: NodeJS.Timeout[] = [];
  private podWatch?: Watch;
  private stopped = false;
  /** Errors met while running pods; a test can assert there were none. */
  readonly errors: string[] = [];

  private constructor(cluster: Cluster, opts: TestKubeletOptions) {
    this.cluster = cluster;
    this.client = cluster.client;
    this.opts = opts;
  }

  static async start(cluster: Cluster, opts: TestKubeletOptions): Promise<TestKubelet> {
    const kubelet = new TestKubelet(cluster, opts);
    cluster.onStop(() => kubelet.stop());
    for (const n of opts.nodes) await kubelet.addNode(n);
    kubelet.podWatch = kubelet.client.watch(
      '/api/v1/pods',
      (e) => kubelet.onPodEvent(e.type, e.object),
      (err) => kubelet.note(`pod watch: ${err.message}`),
    );
    const renew = setInterval(() => void kubelet.heartbeat(), opts.leaseRenewMs ?? 5000);
    kubelet.timers.push(renew);
    return kubelet;
  }

  private note(msg: string): void {
    if (this.stopped) return;
    this.errors.push(msg);
    appendFileSync(this.cluster.logFile('test-kubelet'), `${new Date().toISOString()} ${msg}\n`);
  }

  // ---------------------------------------------------------------- nodes

  async addNode(spec: TestNodeSpec): Promise<void> {
    const resources: Record<string, string> = {
      cpu: spec.cpu ?? '8',
      memory: spec.memory ?? '32Gi',
      pods: String(spec.pods ?? 110),
      'ephemeral-storage': '100Gi',
    };
    if (spec.gpus) resources['nvidia.com/gpu'] = String(spec.gpus);
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: spec.name,
        labels: { 'kubernetes.io/hostname': spec.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64', ...spec.labels },
      },
      spec: { taints: spec.taints ?? [] },
    };
    await this.client.delete(`/api/v1/nodes/${spec.name}`, { gracePeriodSeconds: 0 });
    await this.client.create('/api/v1/nodes', node);
    this.nodes.set(spec.name, spec);
    await this.client.mergePatch(`/api/v1/nodes/${spec.name}/status`, {
      status: {
        capacity: resources,
        allocatable: resources,
        conditions: this.nodeConditions(),
        addresses: [
          { type: 'InternalIP', address: '127.0.0.1' },
          { type: 'Hostname', address: spec.name },
        ],
        nodeInfo: {
          kubeletVersion: K8S_VERSION,
          kubeProxyVersion: '',
          operatingSystem: 'linux',
          architecture: 'amd64',
          containerRuntimeVersion: 'iacnas-test-kubelet://1',
          osImage: 'test kubelet (local processes)',
          kernelVersion: '',
          machineID: spec.name,
          systemUUID: spec.name,
          bootID: spec.name,
        },
      },
    });
    // The TaintNodesByCondition admission plugin taints every new node not-ready; the node
    // lifecycle controller would lift it once the node reports Ready. That controller is
    // not run here (it would also evict pods on a slow heartbeat), so the node lifts it.
    await this.client.mergePatch(`/api/v1/nodes/${spec.name}`, { spec: { taints: spec.taints ?? null } });
    await this.renewLease(spec.name);
  }

  private nodeConditions() {
    const now = rfc3339();
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: now,
      lastTransitionTime: now,
    });
    return [
      cond('Ready', 'True', 'KubeletReady', 'test kubelet is posting ready status'),
      cond('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'test kubelet'),
      cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'test kubelet'),
      cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'test kubelet'),
    ];
  }

  private async renewLease(nodeName: string): Promise<void> {
    const leasePath = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`;
    const spec = { holderIdentity: nodeName, leaseDurationSeconds: 40, renewTime: microTime() };
    try {
      await this.client.mergePatch(leasePath, { spec });
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.status !== 404) throw err;
      const node = await this.client.get(`/api/v1/nodes/${nodeName}`);
      await this.client.create('/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: nodeName, ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: nodeName, uid: node.metadata.uid }] },
        spec,
      });
    }
  }

  private heartbeatCount = 0;
  private async heartbeat(): Promise<void> {
    if (this.stopped) return;
    this.heartbeatCount++;
    for (const name of this.nodes.keys()) {
      try {
        await this.renewLease(name);
        // A kubelet posts node status every few lease renewals.
        if (this.heartbeatCount % 4 === 0) {
          await this.client.strategicPatch(`/api/v1/nodes/${name}/status`, { status: { conditions: this.nodeConditions() } });
        }
      } catch (err) {
        this.note(`heartbeat ${name}: ${(err as Error).message}`);
      }
    }
  }

  /**
   * The node disappears: its pods' processes die, nothing reports for them any more and
   * the Node object is deleted (as when a cloud VM is reclaimed). The pod garbage collector
   * then fails and removes the orphaned pods.
   */
  async vanishNode(nodeName: string): Promise<void> {
    this.nodes.delete(nodeName);
    for (const run of this.runs.values()) {
      if (run.nodeName !== nodeName) continue;
      run.forgotten = true;
      run.proc?.signal('SIGKILL');
    }
    await this.client.delete(`/api/v1/nodes/${nodeName}`, { gracePeriodSeconds: 0 });
    await this.client.delete(`/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${nodeName}`);
  }

  // ---------------------------------------------------------------- pods

  /** The local directory of a pod's run (logs, volumes, termination message), if it ran here. */
  podDir(namespace: string, name: string): string | undefined {
    for (const r of this.runs.values()) if (r.namespace === namespace && r.name === name) return r.dir;
    return undefined;
  }

  /** Combined stdout and stderr of a pod's container, as far as written. */
  logs(namespace: string, name: string): string {
    const dir = this.podDir(namespace, name);
    if (!dir) return '';
    const f = path.join(dir, 'container.log');
    return existsSync(f) ? readFileSync(f, 'utf8') : '';
  }

  /** Pid of a pod's running container process (its process group). */
  pid(namespace: string, name: string): number | undefined {
    for (const r of this.runs.values()) if (r.namespace === namespace && r.name === name && r.proc && !r.proc.done()) return r.proc.pid;
    return undefined;
  }

  /**
   * Evicts a pod as a kubelet under node pressure or a preemption does: marks it with the
   * DisruptionTarget condition, kills its process and fails it with `reason`.
   */
  async evict(namespace: string, name: string, opts: EvictOptions = {}): Promise<void> {
    const run = [...this.runs.values()].find((r) => r.namespace === namespace && r.name === name);
    if (!run) throw new Error(`test kubelet: pod ${namespace}/${name} is not running on its nodes`);
    run.evicting = {
      reason: opts.reason ?? 'Evicted',
      message: opts.message ?? 'The node was low on resource: nvidia.com/gpu. (test kubelet eviction)',
      conditionReason: opts.conditionReason ?? 'TerminationByKubelet',
      deletePod: opts.deletePod ?? false,
    };
    const now = rfc3339();
    await this.client.strategicPatch(`/api/v1/namespaces/${namespace}/pods/${name}/status`, {
      status: {
        conditions: [
          { type: 'DisruptionTarget', status: 'True', reason: run.evicting.conditionReason, message: run.evicting.message, lastTransitionTime: now },
        ],
      },
    });
    if (run.proc && !run.proc.done()) {
      run.proc.signal('SIGKILL');
      await run.proc.exited;
      await run.chain;
    } else {
      await this.enqueue(run, () => this.finish(run, { code: 137, signal: 'SIGKILL' }));
    }
  }

  private onPodEvent(type: string, pod: KubeJSON): void {
    if (this.stopped) return;
    const uid: string = pod.metadata.uid;
    const nodeName: string | undefined = pod.spec?.nodeName;
    const existing = this.runs.get(uid);
    if (type === 'DELETED') {
      if (existing && !existing.forgotten) {
        existing.forgotten = true;
        existing.proc?.signal('SIGKILL');
      }
      return;
    }
    if (!nodeName || !this.nodes.has(nodeName)) return;
    if (existing) {
      existing.pod = pod;
      if (pod.metadata.deletionTimestamp && !existing.terminating) {
        existing.terminating = true;
        void this.terminate(existing);
      }
      return;
    }
    const phase = pod.status?.phase;
    const run: PodRun = {
      uid,
      namespace: pod.metadata.namespace,
      name: pod.metadata.name,
      nodeName,
      dir: path.join(this.cluster.dir, 'pods', `${pod.metadata.namespace}_${pod.metadata.name}_${uid.slice(0, 8)}`),
      pod,
      chain: Promise.resolve(),
      phase: phase === 'Succeeded' || phase === 'Failed' ? 'Done' : 'Starting',
    };
    this.runs.set(uid, run);
    if (pod.metadata.deletionTimestamp) {
      run.terminating = true;
      void this.terminate(run);
      return;
    }
    if (run.phase === 'Starting') void this.enqueue(run, () => this.startPod(run));
  }

  private enqueue(run: PodRun, fn: () => Promise<void>): Promise<void> {
    const next = run.chain.then(fn).catch((err: unknown) => this.note(`pod ${run.namespace}/${run.name}: ${err instanceof Error ? err.message : String(err)}`));
    run.chain = next;
    return next;
  }

  private statusPath(run: PodRun): string {
    return `/api/v1/namespaces/${run.namespace}/pods/${run.name}/status`;
  }

  private async patchStatus(run: PodRun, status: KubeJSON): Promise<void> {
    if (run.forgotten || this.stopped) return;
    try {
      await this.client.strategicPatch(this.statusPath(run), { metadata: { uid: run.uid }, status });
    } catch (err) {
      // The pod may be gone already (deleted, garbage-collected): nothing to report to.
      if (err instanceof KubeApiError && (err.status === 404 || err.status === 409)) return;
      throw err;
    }
  }

  private async startPod(run: PodRun): Promise<void> {
    const pod = run.pod;
    const containers: KubeJSON[] = pod.spec.containers ?? [];
    // (qosClass is set by the API server at creation and may not change.)
    const base = { hostIP: '127.0.0.1', hostIPs: [{ ip: '127.0.0.1' }], podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }], startTime: rfc3339() };
    if (containers.length !== 1 || (pod.spec.initContainers ?? []).length > 0) {
      await this.patchStatus(run, {
        ...base,
        phase: 'Failed',
        reason: 'UnsupportedByTestKubelet',
        message: `the test kubelet runs pods with exactly one container and no init containers; this pod has ${containers.length} and ${(pod.spec.initContainers ?? []).length}`,
      });
      run.phase = 'Done';
      return;
    }
    const c = containers[0];
    run.containerName = c.name;
    mkdirSync(run.dir, { recursive: true });
    const waiting = (reason: string, message?: string) => ({
      ...base,
      phase: 'Pending',
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: rfc3339() },
        { type: 'Ready', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: rfc3339() },
        { type: 'ContainersReady', status: 'False', reason: 'ContainersNotReady', lastTransitionTime: rfc3339() },
      ],
      containerStatuses: [
        {
          name: c.name,
          image: c.image ?? '',
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: { waiting: { reason, ...(message ? { message } : {}) } },
        },
      ],
    });
    await this.patchStatus(run, waiting('ContainerCreating'));

    // Volumes and environment may refer to objects that appear a little later (a claim
    // being bound, a Secret being created): retry as a kubelet does, showing why.
    let mounts: Mounts | undefined;
    let env: Record<string, string> | undefined;
    for (let attempt = 0; !run.forgotten && !run.terminating && !run.evicting && !this.stopped; attempt++) {
      try {
        mounts = await this.prepareVolumes(run, c);
        env = await this.containerEnv(run, c, mounts);
        break;
      } catch (err) {
        const msg = (err as Error).message;
        if (attempt === 0 || attempt % 10 === 0) await this.patchStatus(run, waiting('CreateContainerConfigError', msg));
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (!mounts || !env || run.forgotten || run.terminating || run.evicting || this.stopped) return;

    const argv = this.commandLine(c, env, mounts);
    const cwd = c.workingDir ? mounts.map(c.workingDir) : path.join(run.dir, 'cwd');
    mkdirSync(cwd, { recursive: true });
    run.startedAt = rfc3339();
    const logFile = path.join(run.dir, 'container.log');
    const simulated =
      this.opts.inProcessSimulation && env.IACNAS_SIMULATE_SECONDS && argv[0] === process.execPath && argv[1] === IACNAS && argv[2] === 'trainer';
    run.proc = simulated
      ? inProcessTrainer(`pod ${run.namespace}/${run.name}`, argv.slice(3), env, logFile)
      : spawnGroup(`pod ${run.namespace}/${run.name}`, argv[0], argv.slice(1), { env, cwd, logFile });
    run.phase = 'Running';
    const containerID = `iacnas-test://${run.proc.pid}`;
    const t = run.startedAt;
    await this.patchStatus(run, {
      ...base,
      phase: 'Running',
      conditions: [
        { type: 'Initialized', status: 'True', lastTransitionTime: t },
        { type: 'Ready', status: 'True', lastTransitionTime: t },
        { type: 'ContainersReady', status: 'True', lastTransitionTime: t },
      ],
      containerStatuses: [
        { name: c.name, image: c.image ?? '', imageID: '', containerID, ready: true, started: true, restartCount: 0, state: { running: { startedAt: t } } },
      ],
    });
    const proc = run.proc;
    void proc.exited.then((status) => this.enqueue(run, () => this.finish(run, status)));
  }

  private async finish(run: PodRun, status: ExitStatus): Promise<void> {
    if (run.phase === 'Done') return;
    run.phase = 'Done';
    const c = (run.pod.spec.containers ?? [])[0] ?? {};
    const exitCode = status.code ?? (status.signal === 'SIGKILL' ? 137 : status.signal === 'SIGTERM' ? 143 : 128);
    const finishedAt = rfc3339();
    let message = '';
    const msgFile = path.join(run.dir, 'termination-log');
    if (existsSync(msgFile)) message = readFileSync(msgFile, 'utf8').slice(0, TERMINATION_MESSAGE_LIMIT);
    if (!message && exitCode !== 0 && c.terminationMessagePolicy === 'FallbackToLogsOnError') {
      message = this.logs(run.namespace, run.name).split('\n').slice(-80).join('\n').slice(-2048);
    }
    const succeeded = exitCode === 0 && !run.evicting;
    const terminated = {
      exitCode,
      ...(status.signal ? { signal: exitCode - 128 } : {}),
      reason: exitCode === 0 ? 'Completed' : 'Error',
      startedAt: run.startedAt ?? finishedAt,
      finishedAt,
      containerID: run.proc ? `iacnas-test://${run.proc.pid}` : undefined,
      ...(message ? { message } : {}),
    };
    const t = finishedAt;
    await this.patchStatus(run, {
      phase: succeeded ? 'Succeeded' : 'Failed',
      ...(run.evicting ? { reason: run.evicting.reason, message: run.evicting.message } : {}),
      conditions: [
        { type: 'Ready', status: 'False', reason: succeeded ? 'PodCompleted' : 'PodFailed', lastTransitionTime: t },
        { type: 'ContainersReady', status: 'False', reason: succeeded ? 'PodCompleted' : 'PodFailed', lastTransitionTime: t },
      ],
      containerStatuses: [
        {
          name: c.name,
          image: c.image ?? '',
          imageID: '',
          containerID: terminated.containerID,
          ready: false,
          started: false,
          restartCount: 0,
          state: { terminated },
        },
      ],
    });
    if (run.evicting?.deletePod)
      await this.client.delete(`/api/v1/namespaces/${run.namespace}/pods/${run.name}`, { gracePeriodSeconds: 0, preconditions: { uid: run.uid } });
  }

  /** A graceful deletion: stop the process within the grace period, then remove the pod. */
  private async terminate(run: PodRun): Promise<void> {
    const grace = Math.min(run.pod.metadata.deletionGracePeriodSeconds ?? 30, 10) * 1000;
    if (run.proc && !run.proc.done()) {
      await run.proc.stop(grace);
    }
    await run.chain;
    if (run.phase !== 'Done') await this.enqueue(run, () => this.finish(run, { code: 137, signal: 'SIGKILL' }));
    if (run.forgotten || this.stopped) return;
    try {
      await this.client.delete(`/api/v1/namespaces/${run.namespace}/pods/${run.name}`, { gracePeriodSeconds: 0, preconditions: { uid: run.uid } });
    } catch (err) {
      // Called without waiting (a pod deleted, a node gone): a failure is noted, never an
      // unhandled rejection (the API server may be stopping at the end of a suite).
      if (!(err instanceof KubeApiError && err.status === 409)) this.note(`delete pod ${run.namespace}/${run.name}: ${(err as Error).message}`);
    }
  }

  // ---------------------------------------------------------------- container set-up

  private async prepareVolumes(run: PodRun, c: KubeJSON): Promise<Mounts> {
    const local = new Map<string, string>();
    const ns = run.namespace;
    for (const v of run.pod.spec.volumes ?? []) {
      const dir = path.join(run.dir, 'volumes', v.name);
      if (v.persistentVolumeClaim) {
        const pvc = await this.client.get(`/api/v1/namespaces/${ns}/persistentvolumeclaims/${v.persistentVolumeClaim.claimName}`);
        if (pvc.status?.phase !== 'Bound' || !pvc.spec.volumeName) throw new Error(`persistentvolumeclaim "${v.persistentVolumeClaim.claimName}" is not bound`);
        const pv = await this.client.get(`/api/v1/persistentvolumes/${pvc.spec.volumeName}`);
        const p: string | undefined = pv.spec.hostPath?.path ?? pv.spec.local?.path;
        if (!p) throw new Error(`persistentvolume ${pvc.spec.volumeName} is neither hostPath nor local`);
        mkdirSync(p, { recursive: true });
        local.set(v.name, p);
      } else if (v.hostPath) {
        local.set(v.name, v.hostPath.path);
      } else if (v.emptyDir) {
        mkdirSync(dir, { recursive: true });
        local.set(v.name, dir);
      } else if (v.secret || v.configMap || v.downwardAPI || v.projected) {
        mkdirSync(dir, { recursive: true });
        const sources: KubeJSON[] = v.projected ? (v.projected.sources ?? []) : [v];
        for (const s of sources) await this.writeProjection(run, dir, s);
        local.set(v.name, dir);
      } else {
        throw new Error(`volume ${v.name}: kind not supported by the test kubelet`);
      }
    }
    const table: Array<[string, string]> = [];
    for (const m of c.volumeMounts ?? []) {
      const base = local.get(m.name);
      if (!base) throw new Error(`volumeMount ${m.name}: no such volume`);
      const p = m.subPath ? path.join(base, m.subPath) : base;
      if (m.subPath) mkdirSync(p, { recursive: true });
      table.push([m.mountPath.replace(/\/$/, ''), p]);
    }
    const termPath: string = c.terminationMessagePath ?? '/dev/termination-log';
    const termLocal = path.join(run.dir, 'termination-log');
    writeFileSync(termLocal, '');
    table.push([termPath, termLocal]);
    return new Mounts(table, termLocal);
  }

  private async writeProjection(run: PodRun, dir: string, s: KubeJSON): Promise<void> {
    const ns = run.namespace;
    const writeItems = (data: Record<string, string>, items: Array<{ key: string; path: string }> | undefined) => {
      const entries = items ? items.map((i) => [i.path, data[i.key] ?? ''] as const) : Object.entries(data);
      for (const [p, content] of entries) {
        mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
        writeFileSync(path.join(dir, p), content);
      }
    };
    if (s.secret) {
      const name = s.secret.secretName ?? s.secret.name;
      const sec = await this.client.find(`/api/v1/namespaces/${ns}/secrets/${name}`);
      if (!sec) {
        if (s.secret.optional) return;
        throw new Error(`secret "${name}" not found`);
      }
      writeItems(Object.fromEntries(Object.entries(sec.data ?? {}).map(([k, v]) => [k, b64decode(String(v))])), s.secret.items);
    } else if (s.configMap) {
      const cm = await this.client.find(`/api/v1/namespaces/${ns}/configmaps/${s.configMap.name}`);
      if (!cm) {
        // The root CA bundle every pod gets; no controller publishes it here.
        if (s.configMap.name === 'kube-root-ca.crt') writeItems({ 'ca.crt': readFileSync(this.cluster.certs.caCert, 'utf8') }, s.configMap.items);
        else if (!s.configMap.optional) throw new Error(`configmap "${s.configMap.name}" not found`);
        return;
      }
      writeItems(cm.data ?? {}, s.configMap.items);
    } else if (s.downwardAPI) {
      for (const item of s.downwardAPI.items ?? []) {
        const value = item.fieldRef ? fieldValue(run.pod, item.fieldRef.fieldPath) : '';
        mkdirSync(path.dirname(path.join(dir, item.path)), { recursive: true });
        writeFileSync(path.join(dir, item.path), value);
      }
    } else if (s.serviceAccountToken) {
      const sa = run.pod.spec.serviceAccountName ?? 'default';
      const tr = await this.client.create(`/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: {
          expirationSeconds: s.serviceAccountToken.expirationSeconds ?? 3607,
          ...(s.serviceAccountToken.audience ? { audiences: [s.serviceAccountToken.audience] } : {}),
          boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: run.name, uid: run.uid },
        },
      });
      writeFileSync(path.join(dir, s.serviceAccountToken.path), tr.status.token);
    }
  }

  private async containerEnv(run: PodRun, c: KubeJSON, mounts: Mounts): Promise<Record<string, string>> {
    const ns = run.namespace;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: path.join(run.dir, 'home'),
      TMPDIR: path.join(run.dir, 'tmp'),
      HOSTNAME: run.name,
      KUBERNETES_SERVICE_HOST: new URL(this.cluster.server).hostname,
      KUBERNETES_SERVICE_PORT: new URL(this.cluster.server).port,
    };
    mkdirSync(env.HOME, { recursive: true });
    mkdirSync(env.TMPDIR, { recursive: true });
    const secretCache = new Map<string, KubeJSON>();
    const getObj = async (kind: 'secrets' | 'configmaps', name: string) => {
      const key = `${kind}/${name}`;
      if (!secretCache.has(key)) secretCache.set(key, await this.client.find(`/api/v1/namespaces/${ns}/${kind}/${name}`));
      return secretCache.get(key);
    };
    for (const from of c.envFrom ?? []) {
      const ref = from.secretRef ?? from.configMapRef;
      const obj = await getObj(from.secretRef ? 'secrets' : 'configmaps', ref.name);
      if (!obj) {
        if (ref.optional) continue;
        throw new Error(`${from.secretRef ? 'secret' : 'configmap'} "${ref.name}" not found`);
      }
      for (const [k, v] of Object.entries(obj.data ?? {})) env[`${from.prefix ?? ''}${k}`] = from.secretRef ? b64decode(String(v)) : String(v);
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.secretKeyRef || e.valueFrom?.configMapKeyRef) {
        const ref = e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef;
        const isSecret = !!e.valueFrom.secretKeyRef;
        const obj = await getObj(isSecret ? 'secrets' : 'configmaps', ref.name);
        const raw = obj?.data?.[ref.key];
        if (raw === undefined) {
          if (ref.optional) continue;
          throw new Error(
            obj
              ? `couldn't find key ${ref.key} in ${isSecret ? 'Secret' : 'ConfigMap'} ${ns}/${ref.name}`
              : `${isSecret ? 'secret' : 'configmap'} "${ref.name}" not found`,
          );
        }
        env[e.name] = isSecret ? b64decode(String(raw)) : String(raw);
      } else if (e.valueFrom?.fieldRef) {
        env[e.name] = fieldValue(run.pod, e.valueFrom.fieldRef.fieldPath);
      } else if (e.valueFrom?.resourceFieldRef) {
        const r = e.valueFrom.resourceFieldRef;
        const [kind, res] = String(r.resource).split('.');
        env[e.name] = String(c.resources?.[kind]?.[res] ?? '0');
      } else {
        env[e.name] = mounts.map(expand(String(e.value ?? ''), env));
      }
    }
    // The trainer writes its result to /dev/termination-log when it exists; here that file
    // is the mapped local one, named through the trainer's documented variable.
    if (env.IACNAS_RESULT_FILE === undefined) env.IACNAS_RESULT_FILE = mounts.terminationFile;
    Object.assign(env, this.opts.envOverrides ?? {});
    return env;
  }

  private commandLine(c: KubeJSON, env: Record<string, string>, mounts: Mounts): string[] {
    const command: string[] = c.command?.length ? c.command : (this.opts.imageEntrypoint ?? ['iacnas']);
    const argv = [...command, ...(c.args ?? [])].map((a) => mounts.mapArg(expand(String(a), env)));
    const isIacnas = (a: string) => /(^|\/)iacnas(\.ts)?$/.test(a);
    if (isIacnas(argv[0])) return [process.execPath, IACNAS, ...argv.slice(1)];
    if (/(^|\/)node$/.test(argv[0])) {
      const rest = argv.slice(1);
      if (rest.length && isIacnas(rest[0])) rest[0] = IACNAS;
      return [process.execPath, ...rest];
    }
    return argv;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.podWatch?.stop();
    await Promise.all([...this.runs.values()].map((r) => r.proc?.stop(2000)));
  }
}

let inProcessPids = 4_000_000;

/** A container whose simulated trainer phase runs in this process (TestKubeletOptions.inProcessSimulation). */
function inProcessTrainer(name: string, args: string[], env: Record<string, string>, logFile: string): ManagedProcess {
  let finished = false;
  let resolveExit!: (s: ExitStatus) => void;
  const exited = new Promise<ExitStatus>((r) => (resolveExit = r));
  const end = (status: ExitStatus) => {
    if (finished) return;
    finished = true;
    resolveExit(status);
  };
  const sink = {
    write: (text: string) => {
      if (!finished) appendFileSync(logFile, text);
      return true;
    },
  };
  void import('../../trainer/src/cli.ts')
    .then((cli) => cli.trainerMain(args, { env, stdout: sink, stderr: sink }))
    .then(
      (code) => end({ code, signal: null }),
      (err: unknown) => {
        sink.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        end({ code: 1, signal: null });
      },
    );
  return {
    name,
    pid: inProcessPids++,
    exited,
    done: () => finished,
    signal: (sig) => end({ code: null, signal: sig }),
    stop: () => {
      end({ code: null, signal: 'SIGTERM' });
      return exited;
    },
  };
}

/** Container paths -> local paths (longest mount first). */
class Mounts {
  private readonly table: Array<[string, string]>;
  readonly terminationFile: string;
  constructor(table: Array<[string, string]>, terminationFile: string) {
    this.table = [...table].sort((a, b) => b[0].length - a[0].length);
    this.terminationFile = terminationFile;
  }
  map(p: string): string {
    for (const [from, to] of this.table) {
      if (p === from) return to;
      if (p.startsWith(`${from}/`)) return to + p.slice(from.length);
    }
    return p;
  }
  /** A path argument, also in `--flag=/path` form. */
  mapArg(a: string): string {
    const eq = /^(--?[A-Za-z0-9-]+=)(\/.*)$/.exec(a);
    return eq ? eq[1] + this.map(eq[2]) : this.map(a);
  }
}

/** Kubernetes $(VAR) expansion; $$ escapes. */
function expand(s: string, env: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) =>
    m === '$$' ? '$' : name !== undefined && name in env ? env[name] : m,
  );
}

function fieldValue(pod: KubeJSON, fieldPath: string): string {
  const label = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (label) return pod.metadata[label[1]]?.[label[2]] ?? '';
  switch (fieldPath) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace;
    case 'metadata.uid':
      return pod.metadata.uid;
    case 'spec.nodeName':
      return pod.spec.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? '';
    case 'status.hostIP':
    case 'status.podIP':
      return '127.0.0.1';
    default:
      return '';
  }
}
