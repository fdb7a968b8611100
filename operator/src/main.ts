// `iacnas operator`: runs the IACSearch controller against a cluster, in a pod (service
// account) or outside one (--kubeconfig). Every replica serves /healthz, /readyz and
// /metrics; with --leader-elect only the replica holding the Lease reconciles.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { Controller } from './controller/controller.ts';
import { SetController } from './controller/set-controller.ts';
import { reconcileSet } from './fleet/index.ts';
import { LeaderElector } from './controller/leader.ts';
import { createLogger, parseLogLevel, type Logger } from './controller/log.ts';
import { buildApp } from './http/app.ts';
import { HttpKubeApi, loadKubeConfig } from './k8s/client.ts';
import { EventRecorder } from './k8s/events.ts';
import type { KubeApi } from './k8s/types.ts';
import { OperatorMetrics } from './metrics/registry.ts';
import { reconcile } from './reconcile/index.ts';
import {
  DEFAULT_NODE_SELECTOR_KEYS,
  DEFAULT_TOLERATIONS,
  formatAllowedToleration,
  imageRepository,
  parseAllowedToleration,
  type PodPolicy,
} from './reconcile/policy.ts';

export const DEFAULT_TRAINER_IMAGE = 'iac-operator/trainer-gpu:0.1.0';
/** Concurrent reconciles: a reconcile mostly waits on the API server (docs/operator-scale.md). */
export const DEFAULT_WORKERS = 8;

export const usage = `usage: iacnas operator [options]

Runs the IACSearch operator. In a pod it uses the pod's service account; outside a
cluster it uses --kubeconfig, else $KUBECONFIG, else ~/.kube/config.

options:
  --kubeconfig <file>                 kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)
  --context <name>                    kubeconfig context (default: the current one)
  --namespaces <a,b,...>              watch only these namespaces (default: all); lets the
                                      operator run with namespaced RBAC
  --workers <n>                       concurrent reconciles (default ${DEFAULT_WORKERS})
  --host <address>                    HTTP listen address (default 0.0.0.0)
  --port <n>                          HTTP port of /metrics, /healthz, /readyz, /v1/progress (default 8080)
  --progress-url <url>                URL trainer pods POST progress to (default: with POD_NAMESPACE set,
                                      http://<service-name>.<POD_NAMESPACE>.svc:<port>/v1/progress; else none)
  --service-name <name>               Service of the operator, for the default --progress-url (default iac-operator)
  --trainer-image <image>             trainer image for searches without spec.image
                                      (default ${DEFAULT_TRAINER_IMAGE})
  --allowed-images <a,b,...>          image patterns a spec.image may match ([registry/]repo[:tag][@digest],
                                      '*' within a path segment, '**' across; no tag or digest: any)
                                      (default: the --trainer-image repository, any tag or digest)
  --allowed-priority-classes <a,...>  priorityClassName values a search may set (default: none, only empty)
  --allowed-node-selector-keys <a,...>
                                      nodeSelector key patterns a search may set; empty: none
                                      (default ${DEFAULT_NODE_SELECTOR_KEYS.join(',')})
  --allowed-tolerations <a,...>       tolerations a search may set, each key[=value][:effect]; a search's
                                      toleration must be as narrow as one of them; empty: none
                                      (default ${DEFAULT_TOLERATIONS.join(',')})
  --advertise-address <ip>            address other replicas reach this one at; a standby forwards
                                      progress to the leader's (default $POD_IP; none: a standby answers 503)
  --progress-interval <duration>      write progress and other news (messages, running GPU-seconds) into a
                                      search's status at most this often; transitions at once (default 1m)
  --progress-body-limit <bytes>       largest progress request body (default 65536)
  --http-headers-timeout <duration>   until a request's headers are in (default 10s)
  --http-request-timeout <duration>   until a whole request is in, body included; then 408 (default 30s)
  --http-idle-timeout <duration>      close a socket without traffic after this long (default 60s)
  --http-keepalive-timeout <duration> close a kept-alive connection without a new request (default 15s)
  --progress-rate-per-client <n/s>    progress requests per second per client address, before any
                                      token check; bursts of twice that (default 100)
  --progress-rate-total <n/s>         progress requests per second from all clients (default 500)
  --phase-events                      a Normal event at every phase start and end and at success (default
                                      off: Normal events only for suspend, resume and a retry; Warnings
                                      always; phase changes and the outcome are in the status either way)
  --leader-elect                      elect a leader on a Lease; only the leader reconciles (default off;
                                      --leader-elect=false also turns it off: one replica needs none)
  --leader-election-namespace <ns>    namespace of the Lease (default $POD_NAMESPACE, else default)
  --leader-election-lease <name>      name of the Lease (default iac-operator-leader)
  --leader-election-identity <id>     this replica's identity (default $POD_NAME, else hostname + random suffix)
  --lease-duration <duration>         how long a lease is valid without renewal (default 15s)
  --renew-deadline <duration>         the leader stops when it could not renew for this long (default 10s)
  --retry-period <duration>           time between lease attempts (default 2s)
  --shutdown-timeout <duration>       on SIGTERM, wait this long for reconciles in flight (default 20s)
  --log-level <debug|info|warn|error> (default info); logs are JSON lines on stderr
  -h, --help                          show this help

Durations are a number with a unit: 500ms, 15s, 2m.`;

/** "15s", "500ms", "2m", "1h" -> milliseconds. */
export function parseDuration(flag: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim());
  if (!m) throw new Error(`${flag}: expected a duration such as 500ms, 15s or 2m, got '${value}'`);
  const n = Number(m[1]);
  return n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

function parseIntFlag(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag}: expected a whole number from ${min} to ${max}, got '${value}'`);
  return n;
}

/** "a, b,,c" -> ["a", "b", "c"]; "" -> []. */
function csv(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** http://<address>:<port>, with IPv6 addresses in brackets. */
export function advertiseURL(address: string | undefined, port: number): string | undefined {
  if (!address) return undefined;
  return `http://${address.includes(':') && !address.startsWith('[') ? `[${address}]` : address}:${port}`;
}

export const LEADER_URL_ANNOTATION = 'iac.dev/leader-url';

export interface OperatorConfig {
  kubeconfig?: string;
  context?: string;
  namespaces?: string[];
  workers: number;
  host: string;
  port: number;
  progressURL?: string;
  trainerImage: string;
  /** What a search may ask of its pods (docs/pod-policy.md). */
  policy: PodPolicy;
  /** Address of this replica for the other replicas (standbys forward progress to the leader's). */
  advertiseAddress?: string;
  progressIntervalMs: number;
  progressBodyLimit: number;
  /** A Normal event at every phase start and end. */
  phaseEvents: boolean;
  /** HTTP timeouts (ms) and progress rate limits (requests per second) of the endpoint. */
  http: { headersMs: number; requestMs: number; idleMs: number; keepAliveMs: number; perClient: number; total: number };
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  shutdownTimeoutMs: number;
  logLevel: ReturnType<typeof parseLogLevel>;
}

/** The flags of `iacnas operator` (every one is documented in `usage`). */
export const OPTIONS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespaces: { type: 'string' },
  workers: { type: 'string', default: String(DEFAULT_WORKERS) },
  host: { type: 'string', default: '0.0.0.0' },
  port: { type: 'string', default: '8080' },
  'progress-url': { type: 'string' },
  'service-name': { type: 'string', default: 'iac-operator' },
  'trainer-image': { type: 'string', default: DEFAULT_TRAINER_IMAGE },
  'allowed-images': { type: 'string' },
  'allowed-priority-classes': { type: 'string', default: '' },
  'allowed-node-selector-keys': { type: 'string', default: DEFAULT_NODE_SELECTOR_KEYS.join(',') },
  'allowed-tolerations': { type: 'string', default: DEFAULT_TOLERATIONS.join(',') },
  'advertise-address': { type: 'string' },
  'progress-interval': { type: 'string', default: '1m' },
  'progress-body-limit': { type: 'string', default: '65536' },
  'http-headers-timeout': { type: 'string', default: '10s' },
  'http-request-timeout': { type: 'string', default: '30s' },
  'http-idle-timeout': { type: 'string', default: '60s' },
  'http-keepalive-timeout': { type: 'string', default: '15s' },
  'progress-rate-per-client': { type: 'string', default: '100' },
  'progress-rate-total': { type: 'string', default: '500' },
  'phase-events': { type: 'boolean', default: false },
  'leader-elect': { type: 'boolean', default: false },
  'leader-election-namespace': { type: 'string' },
  'leader-election-lease': { type: 'string', default: 'iac-operator-leader' },
  'leader-election-identity': { type: 'string' },
  'lease-duration': { type: 'string', default: '15s' },
  'renew-deadline': { type: 'string', default: '10s' },
  'retry-period': { type: 'string', default: '2s' },
  'shutdown-timeout': { type: 'string', default: '20s' },
  'log-level': { type: 'string', default: 'info' },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

/** Parses the command line; throws an Error naming the bad flag. `help` when asked for. */
/**
 * `--flag=true` and `--flag=false` for the boolean flags (as Go's flag package accepts
 * them, e.g. `--leader-elect=false` in a manifest): the first is the flag, the second
 * leaves it out.
 */
function booleanValues(argv: string[]): string[] {
  const out: string[] = [];
  for (const arg of argv) {
    const m = /^--([a-z-]+)=(.*)$/.exec(arg);
    const option = m && (OPTIONS as Record<string, { type: string }>)[m[1]];
    if (!m || option?.type !== 'boolean') {
      out.push(arg);
      continue;
    }
    if (m[2] === 'true') out.push(`--${m[1]}`);
    else if (m[2] !== 'false') throw new Error(`--${m[1]}: expected true or false, got '${m[2]}'`);
  }
  return out;
}

export function parseOperatorArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): OperatorConfig | 'help' {
  const { values, positionals } = parseArgs({
    args: booleanValues(argv),
    allowPositionals: true,
    strict: true,
    options: OPTIONS,
  });
  if (values.help) return 'help';
  if (positionals.length) throw new Error(`unexpected argument '${positionals[0]}' (iacnas operator takes only options)`);
  const port = parseIntFlag('--port', values.port!, 1, 65535);
  const namespaces = values.namespaces
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const ns of namespaces ?? []) {
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns)) throw new Error(`--namespaces: '${ns}' is not a namespace name (lowercase letters, digits and '-')`);
  }
  let progressURL = values['progress-url'];
  if (progressURL === undefined && env.POD_NAMESPACE) {
    progressURL = `http://${values['service-name']}.${env.POD_NAMESPACE}.svc:${port}/v1/progress`;
  }
  if (progressURL) {
    try {
      new URL(progressURL);
    } catch {
      throw new Error(`--progress-url: '${progressURL}' is not a URL (e.g. http://iac-operator.iac-system.svc:8080/v1/progress)`);
    }
  }
  const cfg: OperatorConfig = {
    kubeconfig: values.kubeconfig,
    context: values.context,
    namespaces: namespaces?.length ? namespaces : undefined,
    workers: parseIntFlag('--workers', values.workers!, 1, 64),
    host: values.host!,
    port,
    progressURL: progressURL || undefined,
    trainerImage: values['trainer-image']!,
    policy: {
      allowedImages: values['allowed-images'] !== undefined ? csv(values['allowed-images']) : [imageRepository(values['trainer-image']!)],
      allowedPriorityClasses: csv(values['allowed-priority-classes']!),
      allowedNodeSelectorKeys: csv(values['allowed-node-selector-keys']!),
      allowedTolerations: csv(values['allowed-tolerations']!).map((t) => {
        try {
          return parseAllowedToleration(t);
        } catch (err) {
          throw new Error(`--allowed-tolerations: ${(err as Error).message} (e.g. nvidia.com/gpu or dedicated=ml:NoSchedule)`);
        }
      }),
    },
    advertiseAddress: values['advertise-address'] ?? (env.POD_IP || undefined),
    progressIntervalMs: parseDuration('--progress-interval', values['progress-interval']!),
    progressBodyLimit: parseIntFlag('--progress-body-limit', values['progress-body-limit']!, 1024, 16 * 1024 * 1024),
    http: {
      headersMs: parseDuration('--http-headers-timeout', values['http-headers-timeout']!),
      requestMs: parseDuration('--http-request-timeout', values['http-request-timeout']!),
      idleMs: parseDuration('--http-idle-timeout', values['http-idle-timeout']!),
      keepAliveMs: parseDuration('--http-keepalive-timeout', values['http-keepalive-timeout']!),
      perClient: parseIntFlag('--progress-rate-per-client', values['progress-rate-per-client']!, 1, 1_000_000),
      total: parseIntFlag('--progress-rate-total', values['progress-rate-total']!, 1, 10_000_000),
    },
    phaseEvents: values['phase-events']!,
    leaderElect: values['leader-elect']!,
    leaseNamespace: values['leader-election-namespace'] || env.POD_NAMESPACE || 'default',
    leaseName: values['leader-election-lease']!,
    identity: values['leader-election-identity'] || env.POD_NAME || `${hostname()}_${randomBytes(4).toString('hex')}`,
    leaseDurationMs: parseDuration('--lease-duration', values['lease-duration']!),
    renewDeadlineMs: parseDuration('--renew-deadline', values['renew-deadline']!),
    retryPeriodMs: parseDuration('--retry-period', values['retry-period']!),
    shutdownTimeoutMs: parseDuration('--shutdown-timeout', values['shutdown-timeout']!),
    logLevel: parseLogLevel(values['log-level']!),
  };
  if (!cfg.trainerImage) throw new Error('--trainer-image: must not be empty');
  for (const image of cfg.policy.allowedImages) {
    if (/\s/.test(image)) throw new Error(`--allowed-images: '${image}' is not an image pattern`);
  }
  if (cfg.leaderElect && !(cfg.retryPeriodMs < cfg.renewDeadlineMs && cfg.renewDeadlineMs < cfg.leaseDurationMs)) {
    throw new Error('--retry-period < --renew-deadline < --lease-duration must hold (defaults 2s, 10s, 15s)');
  }
  return cfg;
}

export interface RunningOperator {
  controller: Controller;
  /** The IACSearchSet controller (docs/fleets.md), started and stopped with the search controller. */
  sets: SetController;
  elector?: LeaderElector;
  /** The HTTP address it listens on. */
  address: string;
  /** Graceful stop: no new keys, in-flight ones finished within the bound, lease released. */
  stop(): Promise<void>;
}

/** Starts the operator on an API (a real cluster or a fake) and returns a handle. */
export async function startOperator(cfg: OperatorConfig, api: KubeApi, log: Logger): Promise<RunningOperator> {
  let elector: LeaderElector | undefined;
  let controller!: Controller;
  let sets!: SetController;
  const leading = () => !cfg.leaderElect || (elector?.isLeader() ?? false);
  const metrics = new OperatorMetrics(
    {
      searches: () => controller.searches.list(),
      sets: () => sets.sets.list(),
      exportsSearchMetrics: leading,
      queueDepth: () => controller.queueDepth(),
    },
    { processMetrics: true },
  );
  const events = new EventRecorder(api, { instance: cfg.identity });
  controller = new Controller({
    api,
    reconcile,
    settings: { progressURL: cfg.progressURL, defaultImage: cfg.trainerImage, policy: cfg.policy, phaseEvents: cfg.phaseEvents },
    namespaces: cfg.namespaces,
    workers: cfg.workers,
    metrics,
    events,
    log,
    progressIntervalMs: cfg.progressIntervalMs,
  });
  sets = new SetController({ api, reconcile: reconcileSet, searches: controller.searches, namespaces: cfg.namespaces, workers: 2, events, log });
  const app = buildApp({
    metrics,
    // Not the sets: an operator upgraded before its IACSearchSet CRD still runs searches.
    isReady: () => controller.hasSynced(),
    bodyLimit: cfg.progressBodyLimit,
    timeouts: {
      headersMs: Math.min(cfg.http.headersMs, cfg.http.requestMs),
      requestMs: cfg.http.requestMs,
      idleMs: cfg.http.idleMs,
      keepAliveMs: cfg.http.keepAliveMs,
    },
    clientRateLimit: { burst: 2 * cfg.http.perClient, perSecond: cfg.http.perClient },
    globalRateLimit: { burst: 2 * cfg.http.total, perSecond: cfg.http.total },
    log,
    progress: {
      accepting: () => leading() && controller.isRunning(),
      leaderURL: () => elector?.holderAnnotation(LEADER_URL_ANNOTATION),
      checkToken: (ns, name, token) => controller.checkProgressToken(ns, name, token),
      accept: (ns, name, event) => controller.acceptProgress(ns, name, event),
    },
  });
  const address = await app.listen({ host: cfg.host, port: cfg.port });
  const ownURL = advertiseURL(cfg.advertiseAddress, (app.server.address() as { port: number }).port);
  controller.startInformers();
  sets.startInformers();

  if (cfg.leaderElect) {
    elector = new LeaderElector(api, {
      namespace: cfg.leaseNamespace,
      name: cfg.leaseName,
      identity: cfg.identity,
      leaseDurationMs: cfg.leaseDurationMs,
      renewDeadlineMs: cfg.renewDeadlineMs,
      retryPeriodMs: cfg.retryPeriodMs,
      annotations: ownURL ? { [LEADER_URL_ANNOTATION]: ownURL } : undefined,
      log,
      onStartedLeading: () => {
        metrics.setLeader(true);
        controller.startWorkers();
        sets.startWorkers();
      },
      onStoppedLeading: () => {
        metrics.setLeader(false);
        void controller.stopWorkers(cfg.shutdownTimeoutMs);
        void sets.stopWorkers(cfg.shutdownTimeoutMs);
      },
    });
    metrics.setLeader(false);
    elector.start();
  } else {
    metrics.setLeader(true);
    controller.startWorkers();
    sets.startWorkers();
  }
  log.info('operator started', {
    address,
    namespaces: cfg.namespaces ?? 'all',
    leaderElection: cfg.leaderElect ? `${cfg.leaseNamespace}/${cfg.leaseName}` : 'off',
    identity: cfg.identity,
    progressURL: cfg.progressURL ?? '',
    allowedImages: cfg.policy.allowedImages.join(','),
    allowedPriorityClasses: cfg.policy.allowedPriorityClasses.join(','),
    allowedNodeSelectorKeys: cfg.policy.allowedNodeSelectorKeys.join(','),
    allowedTolerations: cfg.policy.allowedTolerations.map(formatAllowedToleration).join(','),
  });

  let stopping: Promise<void> | undefined;
  return {
    controller,
    sets,
    elector,
    address,
    stop: () =>
      (stopping ??= (async () => {
        const [drained] = await Promise.all([controller.shutdown(cfg.shutdownTimeoutMs), sets.shutdown(cfg.shutdownTimeoutMs)]);
        if (!drained) log.warn('shutdown: reconciles still in flight after the timeout', { timeoutMs: cfg.shutdownTimeoutMs });
        await elector?.stop({ release: true });
        metrics.setLeader(false);
        await app.close();
        log.info('operator stopped');
      })()),
  };
}

export async function main(argv: string[]): Promise<number> {
  let cfg: OperatorConfig | 'help';
  try {
    cfg = parseOperatorArgs(argv);
  } catch (err) {
    console.error(`iacnas operator: ${err instanceof Error ? err.message : String(err)}\n\nRun 'iacnas operator --help' for the options.`);
    return 2;
  }
  if (cfg === 'help') {
    console.log(usage);
    return 0;
  }
  const log = createLogger({ level: cfg.logLevel });
  let api: HttpKubeApi;
  try {
    api = new HttpKubeApi(loadKubeConfig({ kubeconfig: cfg.kubeconfig, context: cfg.context }));
  } catch (err) {
    log.error('cannot load the Kubernetes configuration', { error: err instanceof Error ? err.message : String(err) });
    return 2;
  }
  const op = await startOperator(cfg, api, log);
  return new Promise<number>((resolve) => {
    const onSignal = (signal: string) => {
      log.info('shutting down', { signal });
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      op.stop().then(
        () => api.close().then(() => resolve(0)),
        (err) => {
          log.error('shutdown failed', { error: err instanceof Error ? err.message : String(err) });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
