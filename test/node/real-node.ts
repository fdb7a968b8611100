// A REAL node for the cluster tests: containerd (CRI, runc, overlayfs, cgroupfs) with a
// bridge CNI network, a real kubelet registered with the test control plane
// (test/cluster/control-plane.ts, started with `realNodes: true`) and a real kube-proxy
// (iptables mode) so pods reach ClusterIP Services, the `kubernetes` one included.
// See docs/real-node.md for what it changes on the host and how it cleans up.
//
// Layout on the host while a node runs (one node per machine at a time: a host-wide lock
// serialises startNode calls of concurrent test files):
//   - <dir>/ (a temp dir): containerd root/state/socket, kubelet root dir, pod logs, CNI
//     config and IPAM state, configs, kubeconfigs, logs;
//   - the bridge `iacnas0` with 10.222.0.1/24 (the pods' gateway, the Node's InternalIP);
//     the kubelet serves on 10.222.0.1, and a TCP relay in the test process on
//     10.222.0.1:<port> forwards to the API server on 127.0.0.1 (the `kubernetes` Service's
//     endpoint: the API server itself binds loopback only);
//   - iptables: kube-proxy's chains; a filter chain IACNAS-NODE that keeps pod traffic on
//     the bridge (nothing from a pod leaves the machine); kubelet's canary chains;
//   - /run/netns/cni-*: the pods' network namespaces (containerd's);
//   - cgroups /sys/fs/cgroup/<controller>/kubepods/...
// The kubelet runs in a mount namespace of its own in which the three kernel sysctls it
// insists on (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1) read as
// already set, so the host's values are never changed; its mounts still reach the host
// (its root dir is a shared mount) where containerd and runc need them.
import { execFile, execFileSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { findNodeBinaries, type NodeBinaries } from '../cluster/binaries.ts';
import { freePort, sleep, waitFor, type Cluster } from '../cluster/control-plane.ts';
import { spawnGroup, type ManagedProcess } from '../cluster/processes.ts';
import { pauseArchive, PAUSE_IMAGE } from './images.ts';

export interface NodeOptions {
  /** Node name (default real-node-1). */
  name?: string;
  /** Extra node labels (kubelet --node-labels; NodeRestriction refuses most kubernetes.io ones). */
  labels?: Record<string, string>;
  /** Working directory (default a fresh temp dir). */
  dir?: string;
  /** Keep the working directory after stop() (also env IACNAS_KEEP_CLUSTER=1). */
  keep?: boolean;
  /** Run kube-proxy (default true); without it ClusterIP Services do not work. */
  kubeProxy?: boolean;
  /** How long to wait for the Node to be Ready (default 240 s). */
  readyTimeoutMs?: number;
  /** How long to wait for another test process's node to stop (default 20 min). */
  lockTimeoutMs?: number;
  /** Pods per node (default 30). */
  maxPods?: number;
}

export type NodeComponent = 'containerd' | 'kubelet' | 'kube-proxy';

export interface RealNode {
  readonly name: string;
  readonly dir: string;
  /** The pods' subnet (10.222.0.0/24) and its gateway, also the Node's InternalIP. */
  readonly podCIDR: string;
  readonly gatewayIP: string;
  /** containerd's socket (unix path). */
  readonly containerdSocket: string;
  /** Imports an image archive (docker-archive or OCI layout tar) into containerd's k8s.io namespace. */
  importImage(archivePath: string): Promise<void>;
  /** Runs `ctr -n k8s.io <args>` against this node's containerd; resolves with stdout. */
  ctr(args: string[]): Promise<string>;
  /** Path of a component's log file. */
  logFile(component: NodeComponent): string;
  /** Deletes the node's pods, stops kube-proxy, kubelet and containerd, and undoes every host change. Idempotent. */
  stop(): Promise<void>;
}

const BRIDGE = 'iacnas0';
const POD_CIDR = '10.222.0.0/24';
const GATEWAY = '10.222.0.1';
const GUARD_CHAIN = 'IACNAS-NODE';
const CNI_BIN_DIR = '/usr/lib/cni';
const LOCK_FILE = '/run/iacnas-real-node.lock';
const HOST_TOOLS = ['containerd', 'containerd-shim-runc-v2', 'ctr', 'runc', 'iptables', 'ip', 'unshare', 'mount', 'umount', 'gcc'];
const CNI_PLUGINS = ['bridge', 'host-local', 'loopback'];
// Kernel tunables the kubelet sets at start unless they already have these values
// (pkg/kubelet/cm/container_manager_linux.go setupKernelTunables).
const KUBELET_SYSCTLS: Record<string, string> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
};

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin')
    .split(':')
    .concat(['/usr/sbin', '/sbin'])
    .some((d) => existsSync(path.join(d, tool)));
}

export interface NodeAvailability {
  skip: boolean;
  reason?: string;
}

/** What this machine lacks for a real node; empty when it has everything. */
export function nodeMissing(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (the kubelet and containerd need it)');
  const bins = findNodeBinaries();
  if (!bins.ok) missing.push(bins.reason);
  const tools = HOST_TOOLS.filter((t) => !onPath(t));
  if (tools.length) missing.push(`host tools ${tools.join(', ')} (apt-get install containerd runc iptables iproute2 util-linux gcc libc6-dev)`);
  const plugins = CNI_PLUGINS.filter((p) => !existsSync(path.join(CNI_BIN_DIR, p)));
  if (plugins.length) missing.push(`CNI plugins ${plugins.join(', ')} in ${CNI_BIN_DIR} (apt-get install containernetworking-plugins)`);
  if (!existsSync('/usr/bin/busybox')) missing.push('/usr/bin/busybox (apt-get install busybox-static)');
  return missing;
}

/** Whether a real-node suite runs here; in CI a missing prerequisite fails the suite instead. */
export function nodeAvailability(): NodeAvailability {
  const missing = nodeMissing();
  if (missing.length === 0) return { skip: false };
  const reason = `real-node prerequisites missing: ${missing.join('; ')} (see docs/real-node.md)`;
  if (process.env.CI === 'true' || process.env.CI === '1') return { skip: false, reason };
  console.warn(`skipping real-node suite: ${reason}`);
  return { skip: true, reason };
}

function run(cmd: string, args: string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

interface HostState {
  pid: number;
  dir: string;
  sock: string;
  createdLogDir: boolean;
  /** Whether the kubelet's iptables chains existed before this node (then they stay). */
  kubeChainsBefore: boolean;
}

/** Takes the host-wide lock; a lock left by a dead process is cleaned up after first. */
async function acquireLock(state: HostState, timeoutMs: number, kubeProxyBin: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(LOCK_FILE, 'wx');
      writeSync(fd, JSON.stringify(state));
      closeSync(fd);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let prev: HostState | undefined;
    try {
      prev = JSON.parse(readFileSync(LOCK_FILE, 'utf8'));
    } catch {
      prev = undefined;
    }
    if (!prev || !pidAlive(prev.pid)) {
      console.warn(`real-node: cleaning up after a node whose test process (${prev?.pid ?? '?'}) died`);
      if (prev) await hostCleanup(prev, { kubeProxyBin, keep: false }).catch((e) => console.warn(`real-node: stale cleanup: ${String(e)}`));
      rmSync(LOCK_FILE, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`real-node: another test process (pid ${prev.pid}) holds ${LOCK_FILE} for longer than ${timeoutMs} ms`);
    await sleep(1000);
  }
}

function decodeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => decodeMountPath(l.split(' ')[4]))
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

async function unmountAll(dir: string): Promise<string[]> {
  for (let round = 0; round < 5; round++) {
    const mounts = mountsUnder(dir).sort((a, b) => b.length - a.length);
    if (mounts.length === 0) return [];
    for (const m of mounts) {
      await run('umount', [m], { allowFail: true });
    }
    for (const m of mountsUnder(dir)) await run('umount', ['-l', m], { allowFail: true });
  }
  return mountsUnder(dir);
}

/** Processes whose command line mentions `needle` (the containerd shims of this node). */
function pidsMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) pids.push(Number(e));
    } catch {
      // gone
    }
  }
  return pids;
}

async function iptablesCleanup(kubeletChains: boolean): Promise<void> {
  // Our guard chain.
  for (;;) {
    const out = await run('iptables', ['-D', 'FORWARD', '-j', GUARD_CHAIN], { allowFail: true }).then(
      () => true,
      () => false,
    );
    const still = (await run('iptables', ['-S', 'FORWARD'], { allowFail: true })).includes(`-j ${GUARD_CHAIN}`);
    if (!still || !out) break;
  }
  await run('iptables', ['-F', GUARD_CHAIN], { allowFail: true });
  await run('iptables', ['-X', GUARD_CHAIN], { allowFail: true });
  if (!kubeletChains) return;
  // The kubelet's chains: canary and hint (mangle, nat, filter) and KUBE-FIREWALL (filter,
  // jumped to from INPUT and OUTPUT: it drops non-loopback packets to 127.0.0.0/8).
  for (const iptables of ['iptables', 'ip6tables']) {
    for (const hook of ['INPUT', 'OUTPUT']) {
      for (let i = 0; i < 5; i++) {
        const rules = await run(iptables, ['-S', hook], { allowFail: true });
        if (!rules.includes('-j KUBE-FIREWALL')) break;
        await run(iptables, ['-D', hook, '-j', 'KUBE-FIREWALL'], { allowFail: true });
      }
    }
    await run(iptables, ['-F', 'KUBE-FIREWALL'], { allowFail: true });
    await run(iptables, ['-X', 'KUBE-FIREWALL'], { allowFail: true });
    for (const table of ['mangle', 'nat', 'filter']) {
      for (const chain of ['KUBE-KUBELET-CANARY', 'KUBE-IPTABLES-HINT']) {
        await run(iptables, ['-t', table, '-F', chain], { allowFail: true });
        await run(iptables, ['-t', table, '-X', chain], { allowFail: true });
      }
    }
  }
}

async function removeCgroups(): Promise<void> {
  let controllers: string[] = [];
  try {
    controllers = readdirSync('/sys/fs/cgroup');
  } catch {
    return;
  }
  // Container processes still in the pods' cgroups (containerd died first): kill them.
  for (const c of controllers) {
    const root = path.join('/sys/fs/cgroup', c, 'kubepods');
    if (!existsSync(root)) continue;
    const procs = await run('find', [root, '-name', 'cgroup.procs', '-exec', 'cat', '{}', ';'], { allowFail: true });
    for (const pid of new Set(procs.split('\n').filter(Boolean).map(Number))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  for (const c of controllers) {
    const root = path.join('/sys/fs/cgroup', c, 'kubepods');
    if (!existsSync(root)) continue;
    // Depth first; a cgroup with processes left refuses (and stays, reported below).
    await run('find', [root, '-depth', '-type', 'd', '-exec', 'rmdir', '{}', ';'], { allowFail: true });
  }
}

async function removePodNetns(): Promise<void> {
  const dir = '/run/netns';
  if (!existsSync(dir)) return;
  for (const ns of readdirSync(dir)) {
    if (!ns.startsWith('cni-')) continue;
    const addrs = await run('ip', ['-n', ns, '-4', '-o', 'addr'], { allowFail: true });
    // Ours: an address in the pod subnet, or nothing at all but loopback (a half-made one).
    const prefix = GATEWAY.slice(0, GATEWAY.lastIndexOf('.') + 1);
    const ipv4 = addrs.split('\n').filter((l) => l.includes(' inet ') && !l.includes(' 127.'));
    if (ipv4.some((l) => l.includes(` inet ${prefix}`)) || ipv4.length === 0) await run('ip', ['netns', 'del', ns], { allowFail: true });
  }
}

/** Kills and removes every container task of a node's containerd, if it still answers. */
async function killTasks(sock: string): Promise<void> {
  if (!existsSync(sock)) return;
  const ctr = (args: string[]) => run('ctr', ['--address', sock, '-n', 'k8s.io', ...args], { allowFail: true, timeoutMs: 30_000 });
  const tasks = (await ctr(['tasks', 'ls', '-q'])).split('\n').filter(Boolean);
  for (const t of tasks) await ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', t]);
  for (const t of tasks) await ctr(['tasks', 'rm', '-f', t]);
}

/** Undoes every host change of a node; also used for a node whose test process died. */
async function hostCleanup(state: HostState, opts: { kubeProxyBin: string; keep: boolean }): Promise<void> {
  const problems: string[] = [];
  // Containers: whatever is left after the kubelet stopped; then containerd and its shims.
  await killTasks(state.sock);
  for (const pid of pidsMentioning(state.sock)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await waitFor('containerd and its shims to exit', () => pidsMentioning(state.sock).length === 0, 20_000, 200).catch((e) => problems.push(String(e)));
  await run(opts.kubeProxyBin, ['--cleanup', '--v=0'], { allowFail: true });
  // Only when no kubelet of the host made them first (no kubelet ran before the node).
  await iptablesCleanup(!state.kubeChainsBefore);
  await removePodNetns();
  await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
  await removeCgroups();
  // The kubelet links container logs into /var/log/containers (a fixed path).
  const logLinks = '/var/log/containers';
  if (existsSync(logLinks)) {
    for (const l of readdirSync(logLinks)) {
      try {
        if (readlinkSync(path.join(logLinks, l)).startsWith(`${state.dir}/`)) unlinkSync(path.join(logLinks, l));
      } catch {
        // not a link
      }
    }
    if (state.createdLogDir && readdirSync(logLinks).length === 0) rmSync(logLinks, { recursive: true, force: true });
  }
  const left = await unmountAll(state.dir);
  if (left.length) problems.push(`mounts left under ${state.dir}: ${left.join(', ')}`);
  else if (!opts.keep && existsSync(state.dir)) await run('rm', ['-rf', '--one-file-system', state.dir], { allowFail: true });
  if (problems.length) console.warn(`real-node cleanup: ${problems.join('; ')}`);
}

function yamlish(obj: unknown): string {
  // JSON is YAML: the kubelet and kube-proxy read their config files as YAML.
  return JSON.stringify(obj, null, 2);
}

function kubeconfig(server: string, ca: string, cert: string, key: string): string {
  return yamlish({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: { server, 'certificate-authority': ca } }],
    users: [{ name: 'u', user: { 'client-certificate': cert, 'client-key': key } }],
    contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'c',
  });
}

function signClientCert(caCert: string, caKey: string, dir: string, name: string, subject: string): { cert: string; key: string } {
  const key = path.join(dir, `${name}.key`);
  const csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.crt`);
  const ext = path.join(dir, `${name}.ext`);
  execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], { stdio: ['ignore', 'ignore', 'pipe'] });
  execFileSync('openssl', ['req', '-new', '-key', key, '-subj', subject, '-out', csr], { stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(ext, 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  execFileSync(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-CAcreateserial',
      '-CAserial',
      path.join(dir, 'ca.srl'),
      '-days',
      '7',
      '-sha256',
      '-extfile',
      ext,
      '-out',
      cert,
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  return { cert, key };
}

/** A TCP relay: the pods' way to the API server, which binds loopback only. */
function startRelay(host: string, target: { host: string; port: number }): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((inbound) => {
    const outbound = net.connect(target.port, target.host);
    sockets.add(inbound).add(outbound);
    const done = () => {
      inbound.destroy();
      outbound.destroy();
      sockets.delete(inbound);
      sockets.delete(outbound);
    };
    inbound.on('error', done).on('close', done);
    outbound.on('error', done).on('close', done);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      if (!addr || typeof addr !== 'object') return reject(new Error('relay: no address'));
      resolve({
        port: addr.port,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            srv.close(() => r());
          }),
      });
    });
  });
}

function exitGuard(p: ManagedProcess, logFile: string): Promise<never> {
  return p.exited.then((s) => {
    const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-30).join('\n') : '';
    throw new Error(`${p.name} exited during start (code ${s.code}, signal ${s.signal}); last log lines:\n${tail}`);
  });
}

/**
 * Starts containerd, the kubelet and kube-proxy as node `opts.name` of `cluster` (started
 * with `realNodes: true`) and resolves when the Node is Ready. stop() is registered with
 * cluster.onStop.
 */
export async function startNode(cluster: Cluster, opts: NodeOptions = {}): Promise<RealNode> {
  const missing = nodeMissing();
  if (missing.length) throw new Error(`real-node prerequisites missing: ${missing.join('; ')}`);
  const bins = findNodeBinaries();
  if (!bins.ok) throw new Error(bins.reason);
  const nb: NodeBinaries = bins.binaries;
  const name = opts.name ?? 'real-node-1';
  const keep = opts.keep ?? process.env.IACNAS_KEEP_CLUSTER === '1';
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'iacnas-node-'));
  const sub = (...p: string[]) => path.join(dir, ...p);
  for (const d of [
    'logs',
    'pki',
    'cni/net.d',
    'cni/ipam',
    'containerd/root',
    'containerd/state',
    'containerd/opt',
    'kubelet',
    'pod-logs',
    'volume-plugins',
    'sysctl',
  ])
    mkdirSync(sub(d), { recursive: true });
  const logFile = (c: NodeComponent) => sub('logs', `${c}.log`);
  const sock = sub('containerd', 'containerd.sock');
  const state: HostState = { pid: process.pid, dir, sock, createdLogDir: !existsSync('/var/log/containers'), kubeChainsBefore: false };

  const processes: ManagedProcess[] = [];
  let relay: { port: number; close: () => Promise<void> } | undefined;
  let stopped = false;
  let locked = false;
  const timings: Record<string, number> = {};
  const t0 = Date.now();

  const stopAll = async (deletePods: boolean) => {
    if (stopped) return;
    stopped = true;
    if (deletePods) {
      // Through the kubelet, so it stops sandboxes (CNI DEL, netns removal) as on any node.
      // Cordoned first: a Deployment's replacement pods then stay Pending instead of
      // landing here while the node goes away.
      const onNode = `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${name}`)}`;
      try {
        await cluster.client.request('PATCH', `/api/v1/nodes/${name}`, { spec: { unschedulable: true } }, 'application/merge-patch+json');
        const pods = ((await cluster.client.get(onNode)).items ?? []) as Array<{ metadata: { namespace: string; name: string; uid: string } }>;
        await Promise.all(
          pods.map((p) =>
            cluster.client.delete(`/api/v1/namespaces/${p.metadata.namespace}/pods/${p.metadata.name}`, { gracePeriodSeconds: 1 }).catch(() => undefined),
          ),
        );
        const uids = new Set(pods.map((p) => p.metadata.uid));
        await waitFor(
          `pods of ${name} to be deleted`,
          async () => !((await cluster.client.get(onNode)).items ?? []).some((p: { metadata: { uid: string } }) => uids.has(p.metadata.uid)),
          60_000,
          500,
        );
      } catch (err) {
        console.warn(`real-node stop: ${String(err)}`);
      }
    }
    // kube-proxy and the kubelet first; containers next, while containerd still answers.
    for (const p of [...processes].reverse()) if (p.name !== 'containerd') await p.stop(10_000);
    await killTasks(sock);
    for (const p of processes) await p.stop(10_000);
    await relay?.close();
    if (locked) {
      await hostCleanup(state, { kubeProxyBin: nb['kube-proxy'], keep });
      rmSync(LOCK_FILE, { force: true });
    }
  };

  try {
    await acquireLock(state, opts.lockTimeoutMs ?? 20 * 60_000, nb['kube-proxy']);
    locked = true;
    // Seen after the lock: a dead node's chains were removed by its stale cleanup.
    state.kubeChainsBefore = /KUBE-FIREWALL|KUBE-KUBELET-CANARY/.test(await run('iptables-save', [], { allowFail: true }));
    writeFileSync(LOCK_FILE, JSON.stringify(state));
    // A half-removed bridge or old rules from before would only confuse this node.
    await run('ip', ['link', 'del', BRIDGE], { allowFail: true });
    await iptablesCleanup(false);

    // --- network: the bridge, its guard, the CNI config -------------------------------
    await run('ip', ['link', 'add', BRIDGE, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${GATEWAY}/24`, 'dev', BRIDGE]);
    await run('ip', ['link', 'set', BRIDGE, 'up']);
    // Forwarding on the bridge alone (a pod -> Service -> pod packet is routed back out
    // onto the bridge); the host's net.ipv4.ip_forward is left as it is.
    writeFileSync(`/proc/sys/net/ipv4/conf/${BRIDGE}/forwarding`, '1');
    writeFileSync(`/proc/sys/net/ipv6/conf/${BRIDGE}/disable_ipv6`, '1');
    await run('iptables', ['-N', GUARD_CHAIN]);
    await run('iptables', ['-A', GUARD_CHAIN, '-i', BRIDGE, '-o', BRIDGE, '-j', 'ACCEPT']);
    // Nothing from a pod leaves the machine: it may only talk to pods and to the host.
    await run('iptables', ['-A', GUARD_CHAIN, '-i', BRIDGE, '-j', 'DROP']);
    await run('iptables', ['-A', GUARD_CHAIN, '-o', BRIDGE, '-j', 'DROP']);
    await run('iptables', ['-I', 'FORWARD', '1', '-j', GUARD_CHAIN]);
    writeFileSync(
      sub('cni', 'net.d', '10-iacnas.conflist'),
      yamlish({
        cniVersion: '0.4.0',
        name: 'iacnas',
        plugins: [
          {
            type: 'bridge',
            bridge: BRIDGE,
            isGateway: false,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: 'host-local',
              ranges: [[{ subnet: POD_CIDR, gateway: GATEWAY }]],
              routes: [{ dst: '0.0.0.0/0', gw: GATEWAY }],
              dataDir: sub('cni', 'ipam'),
            },
          },
        ],
      }),
    );

    // --- containerd ----------------------------------------------------------------------
    writeFileSync(
      sub('containerd', 'config.toml'),
      [
        'version = 2',
        `root = "${sub('containerd', 'root')}"`,
        `state = "${sub('containerd', 'state')}"`,
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
        '[grpc]',
        `  address = "${sock}"`,
        '[ttrpc]',
        `  address = "${sock}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${sub('containerd', 'opt')}"`,
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${PAUSE_IMAGE}"`,
        // The pause container asks for oom_score_adj -998; a containerd that is not itself
        // at -999 must clamp it instead of failing the sandbox.
        '  restrict_oom_score_adj = true',
        '  stream_server_address = "127.0.0.1"',
        '  stream_server_port = "0"',
        '  enable_selinux = false',
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    snapshotter = "overlayfs"',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        '        SystemdCgroup = false',
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        `    bin_dir = "${CNI_BIN_DIR}"`,
        `    conf_dir = "${sub('cni', 'net.d')}"`,
        '    max_conf_num = 1',
        '',
      ].join('\n'),
    );
    const containerd = spawnGroup('containerd', 'containerd', ['--config', sub('containerd', 'config.toml'), '--log-level', 'warn'], {
      logFile: logFile('containerd'),
    });
    processes.push(containerd);
    const ctr = (args: string[], timeoutMs = 120_000) => run('ctr', ['--address', sock, '-n', 'k8s.io', ...args], { timeoutMs });
    await Promise.race([
      waitFor('containerd socket', async () => (await ctr(['version'], 5000)).includes('Server'), 60_000, 250),
      exitGuard(containerd, logFile('containerd')),
    ]);
    const importImage = async (archive: string) => {
      await ctr(['images', 'import', '--snapshotter', 'overlayfs', archive], 300_000);
    };
    await importImage(pauseArchive());
    timings.containerd = Date.now() - t0;

    // --- credentials and the `kubernetes` Service's endpoint -------------------------------
    const { caCert, caKey } = cluster.certs;
    const kubeletCreds = signClientCert(caCert, caKey, sub('pki'), 'kubelet', `/O=system:nodes/CN=system:node:${name}`);
    const proxyCreds = signClientCert(caCert, caKey, sub('pki'), 'kube-proxy', '/CN=system:kube-proxy');
    writeFileSync(sub('kubelet.kubeconfig'), kubeconfig(cluster.server, caCert, kubeletCreds.cert, kubeletCreds.key), { mode: 0o600 });
    writeFileSync(sub('kube-proxy.kubeconfig'), kubeconfig(cluster.server, caCert, proxyCreds.cert, proxyCreds.key), { mode: 0o600 });
    const apiPort = Number(new URL(cluster.server).port);
    relay = await startRelay(GATEWAY, { host: '127.0.0.1', port: apiPort });
    await publishApiEndpoint(cluster, GATEWAY, relay.port);

    // --- kubelet ---------------------------------------------------------------------------
    const [kubeletPort, healthzPort, proxyHealthz, proxyMetrics] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    writeFileSync(
      sub('kubelet-config.yaml'),
      yamlish({
        apiVersion: 'kubelet.config.k8s.io/v1beta1',
        kind: 'KubeletConfiguration',
        address: GATEWAY,
        port: kubeletPort,
        readOnlyPort: 0,
        healthzBindAddress: '127.0.0.1',
        healthzPort,
        authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: caCert } },
        authorization: { mode: 'Webhook' },
        tlsCertFile: '',
        rotateCertificates: false,
        serverTLSBootstrap: false,
        cgroupDriver: 'cgroupfs',
        failCgroupV1: false,
        failSwapOn: false,
        protectKernelDefaults: false,
        containerRuntimeEndpoint: `unix://${sock}`,
        podLogsDir: sub('pod-logs'),
        volumePluginDir: sub('volume-plugins'),
        registerNode: true,
        maxPods: opts.maxPods ?? 30,
        // No DNS in this cluster; pods must not get the host's resolvers either.
        resolvConf: '',
        // A busy development machine must not make the kubelet evict or collect images.
        evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'nodefs.inodesFree': '1%', 'imagefs.available': '1%' },
        evictionPressureTransitionPeriod: '5s',
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        imageMinimumGCAge: '24h',
        serializeImagePulls: false,
        nodeStatusUpdateFrequency: '5s',
        syncFrequency: '10s',
        fileCheckFrequency: '10s',
        shutdownGracePeriod: '0s',
      }),
    );
    // The kubelet's mount namespace: the kernel tunables it wants read as already set
    // there (bind mounts over /proc/sys files), so it writes none; its root dir is a
    // shared mount, so the volumes it mounts there are visible to containerd and runc.
    await run('mount', ['--bind', sub('kubelet'), sub('kubelet')]);
    await run('mount', ['--make-shared', sub('kubelet')]);
    const shadows: string[] = [];
    for (const [key, want] of Object.entries(KUBELET_SYSCTLS)) {
      const file = `/proc/sys/${key}`;
      if (!existsSync(file) || readFileSync(file, 'utf8').trim() === want) continue;
      const fake = sub('sysctl', key.replace(/\//g, '.'));
      writeFileSync(fake, `${want}\n`);
      shadows.push(`mount --bind '${fake}' '${file}'`);
    }
    const kubeletArgs = [
      `--config=${sub('kubelet-config.yaml')}`,
      `--kubeconfig=${sub('kubelet.kubeconfig')}`,
      `--root-dir=${sub('kubelet')}`,
      `--hostname-override=${name}`,
      `--node-ip=${GATEWAY}`,
      `--node-labels=${Object.entries({ 'iacnas.test/real-node': 'true', ...(opts.labels ?? {}) })
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}`,
      '--v=1',
    ];
    const script = ['set -e', 'mount --make-rprivate /proc', ...shadows, 'exec "$@"'].join('\n');
    const kubelet = spawnGroup(
      'kubelet',
      'unshare',
      ['--mount', '--propagation', 'unchanged', '--', 'sh', '-c', script, 'kubelet', nb.kubelet, ...kubeletArgs],
      {
        logFile: logFile('kubelet'),
      },
    );
    processes.push(kubelet);

    // --- kube-proxy --------------------------------------------------------------------------
    if (opts.kubeProxy !== false) {
      writeFileSync(
        sub('kube-proxy-config.yaml'),
        yamlish({
          apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
          kind: 'KubeProxyConfiguration',
          mode: 'iptables',
          clientConnection: { kubeconfig: sub('kube-proxy.kubeconfig') },
          hostnameOverride: name,
          bindAddress: GATEWAY,
          healthzBindAddress: `127.0.0.1:${proxyHealthz}`,
          metricsBindAddress: `127.0.0.1:${proxyMetrics}`,
          clusterCIDR: POD_CIDR,
          // Leave the host's conntrack and route_localnet sysctls alone.
          conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
          iptables: { localhostNodePorts: false, masqueradeAll: false, syncPeriod: '30s', minSyncPeriod: '0s' },
          nodePortAddresses: [`${GATEWAY}/32`],
          oomScoreAdj: 0,
        }),
      );
      const proxy = spawnGroup('kube-proxy', nb['kube-proxy'], [`--config=${sub('kube-proxy-config.yaml')}`, '--v=1'], { logFile: logFile('kube-proxy') });
      processes.push(proxy);
    }

    // --- Ready -----------------------------------------------------------------------------
    const guards = processes.map((p) => exitGuard(p, logFile(p.name as NodeComponent)));
    const node = await Promise.race([
      waitFor(
        `Node ${name} Ready`,
        async () => {
          const n = await cluster.client.find(`/api/v1/nodes/${name}`);
          const ready = n?.status?.conditions?.find((c: { type: string }) => c.type === 'Ready');
          return ready?.status === 'True' && n.status.allocatable?.cpu ? n : undefined;
        },
        opts.readyTimeoutMs ?? 240_000,
        500,
      ),
      ...guards,
    ]);
    // Without the node-lifecycle controller nothing takes away the kubelet's
    // registration taint once the node is Ready; do what it would.
    const taints = (node.spec?.taints ?? []).filter((t: { key: string }) => t.key !== 'node.kubernetes.io/not-ready');
    if (taints.length !== (node.spec?.taints ?? []).length) await cluster.client.mergePatch(`/api/v1/nodes/${name}`, { spec: { taints } });
    if (opts.kubeProxy !== false) {
      await Promise.race([
        waitFor(
          'kube-proxy /healthz',
          async () => (await fetch(`http://127.0.0.1:${proxyHealthz}/healthz`, { signal: AbortSignal.timeout(3000) })).ok,
          120_000,
          500,
        ),
        ...guards,
      ]);
    }
    for (const g of guards) g.catch(() => undefined);
    timings.ready = Date.now() - t0;

    const realNode: RealNode = {
      name,
      dir,
      podCIDR: POD_CIDR,
      gatewayIP: GATEWAY,
      containerdSocket: sock,
      importImage,
      ctr: (args) => ctr(args),
      logFile,
      stop: () => stopAll(true),
    };
    cluster.onStop(() => realNode.stop());
    if (process.env.IACNAS_NODE_TIMINGS === '1') console.log(`real-node ${name}: containerd+pause ${timings.containerd} ms, Ready ${timings.ready} ms`);
    return realNode;
  } catch (err) {
    await stopAll(false).catch(() => undefined);
    throw new Error(`${(err as Error).message}\n(node logs: ${sub('logs')}${keep ? '' : ', removed; IACNAS_KEEP_CLUSTER=1 keeps them'})`);
  }
}

/**
 * Makes the `kubernetes` Service reachable from pods: its EndpointSlice (and Endpoints)
 * point at the relay to the API server (the API server runs with
 * --endpoint-reconciler-type=none, so nothing else writes them).
 */
async function publishApiEndpoint(cluster: Cluster, ip: string, port: number): Promise<void> {
  const c = cluster.client;
  const svc = await waitFor('Service default/kubernetes', () => c.find('/api/v1/namespaces/default/services/kubernetes'), 60_000, 250);
  const portName: string = svc.spec.ports[0].name ?? 'https';
  const slice = {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: 'kubernetes',
      namespace: 'default',
      labels: { 'kubernetes.io/service-name': 'kubernetes', 'endpointslice.kubernetes.io/managed-by': 'iacnas.test-real-node' },
    },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    ports: [{ name: portName, port, protocol: 'TCP' }],
  };
  const endpoints = {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: { name: 'kubernetes', namespace: 'default' },
    subsets: [{ addresses: [{ ip }], ports: [{ name: portName, port, protocol: 'TCP' }] }],
  };
  for (const [base, obj] of [
    ['/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', slice],
    ['/api/v1/namespaces/default/endpoints', endpoints],
  ] as const) {
    if (await c.find(`${base}/kubernetes`)) await c.delete(`${base}/kubernetes`);
    await c.create(base, obj);
  }
}
