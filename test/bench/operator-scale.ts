// Operator scale against the real control plane (test/cluster): N IACSearches created at
// once, each running its four phases as pods of the simulated trainer
// (IACNAS_SIMULATE_SECONDS, set by the test kubelet in every container), then a quiet
// period after all have finished. Measures:
//   - seconds until every search's first pod exists, and until every search Succeeded;
//   - reconcile p50/p99 (the operator's iac_operator_reconcile_duration_seconds histogram);
//   - the operator's API requests by verb and resource over the searches' lives, per
//     search, and in the quiet period (watches and its leader Lease counted apart). The
//     operator runs under its own client certificate (user iacnas-operator) and the API
//     server's audit log attributes every request to it;
//   - the operator's memory (VmHWM and VmRSS of its process);
//   - as a cross-check, the API server's own apiserver_request_total over all clients.
//   scripts/with-node node test/bench/operator-scale.ts [--searches 100,500,2000] [--quiet-seconds 60]
//       [--simulate-seconds 2] [--workers N] [--node-options '<operator node flags>'] [--cpu-prof <dir>] [--no-write]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { adminKubeconfig, makeClientCert } from '../cluster/certs.ts';
import { freePort, sleep, startCluster, waitFor, type Cluster } from '../cluster/control-plane.ts';
import type { KubeJSON, Watch } from '../cluster/kube-client.ts';
import { spawnGroup } from '../cluster/processes.ts';
import { TestKubelet } from '../cluster/test-kubelet.ts';
import { createNamespace, installCRD, iacsPath } from '../e2e/env.ts';
import { DEFAULT_WORKERS } from '../../operator/src/main.ts';
import { machine, parseFlags, repoRoot, updateBenchmarksMd } from './lib.ts';

export const OPERATOR_USER = 'iacnas-operator';
const LABEL_SEARCH = 'iac.dev/search';

export interface ScaleOptions {
  searches: number;
  quietSeconds: number;
  /** Seconds each simulated phase takes. */
  simulateSeconds: number;
  workers: number;
  /** Node.js options of the operator process (default: the chart's nodeOptions value). */
  nodeOptions?: string[];
  /** Write a V8 CPU profile of the operator into this directory (node --cpu-prof). */
  cpuProfileDir?: string;
  /** Give up waiting for the searches after this long. */
  timeoutSeconds?: number;
  log?: (line: string) => void;
}

export interface RequestCounts {
  /** Non-watch requests by "VERB resource[/subresource]". */
  byVerbResource: Record<string, number>;
  /** Non-watch requests, leader Lease excluded. */
  total: number;
  /** Requests on the leader Lease (get/update while renewing). */
  lease: number;
  /** Watch requests started (each is one long-lived connection). */
  watches: number;
}

export interface ScaleResult {
  benchmark: 'operator-scale';
  date: string;
  machine: ReturnType<typeof machine>;
  settings: { searches: number; quietSeconds: number; simulateSecondsPerPhase: number; workers: number; namespaces: number; nodes: number; leaderElect: true };
  seconds: { toEveryFirstPod: number; toAllSucceeded: number };
  reconcile: { count: number; p50Ms: number; p99Ms: number; meanMs: number; byResult: Record<string, number> };
  apiRequests: {
    /** From creating the searches until all had succeeded. */
    life: RequestCounts & { perSearch: number; perSearchByVerbResource: Record<string, number> };
    /** The quiet period after all succeeded. */
    quiet: RequestCounts & { seconds: number; reconciles: number };
    /** apiserver_request_total of every client (kubelet, scheduler, controllers, operator), non-watch. */
    allClients: { life: number; quiet: number };
  };
  operatorMemoryMiB: { peakRss: number; rssAtEnd: number; rssBeforeSearches: number };
  /** CPU seconds the operator process used over the searches' lives and in the quiet period. */
  operatorCpuSeconds: { life: number; quiet: number };
}

interface AuditEntry {
  stage: string;
  verb: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string; name?: string; namespace?: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
}

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["${OPERATOR_USER}"]
- level: None
`;

function readAudit(file: string): AuditEntry[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: AuditEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as AuditEntry;
    // A watch is counted when it starts; every other request when it completes.
    if (e.verb === 'watch' ? e.stage === 'ResponseStarted' : e.stage === 'ResponseComplete') out.push(e);
  }
  return out;
}

export function countRequests(entries: readonly AuditEntry[], from: number, to: number): RequestCounts {
  const counts: RequestCounts = { byVerbResource: {}, total: 0, lease: 0, watches: 0 };
  for (const e of entries) {
    const t = Date.parse(e.requestReceivedTimestamp);
    if (t < from || t >= to) continue;
    const resource = `${e.objectRef?.resource ?? '?'}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''}`;
    if (e.verb === 'watch') counts.watches++;
    else if (resource === 'leases') counts.lease++;
    else {
      // A refused request (e.g. 409 for a pod created again while the informer lagged, which
      // the operator allows) is counted apart from the ones that went through.
      const code = e.responseStatus?.code ?? 200;
      const key = `${e.verb.toUpperCase()} ${resource}${code >= 300 ? ` ${code}` : ''}`;
      counts.byVerbResource[key] = (counts.byVerbResource[key] ?? 0) + 1;
      counts.total++;
    }
  }
  counts.byVerbResource = Object.fromEntries(Object.entries(counts.byVerbResource).sort((a, b) => b[1] - a[1]));
  return counts;
}

/** Sum of apiserver_request_total over every client, watches excluded. */
async function apiserverRequests(cluster: Cluster): Promise<number> {
  const text: string = await cluster.client.get('/metrics');
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    if (/verb="WATCH"/.test(line)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

interface Histogram {
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
  byResult: Record<string, number>;
}

/** The reconcile histogram, summed over results. */
function parseHistogram(text: string, name: string): Histogram {
  const buckets = new Map<number, number>();
  const byResult: Record<string, number> = {};
  let count = 0;
  let sum = 0;
  for (const line of text.split('\n')) {
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith(`${name}_bucket{`)) {
      const le = /le="([^"]+)"/.exec(line)![1];
      const bound = le === '+Inf' ? Infinity : Number(le);
      buckets.set(bound, (buckets.get(bound) ?? 0) + value);
    } else if (line.startsWith(`${name}_count`)) {
      count += value;
      const result = /result="([^"]+)"/.exec(line)?.[1] ?? 'all';
      byResult[result] = (byResult[result] ?? 0) + value;
    } else if (line.startsWith(`${name}_sum`)) sum += value;
  }
  return { buckets: [...buckets.entries()].sort((a, b) => a[0] - b[0]), count, sum, byResult };
}

/** Quantile by linear interpolation inside the bucket, as Prometheus' histogram_quantile. */
export function histogramQuantile(q: number, h: Pick<Histogram, 'buckets' | 'count'>): number {
  if (h.count === 0) return 0;
  const rank = q * h.count;
  let prevBound = 0;
  let prevCount = 0;
  for (const [bound, cum] of h.buckets) {
    if (cum >= rank) {
      if (bound === Infinity) return prevBound;
      return prevBound + ((bound - prevBound) * (rank - prevCount)) / Math.max(cum - prevCount, 1e-9);
    }
    prevBound = bound;
    prevCount = cum;
  }
  return prevBound;
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

function rssMiB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

/** A kubeconfig for the operator under its own identity (a system:masters certificate, CN iacnas-operator). */
function operatorKubeconfig(cluster: Cluster): string {
  const dir = path.join(cluster.dir, 'pki');
  const client = makeClientCert(dir, 'operator', `/O=system:masters/CN=${OPERATOR_USER}`);
  const file = path.join(cluster.dir, 'operator.kubeconfig');
  writeFileSync(file, adminKubeconfig(cluster.server, { ...cluster.certs, adminCert: client.cert, adminKey: client.key }), { mode: 0o600 });
  return file;
}

function searchObject(name: string, namespace: string): KubeJSON {
  return {
    apiVersion: 'nas.iac.dev/v1alpha1',
    kind: 'IACSearch',
    metadata: { name, namespace },
    spec: {
      dataset: { format: 'phantom', cases: 6, sliceSize: 16 },
      backbone: { depth: 1, baseFilters: 4 },
      // No GPUs: scheduling never waits, so the figures are the operator's and the API server's.
      resources: { gpus: 0, cpu: '10m', memory: '64Mi' },
      artifacts: { size: '1Gi' },
    },
  };
}

/** The Node.js options the chart gives the operator (values.yaml nodeOptions), so the benchmark runs it as installed. */
export function chartNodeOptions(): string[] {
  const values = parseYaml(readFileSync(path.join(repoRoot, 'charts/iac-operator/values.yaml'), 'utf8')) as { nodeOptions?: string };
  return (values.nodeOptions ?? '').split(/\s+/).filter(Boolean);
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]);
    }),
  );
}

export async function runOperatorScale(o: ScaleOptions): Promise<ScaleResult> {
  const log = o.log ?? (() => undefined);
  const n = o.searches;
  const namespaces = Array.from({ length: Math.min(10, n) }, (_, i) => `scale-${i}`);
  const nodeCount = Math.ceil(n / 100) + 1;
  const clusterDir = path.join((await import('node:os')).tmpdir(), `iacnas-scale-${process.pid}-${Date.now()}`);
  mkdirSync(path.join(clusterDir, 'logs'), { recursive: true });
  const policy = path.join(clusterDir, 'audit-policy.yaml');
  const auditLog = path.join(clusterDir, 'logs', 'audit.log');
  writeFileSync(policy, AUDIT_POLICY);

  log(`starting the control plane (${nodeCount} nodes, ${n} volumes)`);
  const cluster = await startCluster({
    dir: clusterDir,
    persistentVolumes: n,
    volumeSize: '1Gi',
    apiserverArgs: [`--audit-policy-file=${policy}`, `--audit-log-path=${auditLog}`, '--audit-log-format=json', '--audit-log-maxsize=0'],
  });
  const watches: Watch[] = [];
  try {
    await installCRD(cluster);
    await TestKubelet.start(cluster, {
      nodes: Array.from({ length: nodeCount }, (_, i) => ({ name: `scale-node-${i}`, cpu: '1000', memory: '4Ti', pods: 110 })),
      envOverrides: { IACNAS_SIMULATE_SECONDS: String(o.simulateSeconds) },
      // The simulated phases run inside the benchmark's process (the same trainerMain,
      // arguments and environment as a container): a Node.js start per pod would cost
      // 0.5 CPU-s, 4,000 CPU-s for 2,000 searches, on the 2 cores being measured. On a
      // real cluster the pods run on other machines.
      inProcessSimulation: true,
    });
    for (const ns of namespaces) await createNamespace(cluster, ns);

    // The operator, under its own identity so that the audit log tells its requests apart.
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const operatorLog = cluster.logFile('operator');
    const proc = spawnGroup(
      'operator',
      process.execPath,
      [
        ...(o.nodeOptions ?? chartNodeOptions()),
        ...(o.cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${o.cpuProfileDir}`] : []),
        path.join(repoRoot, 'bin', 'iacnas.ts'),
        'operator',
        `--kubeconfig=${operatorKubeconfig(cluster)}`,
        '--host=127.0.0.1',
        `--port=${port}`,
        `--progress-url=${url}/v1/progress`,
        '--advertise-address=127.0.0.1',
        `--workers=${o.workers}`,
        '--leader-elect',
        '--leader-election-namespace=default',
        '--leader-election-identity=scale',
      ],
      { logFile: operatorLog, env: { ...process.env, POD_NAMESPACE: '', POD_NAME: '', POD_IP: '' } },
    );
    cluster.onStop(async () => {
      await proc.stop(20_000);
    });
    await Promise.race([
      waitFor('operator /readyz', async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) })).ok, 60_000, 300),
      proc.exited.then((s) => {
        throw new Error(`operator exited during start (code ${s.code}): ${readFileSync(operatorLog, 'utf8').slice(-3000)}`);
      }),
    ]);
    await waitFor('operator holds the lease', async () => (await fetch(`${url}/metrics`)).text().then((t) => /^iac_operator_leader 1$/m.test(t)), 60_000, 300);
    await sleep(2000); // informers settled
    const rssBefore = rssMiB(proc.pid).rss;
    const cpuBefore = cpuSeconds(proc.pid);
    let peakRss = rssBefore;
    const sampler = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, rssMiB(proc.pid).rss);
      } catch {
        // the process ended; stop() follows
      }
    }, 500);

    // First pod and success per search, from watches.
    const firstPod = new Map<string, number>();
    const succeeded = new Map<string, number>();
    const failed = new Map<string, string>();
    watches.push(
      cluster.client.watch(`/api/v1/pods?labelSelector=${encodeURIComponent(LABEL_SEARCH)}`, (e) => {
        if (e.type !== 'ADDED') return;
        const key = `${e.object.metadata.namespace}/${e.object.metadata.labels[LABEL_SEARCH]}`;
        if (!firstPod.has(key)) firstPod.set(key, performance.now());
      }),
      cluster.client.watch('/apis/nas.iac.dev/v1alpha1/iacsearches', (e) => {
        const key = `${e.object.metadata.namespace}/${e.object.metadata.name}`;
        const phase = e.object.status?.phase;
        if (phase === 'Succeeded' && !succeeded.has(key)) succeeded.set(key, performance.now());
        if (phase === 'Failed') failed.set(key, JSON.stringify(e.object.status?.conditions ?? []).slice(0, 600));
      }),
    );

    const allBefore = await apiserverRequests(cluster);
    const wallStart = Date.now();
    const t0 = performance.now();
    log(`creating ${n} IACSearches`);
    const names = Array.from({ length: n }, (_, i) => ({ name: `s${i}`, namespace: namespaces[i % namespaces.length] }));
    await pool(names, 32, (s) => cluster.client.create(iacsPath(s.namespace), searchObject(s.name, s.namespace)));
    const timeout = (o.timeoutSeconds ?? 600 + n * 4) * 1000;
    let lastLog = 0;
    await waitFor(
      `every search's first pod (${n})`,
      () => {
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          log(`first pods: ${firstPod.size}/${n}`);
        }
        return firstPod.size >= n;
      },
      timeout,
      100,
    );
    const toFirstPod = (Math.max(...firstPod.values()) - t0) / 1000;
    log(`every first pod after ${toFirstPod.toFixed(1)} s`);
    await waitFor(
      `every search Succeeded (${n})`,
      () => {
        if (failed.size) throw new Error(`searches failed: ${[...failed].slice(0, 3).join('; ')}`);
        if (Date.now() - lastLog > 10_000) {
          lastLog = Date.now();
          log(`succeeded: ${succeeded.size}/${n}`);
        }
        return succeeded.size >= n || undefined;
      },
      timeout,
      200,
    ).catch((err) => {
      if (failed.size) throw new Error(`searches failed: ${[...failed].slice(0, 3).join('; ')}`);
      throw err;
    });
    const toSucceeded = (Math.max(...succeeded.values()) - t0) / 1000;
    const lifeEnd = Date.now();
    const cpuLife = cpuSeconds(proc.pid) - cpuBefore;
    const allAfterLife = await apiserverRequests(cluster);
    log(`every search Succeeded after ${toSucceeded.toFixed(1)} s`);

    // The quiet period: nothing changes; what the operator still asks is its steady-state cost.
    await sleep(3000); // the last status writes and their watch events settle
    const metricsBeforeQuiet = parseHistogram(await (await fetch(`${url}/metrics`)).text(), 'iac_operator_reconcile_duration_seconds');
    const allBeforeQuiet = await apiserverRequests(cluster);
    const quietStart = Date.now();
    log(`quiet for ${o.quietSeconds} s`);
    await sleep(o.quietSeconds * 1000);
    const quietEnd = Date.now();
    const allAfterQuiet = await apiserverRequests(cluster);
    const metricsText = await (await fetch(`${url}/metrics`)).text();
    const h = parseHistogram(metricsText, 'iac_operator_reconcile_duration_seconds');
    const mem = rssMiB(proc.pid);
    const cpuQuiet = cpuSeconds(proc.pid) - cpuBefore - cpuLife;
    clearInterval(sampler);
    await sleep(1500); // the audit log's buffered lines reach the file
    const audit = readAudit(auditLog);
    const life = countRequests(audit, wallStart - 1, lifeEnd);
    const quiet = countRequests(audit, quietStart, quietEnd);
    const perSearchByVerbResource = Object.fromEntries(Object.entries(life.byVerbResource).map(([k, v]) => [k, +(v / n).toFixed(2)]));
    return {
      benchmark: 'operator-scale',
      date: new Date().toISOString(),
      machine: machine(),
      settings: {
        searches: n,
        quietSeconds: o.quietSeconds,
        simulateSecondsPerPhase: o.simulateSeconds,
        workers: o.workers,
        namespaces: namespaces.length,
        nodes: nodeCount,
        leaderElect: true,
      },
      seconds: { toEveryFirstPod: +toFirstPod.toFixed(2), toAllSucceeded: +toSucceeded.toFixed(2) },
      reconcile: {
        count: h.count,
        p50Ms: +(histogramQuantile(0.5, h) * 1000).toFixed(2),
        p99Ms: +(histogramQuantile(0.99, h) * 1000).toFixed(2),
        meanMs: +((h.sum / Math.max(h.count, 1)) * 1000).toFixed(2),
        byResult: h.byResult,
      },
      apiRequests: {
        life: { ...life, perSearch: +(life.total / n).toFixed(2), perSearchByVerbResource },
        quiet: { ...quiet, seconds: +((quietEnd - quietStart) / 1000).toFixed(1), reconciles: h.count - metricsBeforeQuiet.count },
        allClients: { life: allAfterLife - allBefore, quiet: allAfterQuiet - allBeforeQuiet },
      },
      operatorCpuSeconds: { life: +cpuLife.toFixed(2), quiet: +cpuQuiet.toFixed(2) },
      operatorMemoryMiB: { peakRss: +Math.max(peakRss, mem.hwm).toFixed(1), rssAtEnd: +mem.rss.toFixed(1), rssBeforeSearches: +rssBefore.toFixed(1) },
    };
  } finally {
    for (const w of watches) w.stop();
    await cluster.stop();
  }
}

export interface ScaleRuns {
  benchmark: 'operator-scale';
  date: string;
  machine: ReturnType<typeof machine>;
  runs: ScaleResult[];
}

const perSearchList = (r: ScaleResult) =>
  Object.entries(r.apiRequests.life.perSearchByVerbResource)
    .slice(0, 8)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

/**
 * The before/after line: `before` is a run of the same benchmark on the operator before
 * the fleet-scale changes (commit 214ae9f, docs/operator-scale.md), committed as
 * test/bench/results/operator-scale-before.json.
 */
function beforeAfter(runs: ScaleResult[], before: ScaleRuns | undefined): string {
  const b = before?.runs[0];
  const a = b && runs.find((r) => r.settings.searches === b.settings.searches);
  if (!b || !a) return '';
  const f = (r: ScaleResult) =>
    `${r.seconds.toEveryFirstPod} s to every first pod, ${r.apiRequests.life.perSearch} requests per search, peak RSS ${r.operatorMemoryMiB.peakRss} MiB, ${r.operatorCpuSeconds.life} CPU-s`;
  return `\nBefore and after, N = ${b.settings.searches}, same harness: commit 214ae9f's operator ${f(b)}; this one ${f(a)} (\`test/bench/results/operator-scale-before.json\`, docs/operator-scale.md).\n`;
}

function readBefore(): ScaleRuns | undefined {
  try {
    return JSON.parse(readFileSync(path.join(repoRoot, 'test/bench/results/operator-scale-before.json'), 'utf8')) as ScaleRuns;
  } catch {
    return undefined;
  }
}

/** The BENCHMARKS.md section: one column per number of searches. */
export function markdown(all: ScaleRuns, before: ScaleRuns | undefined = readBefore()): string {
  const runs = all.runs;
  const first = runs[0];
  const row = (label: string, cell: (r: ScaleResult) => string | number) => `| ${label} | ${runs.map(cell).join(' | ')} |`;
  const quietList = (r: ScaleResult) =>
    Object.entries(r.apiRequests.quiet.byVerbResource)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  return `## Operator scale (real control plane)

\`npm run bench:operator-scale -- --searches ${runs.map((r) => r.settings.searches).join(',')} --quiet-seconds ${first.settings.quietSeconds}\`
(\`test/bench/operator-scale.ts\`; result in \`test/bench/results/operator-scale.json\`). ${all.machine.cores} cores
(${all.machine.cpu}), Node ${all.machine.node}; etcd, kube-apiserver, controller-manager, scheduler, the test
kubelet, the operator (${first.settings.workers} workers, leader election on) share the machine. The
IACSearches are created at once in up to 10 namespaces, no GPUs; each phase pod runs the
simulated trainer for ${first.settings.simulateSecondsPerPhase} s (\`IACNAS_SIMULATE_SECONDS\`, docs/trainer-phases.md) inside the test
kubelet's process. The operator's requests are counted from the API server's audit log
(the operator runs as its own user). Method, and the costs found and removed with
before/after figures: docs/operator-scale.md.

${row('searches (test kubelet nodes)', (r) => `**${r.settings.searches}** (${r.settings.nodes})`)}
|---|${runs.map(() => '---').join('|')}|
${row("every search's first pod exists", (r) => `**${r.seconds.toEveryFirstPod} s**`)}
${row('every search Succeeded (4 phase pods each)', (r) => `${r.seconds.toAllSucceeded} s`)}
${row('reconciles (p50 / p99)', (r) => `${r.reconcile.count} (${r.reconcile.p50Ms} / ${r.reconcile.p99Ms} ms)`)}
${row('operator API requests per search over its life (watches and Lease apart)', (r) => `**${r.apiRequests.life.perSearch}**`)}
${row('per search, by request', perSearchList)}
${row('watches started / Lease requests over the lives', (r) => `${r.apiRequests.life.watches} / ${r.apiRequests.life.lease}`)}
${row(`quiet period after all finished: operator requests (Lease apart)`, (r) => `**${r.apiRequests.quiet.total}** in ${r.apiRequests.quiet.seconds} s (${quietList(r)}); Lease ${r.apiRequests.quiet.lease}; reconciles ${r.apiRequests.quiet.reconciles}`)}
${row("all clients' requests (apiserver_request_total, watches apart): lives / quiet", (r) => `${r.apiRequests.allClients.life} / ${r.apiRequests.allClients.quiet}`)}
${row('operator CPU over the lives / quiet', (r) => `${r.operatorCpuSeconds.life} s / ${r.operatorCpuSeconds.quiet} s`)}
${row('operator RSS: before the searches / **peak** / at the end', (r) => `${r.operatorMemoryMiB.rssBeforeSearches} / **${r.operatorMemoryMiB.peakRss}** / ${r.operatorMemoryMiB.rssAtEnd} MiB`)}
${beforeAfter(runs, before)}`;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const num = (name: string, def: number) => {
    const v = flags.get(name);
    if (v === undefined) return def;
    const x = Number(v);
    if (!Number.isFinite(x) || x <= 0) throw new Error(`--${name}: '${v}' is not a positive number`);
    return x;
  };
  const sizes = (flags.get('searches') ?? '100,500,2000').split(',').map((v) => {
    const x = Number(v);
    if (!Number.isInteger(x) || x <= 0) throw new Error(`--searches: '${v}' is not a positive whole number (e.g. --searches 500 or --searches 100,500,2000)`);
    return x;
  });
  const runs: ScaleResult[] = [];
  for (const searches of sizes) {
    runs.push(
      await runOperatorScale({
        searches,
        quietSeconds: num('quiet-seconds', 60),
        simulateSeconds: num('simulate-seconds', 2),
        workers: Math.round(num('workers', DEFAULT_WORKERS)),
        cpuProfileDir: flags.get('cpu-prof'),
        nodeOptions: flags.has('node-options') ? flags.get('node-options')!.split(/\s+/).filter(Boolean) : undefined,
        log: (line) => console.error(`[operator-scale N=${searches} ${new Date().toISOString().slice(11, 19)}] ${line}`),
      }),
    );
  }
  const result: ScaleRuns = { benchmark: 'operator-scale', date: new Date().toISOString(), machine: machine(), runs };
  console.log(JSON.stringify(result, null, 2));
  if (flags.get('no-write') !== 'true') {
    const out = path.join(repoRoot, 'test/bench/results/operator-scale.json');
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    updateBenchmarksMd('operator-scale', markdown(result));
    console.error(`wrote ${out} and BENCHMARKS.md`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
      process.exit(1);
    },
  );
}
