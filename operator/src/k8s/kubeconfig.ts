// Where the operator's connection to the API server comes from: a kubeconfig file or the
// pod's service account, resolved to one server, its TLS settings and a credential
// source. What client-go (kubectl, controller-runtime) accepts, less what an operator
// does not need: legacy auth-provider plugins, impersonation, proxies.
//
// Sources, in order: --kubeconfig; in a pod, the service account; $KUBECONFIG (a list of
// files merged as kubectl merges them: the first file that names a cluster, user or
// context wins); ~/.kube/config. File paths in a kubeconfig are relative to its directory.
//
// Credentials are read when a request needs them, not once: the service account's token
// file is re-read at most once a minute (kubelet rotates bound tokens), certificate and
// key files when their modification time changes, and exec plugins run again when their
// credential expires or the API server answers 401.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { homedir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** How often a token file is read again (client-go's cachingTokenSource does so every minute). */
const TOKEN_FILE_REREAD_MS = 60_000;
/** An exec plugin that has not answered by then is killed. */
const EXEC_TIMEOUT_MS = 60_000;
const EXEC_API_VERSIONS = new Set(['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1']);

const FIX = 'pass --kubeconfig <file>, set KUBECONFIG, or run in a pod with a service account';

export interface LoadKubeConfigOptions {
  /** Path of a kubeconfig file; without it: in-cluster service account, else $KUBECONFIG, else ~/.kube/config. */
  kubeconfig?: string;
  /** Context of the kubeconfig to use (default: its current-context). */
  context?: string;
  /** KUBECONFIG, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT come from here (default: process.env). */
  env?: Record<string, string | undefined>;
  /** The service account's token, ca.crt and namespace (default: /var/run/secrets/kubernetes.io/serviceaccount). */
  serviceAccountDir?: string;
  /** Where ~/.kube/config is looked for (default: the user's home directory). */
  homeDir?: string;
}

/** TLS settings of the connections, as node:tls takes them. */
export interface TlsMaterial {
  /** PEM; undefined: the system's root certificates. */
  ca?: Buffer | string;
  cert?: Buffer | string;
  key?: Buffer | string;
  rejectUnauthorized: boolean;
  /** SNI and the name the server certificate is checked against (tls-server-name). */
  servername?: string;
}

/** What one request authenticates with. */
export interface Credentials {
  /** The Authorization header, if any. */
  authorization?: string;
  tls: TlsMaterial;
  /** Changes exactly when `tls` does: connections made with older material are replaced. */
  tlsGeneration: number;
}

interface ExecConfig {
  apiVersion: string;
  command: string;
  args: string[];
  env: { name: string; value: string }[];
  installHint?: string;
  provideClusterInfo: boolean;
}

interface ClusterConfig {
  name: string;
  server: string;
  caData?: Buffer;
  caFile?: string;
  insecureSkipTLSVerify: boolean;
  tlsServerName?: string;
  /** extensions[client.authentication.k8s.io/exec], handed to exec plugins that ask for cluster info. */
  execExtension?: unknown;
}

interface UserConfig {
  name: string;
  token?: string;
  tokenFile?: string;
  username?: string;
  password?: string;
  certData?: Buffer;
  certFile?: string;
  keyData?: Buffer;
  keyFile?: string;
  exec?: ExecConfig;
}

type Raw = Record<string, unknown>;

/** A file read again only when its modification time (or inode) changes. */
class WatchedFile {
  readonly path: string;
  private stamp = '';
  private content?: Buffer;

  constructor(file: string) {
    this.path = file;
  }

  read(): Buffer {
    let stamp: string;
    try {
      const st = statSync(this.path);
      stamp = `${st.mtimeMs}:${st.ino}:${st.size}`;
    } catch (err) {
      // A rotation that briefly removes the file: keep what was read before.
      if (this.content) return this.content;
      throw new Error(`cannot read ${this.path}: ${messageOf(err)}`);
    }
    if (stamp !== this.stamp || !this.content) {
      try {
        this.content = readFileSync(this.path);
        this.stamp = stamp;
      } catch (err) {
        if (!this.content) throw new Error(`cannot read ${this.path}: ${messageOf(err)}`);
      }
    }
    return this.content!;
  }
}

/** A bearer token file (a service account's projected token), read again at most once a minute. */
class TokenFile {
  private readonly file: string;
  private token = '';
  private readAt = -Infinity;

  constructor(file: string) {
    this.file = file;
  }

  get(now = Date.now()): string {
    if (now - this.readAt >= TOKEN_FILE_REREAD_MS) this.reread(now);
    return this.token;
  }

  /** Reads the file now (after a 401). */
  reread(now = Date.now()): void {
    try {
      this.token = readFileSync(this.file, 'utf8').trim();
      this.readAt = now;
    } catch (err) {
      // kubelet replaces the file atomically; a failed read keeps the last token (as client-go does)
      if (!this.token) throw new Error(`cannot read token file ${this.file}: ${messageOf(err)}`);
      this.readAt = now;
    }
  }
}

interface ExecCredential {
  token?: string;
  cert?: string;
  key?: string;
  /** ms since the epoch; undefined: valid until the API server refuses it. */
  expiresAt?: number;
}

/** A client-go exec credential plugin (client.authentication.k8s.io/v1 or v1beta1). */
class ExecPlugin {
  private readonly exec: ExecConfig;
  private readonly userName: string;
  private readonly cluster: ClusterConfig;
  private cached?: ExecCredential;
  private running?: Promise<ExecCredential>;
  /** How often the plugin ran (tests). */
  runs = 0;

  constructor(exec: ExecConfig, userName: string, cluster: ClusterConfig) {
    this.exec = exec;
    this.userName = userName;
    this.cluster = cluster;
  }

  async get(): Promise<ExecCredential> {
    const c = this.cached;
    if (c && (c.expiresAt === undefined || Date.now() < c.expiresAt)) return c;
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Forgets the credential, unless a newer one replaced it already. */
  invalidate(used: ExecCredential): void {
    if (this.cached === used) this.cached = undefined;
  }

  current(): ExecCredential | undefined {
    return this.cached;
  }

  private info(): string {
    const spec: Raw = { interactive: false };
    if (this.exec.provideClusterInfo) {
      const c = this.cluster;
      spec.cluster = {
        server: c.server,
        ...(c.tlsServerName ? { 'tls-server-name': c.tlsServerName } : {}),
        ...(c.insecureSkipTLSVerify ? { 'insecure-skip-tls-verify': true } : {}),
        ...(c.caData
          ? { 'certificate-authority-data': c.caData.toString('base64') }
          : c.caFile && existsSync(c.caFile)
            ? { 'certificate-authority-data': readFileSync(c.caFile).toString('base64') }
            : {}),
        ...(c.execExtension !== undefined ? { config: c.execExtension } : {}),
      };
    }
    return JSON.stringify({ apiVersion: this.exec.apiVersion, kind: 'ExecCredential', spec });
  }

  private run(): Promise<ExecCredential> {
    const { command, args, apiVersion, installHint } = this.exec;
    const who = `exec plugin "${command}" of user "${this.userName}"`;
    const env: Record<string, string | undefined> = { ...process.env };
    for (const e of this.exec.env) env[e.name] = e.value;
    env.KUBERNETES_EXEC_INFO = this.info();
    this.runs++;
    return new Promise((resolve, reject) => {
      const child = execFile(command, args, { env, timeout: EXEC_TIMEOUT_MS, maxBuffer: 4 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown };
          if (e.code === 'ENOENT') return reject(new Error(`${who} not found${installHint ? `: ${installHint.trim()}` : ' (is it installed and on PATH?)'}`));
          if (e.killed) return reject(new Error(`${who} did not answer within ${EXEC_TIMEOUT_MS / 1000} s`));
          const detail = stderr.trim().slice(-1000) || e.message;
          return reject(new Error(`${who} failed${typeof e.code === 'number' ? ` (exit ${e.code})` : ''}: ${detail}`));
        }
        let out: { apiVersion?: string; kind?: string; status?: Raw };
        try {
          out = JSON.parse(stdout);
        } catch (parseErr) {
          return reject(new Error(`${who} printed no ExecCredential JSON: ${messageOf(parseErr)}`));
        }
        if (out?.kind !== 'ExecCredential' || out.apiVersion !== apiVersion) {
          return reject(new Error(`${who} printed ${out?.apiVersion ?? '?'} ${out?.kind ?? '?'}, expected ${apiVersion} ExecCredential`));
        }
        const s = out.status ?? {};
        const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
        const cred: ExecCredential = { token: str(s.token), cert: str(s.clientCertificateData), key: str(s.clientKeyData) };
        if (!cred.token && !cred.cert) return reject(new Error(`${who} returned neither status.token nor status.clientCertificateData`));
        if (!cred.cert !== !cred.key) return reject(new Error(`${who} returned only one of status.clientCertificateData and status.clientKeyData`));
        if (str(s.expirationTimestamp)) {
          const t = Date.parse(s.expirationTimestamp as string);
          if (Number.isNaN(t)) return reject(new Error(`${who} returned an invalid status.expirationTimestamp ${JSON.stringify(s.expirationTimestamp)}`));
          cred.expiresAt = t;
        }
        this.cached = cred;
        resolve(cred);
      });
      child.stdin?.end(); // never interactive
    });
  }
}

/** The resolved connection settings: one server, its TLS settings and the user's credentials. */
export class KubeConfig {
  /** Where the settings came from, e.g. "--kubeconfig /etc/op.yaml" or "the in-cluster service account". */
  readonly source: string;
  readonly contextName: string;
  /** The API server's URL, without a trailing slash. */
  readonly server: string;
  /** The context's namespace (in a pod: the service account's namespace). */
  readonly namespace: string | undefined;
  readonly cluster: Readonly<ClusterConfig>;
  readonly user: Readonly<UserConfig>;
  private readonly caFile?: WatchedFile;
  private readonly certFile?: WatchedFile;
  private readonly keyFile?: WatchedFile;
  private readonly tokenFile?: TokenFile;
  readonly execPlugin?: ExecPlugin;
  private lastTls?: TlsMaterial;
  private tlsGeneration = 0;

  constructor(init: { source: string; contextName: string; namespace?: string; cluster: ClusterConfig; user: UserConfig }) {
    this.source = init.source;
    this.contextName = init.contextName;
    this.namespace = init.namespace || undefined;
    this.cluster = init.cluster;
    this.user = init.user;
    this.server = init.cluster.server.replace(/\/+$/, '');
    const c = init.cluster;
    const u = init.user;
    if (!c.caData && c.caFile) this.caFile = new WatchedFile(c.caFile);
    if (!u.certData && u.certFile) this.certFile = new WatchedFile(u.certFile);
    if (!u.keyData && u.keyFile) this.keyFile = new WatchedFile(u.keyFile);
    if (u.tokenFile) this.tokenFile = new TokenFile(u.tokenFile);
    if (u.exec) this.execPlugin = new ExecPlugin(u.exec, u.name, c);
    // Fail now, with the source in the message, on files that cannot be read.
    this.caFile?.read();
    this.certFile?.read();
    this.keyFile?.read();
    this.tokenFile?.get();
  }

  /** The credentials for the next request: cheap when nothing changed (a stat per file). */
  async credentials(): Promise<Credentials> {
    const u = this.user;
    const exec = this.execPlugin ? await this.execPlugin.get() : undefined;
    let authorization: string | undefined;
    // client-go: a token file, once read, takes precedence over a token; a static token over an exec plugin's
    if (this.tokenFile) authorization = `Bearer ${this.tokenFile.get()}`;
    else if (u.token) authorization = `Bearer ${u.token}`;
    else if (u.username !== undefined || u.password !== undefined) {
      authorization = `Basic ${Buffer.from(`${u.username ?? ''}:${u.password ?? ''}`).toString('base64')}`;
    } else if (exec?.token) authorization = `Bearer ${exec.token}`;
    const tls: TlsMaterial = {
      ca: this.cluster.insecureSkipTLSVerify ? undefined : (this.cluster.caData ?? this.caFile?.read()),
      cert: exec?.cert ?? u.certData ?? this.certFile?.read(),
      key: exec?.key ?? u.keyData ?? this.keyFile?.read(),
      rejectUnauthorized: !this.cluster.insecureSkipTLSVerify,
      servername: this.cluster.tlsServerName,
    };
    const last = this.lastTls;
    // Buffers compare by identity: a WatchedFile hands out the same one until the file changes.
    if (!last || last.ca !== tls.ca || last.cert !== tls.cert || last.key !== tls.key) {
      this.lastTls = tls;
      this.tlsGeneration++;
    }
    return { authorization, tls: this.lastTls!, tlsGeneration: this.tlsGeneration };
  }

  /**
   * The API server answered 401 to a request made with `used`: drop what may have expired
   * (an exec plugin's credential, a token file's token). True when the next credentials()
   * may differ, so that the request is worth one more try.
   */
  unauthorized(used: Credentials): boolean {
    if (this.tokenFile) {
      this.tokenFile.reread();
      return true;
    }
    if (this.execPlugin) {
      // Only the credential the failed request used is dropped: concurrent 401s run the plugin once.
      const current = this.execPlugin.current();
      if (current && ((current.token && used.authorization === `Bearer ${current.token}`) || (current.cert && used.tls.cert === current.cert))) {
        this.execPlugin.invalidate(current);
      }
      return true;
    }
    return false;
  }
}

/** The namespace of the pod this process runs in, when in a cluster. */
export function inClusterNamespace(): string | undefined {
  return process.env.POD_NAMESPACE || undefined;
}

export function loadKubeConfig(opts: LoadKubeConfigOptions = {}): KubeConfig {
  const env = opts.env ?? process.env;
  const saDir = opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  if (opts.kubeconfig) return fromFiles([opts.kubeconfig], `--kubeconfig ${opts.kubeconfig}`, opts.context, true);
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT && existsSync(path.join(saDir, 'token'))) {
    if (opts.context)
      throw new Error(`--context ${opts.context} needs a kubeconfig: in a pod the operator uses its service account (pass --kubeconfig <file> as well)`);
    return inCluster(env.KUBERNETES_SERVICE_HOST, env.KUBERNETES_SERVICE_PORT, saDir);
  }
  if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(path.delimiter).filter((f) => f !== '');
    // kubectl skips the files of the list that do not exist
    const present = files.filter((f) => existsSync(f));
    if (present.length === 0) throw new Error(`no Kubernetes cluster configured: none of the files in KUBECONFIG=${env.KUBECONFIG} exists; ${FIX}`);
    return fromFiles(present, `KUBECONFIG=${env.KUBECONFIG}`, opts.context, false);
  }
  const home = opts.homeDir ?? env.HOME ?? homedir();
  const file = path.join(home, '.kube', 'config');
  if (home && existsSync(file)) return fromFiles([file], file, opts.context, false);
  throw new Error(`no Kubernetes cluster configured: ${FIX}`);
}

function inCluster(host: string, port: string, dir: string): KubeConfig {
  const source = `the in-cluster service account (${dir})`;
  const caFile = path.join(dir, 'ca.crt');
  const nsFile = path.join(dir, 'namespace');
  try {
    return new KubeConfig({
      source,
      contextName: 'in-cluster',
      namespace: existsSync(nsFile) ? readFileSync(nsFile, 'utf8').trim() : undefined,
      // client-go: without a readable ca.crt, the system's roots
      cluster: {
        name: 'in-cluster',
        server: `https://${isIPv6(host) ? `[${host}]` : host}:${port}`,
        caFile: existsSync(caFile) ? caFile : undefined,
        insecureSkipTLSVerify: false,
      },
      user: { name: 'in-cluster', tokenFile: path.join(dir, 'token') },
    });
  } catch (err) {
    throw new Error(`cannot load ${source}: ${messageOf(err)}`);
  }
}

interface Merged {
  clusters: Map<string, ClusterConfig>;
  users: Map<string, UserConfig>;
  contexts: Map<string, { cluster?: string; user?: string; namespace?: string }>;
  currentContext?: string;
}

function fromFiles(files: string[], source: string, context: string | undefined, explicit: boolean): KubeConfig {
  const merged: Merged = { clusters: new Map(), users: new Map(), contexts: new Map() };
  for (const file of files) {
    let doc: unknown;
    try {
      doc = parseYaml(readFileSync(file, 'utf8'));
    } catch (err) {
      const what = explicit || files.length === 1 ? '' : `${file}: `;
      throw new Error(`cannot load ${source}: ${what}${messageOf(err)} (${FIX})`);
    }
    try {
      mergeFile(merged, doc ?? {}, path.dirname(path.resolve(file)));
    } catch (err) {
      throw new Error(`cannot load ${source}${files.length > 1 ? ` (${file})` : ''}: ${messageOf(err)}`);
    }
  }
  const contextNames = [...merged.contexts.keys()];
  const listed = contextNames.length ? contextNames.join(', ') : 'none';
  const name = context ?? merged.currentContext;
  if (!name) {
    if (contextNames.length === 0) throw new Error(`no Kubernetes cluster configured: ${source} defines no context; ${FIX}`);
    throw new Error(`${source} has no current-context: pass --context <name> (its contexts: ${listed})`);
  }
  const ctx = merged.contexts.get(name);
  if (!ctx) {
    if (context) throw new Error(`--context ${context}: no such context in ${source} (its contexts: ${listed})`);
    throw new Error(`cannot load ${source}: its current-context "${name}" is not among its contexts (${listed}); pass --context <name> or fix current-context`);
  }
  const cluster = ctx.cluster ? merged.clusters.get(ctx.cluster) : undefined;
  if (!cluster) throw new Error(`cannot load ${source}: context "${name}" names cluster "${ctx.cluster ?? ''}", which it does not define`);
  let user: UserConfig = { name: '' };
  if (ctx.user) {
    const u = merged.users.get(ctx.user);
    if (!u) throw new Error(`cannot load ${source}: context "${name}" names user "${ctx.user}", which it does not define`);
    user = u;
  }
  try {
    return new KubeConfig({ source, contextName: name, namespace: ctx.namespace, cluster, user });
  } catch (err) {
    throw new Error(`cannot load ${source}: ${messageOf(err)}`);
  }
}

function entries(doc: Raw, key: string): { name: string; body: Raw }[] {
  const list = doc[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new Error(`"${key}" is not a list`);
  const field = key.slice(0, -1); // clusters -> cluster
  return list.map((e: unknown, i) => {
    const o = (e ?? {}) as Raw;
    if (typeof o.name !== 'string' || !o.name) throw new Error(`${key}[${i}] has no name`);
    const body = o[field] ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) throw new Error(`${field} "${o.name}" is not a mapping`);
    return { name: o.name, body: body as Raw };
  });
}

function mergeFile(into: Merged, doc: unknown, dir: string): void {
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a kubeconfig (expected a mapping)');
  const d = doc as Raw;
  const abs = (p: unknown) => (typeof p === 'string' && p !== '' ? path.resolve(dir, p) : undefined);
  for (const { name, body } of entries(d, 'clusters')) if (!into.clusters.has(name)) into.clusters.set(name, clusterOf(name, body, abs));
  for (const { name, body } of entries(d, 'users')) if (!into.users.has(name)) into.users.set(name, userOf(name, body, abs, dir));
  for (const { name, body } of entries(d, 'contexts')) {
    if (!into.contexts.has(name)) into.contexts.set(name, { cluster: str(body.cluster), user: str(body.user), namespace: str(body.namespace) });
  }
  if (!into.currentContext && typeof d['current-context'] === 'string' && d['current-context']) into.currentContext = d['current-context'];
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function base64(v: unknown, what: string): Buffer | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new Error(`${what} is not a base64 string`);
  return Buffer.from(v, 'base64');
}

function bool(v: unknown): boolean {
  return v === true || v === 'true';
}

function clusterOf(name: string, c: Raw, abs: (p: unknown) => string | undefined): ClusterConfig {
  const server = str(c.server);
  if (!server) throw new Error(`cluster "${name}" has no server`);
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new Error(`cluster "${name}": server ${server} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`cluster "${name}": server ${server} is neither https:// nor http://`);
  if (str(c['proxy-url']))
    throw new Error(
      `cluster "${name}" sets proxy-url, which the operator does not support: reach the API server directly (or through kubectl proxy, with server: http://127.0.0.1:8001)`,
    );
  const extensions = Array.isArray(c.extensions) ? (c.extensions as Raw[]) : [];
  return {
    name,
    server,
    caData: base64(c['certificate-authority-data'], `cluster "${name}": certificate-authority-data`),
    caFile: abs(c['certificate-authority']),
    insecureSkipTLSVerify: bool(c['insecure-skip-tls-verify']),
    tlsServerName: str(c['tls-server-name']),
    execExtension: extensions.find((e) => e?.name === 'client.authentication.k8s.io/exec')?.extension,
  };
}

function userOf(name: string, u: Raw, abs: (p: unknown) => string | undefined, dir: string): UserConfig {
  const ap = u['auth-provider'] as Raw | undefined;
  if (ap) {
    const provider = str(ap.name) ?? '?';
    const plugin: Record<string, string> = {
      gcp: 'gke-gcloud-auth-plugin (gcloud components install gke-gcloud-auth-plugin, then gcloud container clusters get-credentials)',
      azure: 'kubelogin (az aks get-credentials, then kubelogin convert-kubeconfig)',
      oidc: 'kubelogin (int128/kubelogin: kubectl oidc-login)',
    };
    throw new Error(
      `user "${name}" uses auth-provider "${provider}", which is not supported: switch the user to the provider's exec credential plugin, ${plugin[provider] ?? 'e.g. gke-gcloud-auth-plugin for GKE or kubelogin for Azure and OIDC'}`,
    );
  }
  for (const key of ['as', 'as-uid', 'as-groups', 'as-user-extra']) {
    if (u[key] !== undefined && u[key] !== null)
      throw new Error(`user "${name}" sets ${key} (impersonation), which the operator does not support: give its own identity the RBAC it needs`);
  }
  const token = str(u.token);
  const tokenFile = abs(u.tokenFile);
  const username = str(u.username);
  const password = str(u.password);
  if ((token || tokenFile) && (username || password))
    throw new Error(`user "${name}" has both a token and a username/password: only one authentication method is allowed`);
  const user: UserConfig = {
    name,
    token,
    tokenFile,
    username,
    password,
    certData: base64(u['client-certificate-data'], `user "${name}": client-certificate-data`),
    certFile: abs(u['client-certificate']),
    keyData: base64(u['client-key-data'], `user "${name}": client-key-data`),
    keyFile: abs(u['client-key']),
  };
  if (!!(user.certData || user.certFile) !== !!(user.keyData || user.keyFile)) {
    throw new Error(
      `user "${name}" has ${user.certData || user.certFile ? 'a client certificate without a client key' : 'a client key without a client certificate'}`,
    );
  }
  if (u.exec) user.exec = execOf(name, u.exec as Raw, dir);
  return user;
}

function execOf(userName: string, e: Raw, dir: string): ExecConfig {
  const command = str(e.command);
  if (!command) throw new Error(`user "${userName}": exec has no command`);
  const apiVersion = str(e.apiVersion) ?? '';
  if (!EXEC_API_VERSIONS.has(apiVersion)) {
    throw new Error(
      `user "${userName}": exec apiVersion "${apiVersion}" is not supported: use client.authentication.k8s.io/v1 (or v1beta1) with a current version of the plugin`,
    );
  }
  if (e.interactiveMode === 'Always')
    throw new Error(`user "${userName}": exec plugin "${command}" has interactiveMode Always, but the operator has no terminal to ask on`);
  const args = e.args ?? [];
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new Error(`user "${userName}": exec args is not a list of strings`);
  const env = e.env ?? [];
  if (!Array.isArray(env) || env.some((v) => typeof (v as Raw)?.name !== 'string'))
    throw new Error(`user "${userName}": exec env is not a list of {name, value}`);
  return {
    apiVersion,
    // client-go: a command with a path separator is relative to the kubeconfig's directory; a bare name is looked up on PATH
    command: command.includes('/') ? path.resolve(dir, command) : command,
    args: args as string[],
    env: (env as Raw[]).map((v) => ({ name: v.name as string, value: v.value === undefined || v.value === null ? '' : String(v.value) })),
    installHint: str(e.installHint),
    provideClusterInfo: bool(e.provideClusterInfo),
  };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
