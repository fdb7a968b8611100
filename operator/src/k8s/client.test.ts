// HttpKubeApi against small HTTP(S) servers that answer like the API server does, so the
// client (paths, content types, status codes, watch stream, pagination, connection
// reuse, TLS with client certificates, exec credential plugins) is checked without a
// cluster.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpKubeApi, loadKubeConfig } from './client.ts';
import { IACSearchType, PodType } from './resources.ts';
import { ApiError, type KubeObject } from './types.ts';

interface Seen {
  method: string;
  url: string;
  contentType?: string;
  authorization?: string;
  body: string;
}

let server: Server;
let port: number;
let api: HttpKubeApi;
let dir: string;
const seen: Seen[] = [];
let watchResponse: ((res: ServerResponse) => void) | undefined;
let connections = 0;
/** Bearer tokens the server refuses with 401. */
const rejectedTokens = new Set<string>();
/** Requests served per connection. */
const served = new WeakMap<object, number>();

function json(res: ServerResponse, code: number, body: unknown) {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function handle(req: IncomingMessage, res: ServerResponse, body: string) {
  seen.push({ method: req.method!, url: req.url!, contentType: req.headers['content-type'], authorization: req.headers.authorization, body });
  served.set(req.socket, (served.get(req.socket) ?? 0) + 1);
  const url = new URL(req.url!, 'http://x');
  const p = url.pathname;
  if (rejectedTokens.has((req.headers.authorization ?? '').replace(/^Bearer /, ''))) {
    return json(res, 401, { kind: 'Status', status: 'Failure', reason: 'Unauthorized', message: 'Unauthorized', code: 401 });
  }
  if (url.searchParams.get('watch') === 'true') {
    if (watchResponse) return watchResponse(res);
    res.writeHead(200, { 'content-type': 'application/json' });
    return;
  }
  if (req.method === 'GET' && p === '/api/v1/namespaces/lab/pods') {
    // two pages
    if (!url.searchParams.get('continue')) {
      return json(res, 200, {
        kind: 'PodList',
        apiVersion: 'v1',
        metadata: { resourceVersion: '10', continue: 'page2' },
        items: [{ metadata: { name: 'a', namespace: 'lab', creationTimestamp: '2026-01-01T00:00:00Z' } }],
      });
    }
    return json(res, 200, {
      kind: 'PodList',
      apiVersion: 'v1',
      metadata: { resourceVersion: '11' },
      items: [{ metadata: { name: 'b', namespace: 'lab' }, spec: { unknownField: 1 } }],
    });
  }
  if (req.method === 'GET' && p === '/api/v1/namespaces/lab/pods/missing') {
    return json(res, 404, { kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'pods "missing" not found', code: 404 });
  }
  if (req.method === 'GET' && p === '/api/v1/namespaces/lab/pods/slow') return; // never answers
  if (p === '/api/v1/namespaces/lab/pods/reset-on-reuse' && served.get(req.socket)! > 1) {
    // as a server that closed the idle kept-alive connection just as the client reused it
    req.socket.destroy();
    return;
  }
  if (req.method === 'GET' && p === '/api/v1/namespaces/lab/pods/reset-on-reuse')
    return json(res, 200, { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'r' } });
  if (req.method === 'POST' && p === '/api/v1/namespaces/lab/pods') {
    return json(res, 409, { kind: 'Status', status: 'Failure', reason: 'AlreadyExists', message: 'pods "a" already exists', code: 409 });
  }
  if (req.method === 'PATCH' && p === '/apis/nas.iac.dev/v1alpha1/namespaces/lab/iacsearches/s/status') {
    return json(res, 200, {
      apiVersion: 'nas.iac.dev/v1alpha1',
      kind: 'IACSearch',
      metadata: { name: 's', namespace: 'lab' },
      status: JSON.parse(body).status,
    });
  }
  if (req.method === 'PATCH' && p === '/apis/nas.iac.dev/v1alpha1/namespaces/lab/iacsearches/s') {
    return json(res, 200, { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name: 's', namespace: 'lab', ...JSON.parse(body).metadata } });
  }
  if (req.method === 'PUT' && p === '/api/v1/namespaces/lab/pods/a') {
    return json(res, 409, { kind: 'Status', status: 'Failure', reason: 'Conflict', message: 'the object has been modified', code: 409 });
  }
  if (req.method === 'DELETE' && p === '/api/v1/namespaces/lab/pods/gone') {
    return json(res, 404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
  }
  if (req.method === 'DELETE' && p === '/api/v1/namespaces/lab/pods/a') {
    return json(res, 200, { kind: 'Status', status: 'Success' });
  }
  json(res, 500, { kind: 'Status', message: `unexpected ${req.method} ${req.url}`, code: 500 });
}

function kubeconfigYaml(server: string, user: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: c',
    '  cluster:',
    `    server: ${server}`,
    'users:',
    '- name: u',
    '  user:',
    ...user.split('\n').map((l) => `    ${l}`),
    'contexts:',
    '- name: ctx',
    '  context: {cluster: c, user: u, namespace: lab}',
    'current-context: ctx',
    '',
  ].join('\n');
}

function writeKubeconfig(name: string, server: string, user: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, kubeconfigYaml(server, user));
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'iacnas-client-'));
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => handle(req, res, body));
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  api = new HttpKubeApi(loadKubeConfig({ kubeconfig: writeKubeconfig('token.yaml', `http://127.0.0.1:${port}`, 'token: secret-token') }));
});

afterAll(async () => {
  await api.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

function watchUntilClosed(client: HttpKubeApi, events: string[] = []): Promise<unknown> {
  return new Promise<unknown>((resolve) => {
    void client.watch(
      PodType,
      { namespace: 'lab', resourceVersion: '11' },
      (t, o) => events.push(`${t}:${o.metadata?.name ?? (o as { code?: number }).code}`),
      resolve,
    );
  });
}

describe('HttpKubeApi', () => {
  it('lists every page, as plain JSON with apiVersion and kind filled in', async () => {
    const res = await api.list(PodType, { namespace: 'lab', labelSelector: 'iac.dev/search' });
    expect(res.resourceVersion).toBe('11');
    expect(res.items.map((i) => i.metadata.name)).toEqual(['a', 'b']);
    expect(res.items[0]).toMatchObject({ apiVersion: 'v1', kind: 'Pod' });
    expect(res.items[0].metadata.creationTimestamp).toBe('2026-01-01T00:00:00Z'); // a string, not a Date
    expect((res.items[1].spec as { unknownField: number }).unknownField).toBe(1);
    const first = seen.find((s) => s.url.startsWith('/api/v1/namespaces/lab/pods?'))!;
    expect(first.url).toContain('labelSelector=iac.dev%2Fsearch');
    expect(first.url).toContain('limit=500');
    expect(first.authorization).toBe('Bearer secret-token');
    expect(seen.find((s) => s.url.includes('continue=page2'))).toBeDefined();
  });

  it('maps 404 on get to undefined and 404 on delete to false', async () => {
    expect(await api.get(PodType, 'lab', 'missing')).toBeUndefined();
    expect(await api.delete(PodType, 'lab', 'gone')).toBe(false);
    expect(await api.delete(PodType, 'lab', 'a')).toBe(true);
    const del = seen.find((s) => s.method === 'DELETE' && s.url.endsWith('/pods/a'))!;
    expect(JSON.parse(del.body)).toMatchObject({ propagationPolicy: 'Background' });
  });

  it('sends one request after another over one kept-alive connection, with the credentials on each', async () => {
    await api.get(PodType, 'lab', 'missing'); // the pool exists
    const before = connections;
    const from = seen.length;
    for (let i = 0; i < 5; i++) expect(await api.get(PodType, 'lab', 'missing')).toBeUndefined();
    expect(connections - before).toBeLessThanOrEqual(1); // a connection per request without the shared pool
    expect(seen.slice(from).map((s) => s.authorization)).toEqual(Array(5).fill('Bearer secret-token'));
  });

  it('throws ApiError 409 when a create finds the object, with the method and path before the server message', async () => {
    const pod: KubeObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'lab' } };
    const err = await api.create(pod).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(409);
    expect((err as ApiError).reason).toBe('AlreadyExists');
    expect((err as ApiError).message).toBe('POST /api/v1/namespaces/lab/pods: 409 pods "a" already exists');
    // what controller.ts's refusalOf strips to show the server's own words
    expect((err as ApiError).message.replace(/^[A-Z]+ \S+: \d{3} /, '')).toBe('pods "a" already exists');
    const replaced = await api.replace({ ...pod, metadata: { ...pod.metadata, resourceVersion: '3' } }).catch((e: unknown) => e);
    expect((replaced as ApiError).code).toBe(409);
    expect(JSON.parse(seen.find((s) => s.method === 'PUT')!.body).metadata.resourceVersion).toBe('3');
    // Every write names the operator as its field manager (managedFields); a delete has none.
    const writes = seen.filter((s) => s.method === 'POST' || s.method === 'PUT');
    expect(writes.map((w) => w.method)).toEqual(['POST', 'PUT']);
    for (const write of writes) {
      expect(new URL(write.url, 'http://x').searchParams.get('fieldManager')).toBe('iac-operator');
    }
  });

  it('patches the object and its status subresource as JSON merge patches', async () => {
    const out = await api.mergePatchStatus(IACSearchType, 'lab', 's', { metadata: { resourceVersion: '5' }, status: { phase: 'Searching' } });
    expect(out.status).toEqual({ phase: 'Searching' });
    const patch = seen.find((s) => s.method === 'PATCH')!;
    expect(patch.contentType).toBe('application/merge-patch+json');
    expect(patch.url).toBe('/apis/nas.iac.dev/v1alpha1/namespaces/lab/iacsearches/s/status?fieldManager=iac-operator');
    const obj = await api.mergePatch(IACSearchType, 'lab', 's', { metadata: { labels: { a: 'b' } } });
    expect(obj.metadata.labels).toEqual({ a: 'b' });
    expect(seen.at(-1)).toMatchObject({
      method: 'PATCH',
      contentType: 'application/merge-patch+json',
      url: '/apis/nas.iac.dev/v1alpha1/namespaces/lab/iacsearches/s?fieldManager=iac-operator',
    });
  });

  it('sends a GET once more on a new connection when the kept-alive one turns out closed', async () => {
    await api.get(PodType, 'lab', 'missing'); // a connection in the pool
    expect((await api.get(PodType, 'lab', 'reset-on-reuse'))?.metadata.name).toBe('r');
    // not a PATCH (nor a POST): the server may have acted on it
    const from = seen.length;
    const err = await api.mergePatch(PodType, 'lab', 'reset-on-reuse', { metadata: { labels: { a: 'b' } } }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/^PATCH \/api\/v1\/namespaces\/lab\/pods\/reset-on-reuse: socket hang up/);
    expect(seen.length - from).toBe(1);
  });

  it('ends a request that gets no answer after requestTimeoutMs with a TimeoutError', async () => {
    const quick = new HttpKubeApi(api.config, { requestTimeoutMs: 200 });
    const err = await quick.get(PodType, 'lab', 'slow').catch((e: unknown) => e);
    expect((err as Error).name).toBe('TimeoutError');
    expect((err as Error).message).toContain('GET /api/v1/namespaces/lab/pods/slow');
    await quick.close();
  });

  it('streams watch events and reports the end of the stream', async () => {
    watchResponse = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`${JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'w', resourceVersion: '12' } } })}\n`);
      // one event split over two writes
      const error = `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } })}\n`;
      res.write(error.slice(0, 10));
      setTimeout(() => res.write(error.slice(10)), 10);
      setTimeout(() => res.end(), 20);
    };
    const events: string[] = [];
    expect(await watchUntilClosed(api, events)).toBeUndefined();
    expect(events).toEqual(['ADDED:w', 'ERROR:410']);
    const w = seen.find((s) => s.url.includes('watch=true'))!;
    expect(w.url).toContain('resourceVersion=11');
    expect(w.url).toContain('allowWatchBookmarks=true');
    expect(w.url).toContain('timeoutSeconds=300');
    expect(w.authorization).toBe('Bearer secret-token');
  });

  it('reports a watch the server refuses with 410 as ApiError 410 (the informer lists again)', async () => {
    watchResponse = (res) => json(res, 410, { kind: 'Status', status: 'Failure', reason: 'Expired', message: 'too old resource version: 11 (20)', code: 410 });
    const err = await watchUntilClosed(api);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(410);
    expect((err as ApiError).reason).toBe('Expired');
    expect((err as ApiError).message).toBe('GET /api/v1/namespaces/lab/pods: 410 too old resource version: 11 (20)');
  });

  it('ends a watch that receives nothing for watchInactivityMs with a TimeoutError', async () => {
    watchResponse = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`${JSON.stringify({ type: 'BOOKMARK', object: { kind: 'Pod', metadata: { resourceVersion: '13' } } })}\n`);
    };
    const quiet = new HttpKubeApi(api.config, { watchInactivityMs: 200 });
    const events: string[] = [];
    const started = Date.now();
    const err = await watchUntilClosed(quiet, events);
    expect((err as Error).name).toBe('TimeoutError');
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(events).toEqual(['BOOKMARK:undefined']);
    await quiet.close();
  });

  it('reports a network error of a watch to onClose, and calls nothing after stop()', async () => {
    watchResponse = (res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(`${JSON.stringify({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'x' } } })}\n`);
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const err = await watchUntilClosed(api);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ApiError);

    let closed = false;
    let sent: ServerResponse | undefined;
    watchResponse = (res) => {
      sent = res;
      res.writeHead(200, { 'content-type': 'application/json' });
    };
    const events: string[] = [];
    const handle = await api.watch(
      PodType,
      { namespace: 'lab', resourceVersion: '1' },
      (t) => events.push(t),
      () => (closed = true),
    );
    while (!sent) await new Promise((r) => setTimeout(r, 5));
    handle.stop();
    sent.write(`${JSON.stringify({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'late' } } })}\n`);
    sent.end();
    await new Promise((r) => setTimeout(r, 50));
    expect(closed).toBe(false);
    expect(events).toEqual([]);
    watchResponse = undefined;
  });

  it('runs an exec credential plugin once, caches its token until it expires, and runs it again after a 401', async () => {
    const plugin = path.join(dir, 'plugin.mjs');
    const runs = path.join(dir, 'plugin-runs');
    writeFileSync(runs, '');
    writeFileSync(
      plugin,
      [
        "import { appendFileSync, readFileSync } from 'node:fs';",
        'const info = JSON.parse(process.env.KUBERNETES_EXEC_INFO);',
        "if (info.kind !== 'ExecCredential' || info.spec.interactive !== false) process.exit(3);",
        "appendFileSync(process.env.RUNS, 'x');",
        "const n = readFileSync(process.env.RUNS, 'utf8').length;",
        'const ttl = Number(process.env.TTL_MS);',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a line of the plugin's source, whose own template literal runs in the plugin
        'const status = { token: `exec-${process.argv[2]}-${n}` };',
        'if (ttl > 0) status.expirationTimestamp = new Date(Date.now() + ttl).toISOString();',
        'console.log(JSON.stringify({ apiVersion: info.apiVersion, kind: "ExecCredential", status }));',
      ].join('\n'),
    );
    const execUser = (ttl: number, arg: string) =>
      [
        'exec:',
        '  apiVersion: client.authentication.k8s.io/v1',
        `  command: ${JSON.stringify(process.execPath)}`,
        `  args: [${JSON.stringify(plugin)}, ${arg}]`,
        '  interactiveMode: Never',
        '  env:',
        `  - {name: RUNS, value: ${JSON.stringify(runs)}}`,
        `  - {name: TTL_MS, value: "${ttl}"}`,
      ].join('\n');
    const cfg = (ttl: number, arg: string) => writeKubeconfig(`exec-${arg}.yaml`, `http://127.0.0.1:${port}`, execUser(ttl, arg));

    const cached = new HttpKubeApi(loadKubeConfig({ kubeconfig: cfg(0, 'a') }));
    const from = seen.length;
    for (let i = 0; i < 3; i++) expect(await cached.get(PodType, 'lab', 'missing')).toBeUndefined();
    expect(readFileSync(runs, 'utf8')).toBe('x'); // cached: no expiry
    expect(seen.slice(from).map((s) => s.authorization)).toEqual(Array(3).fill('Bearer exec-a-1'));

    // 401: the plugin runs again and the request is sent once more, with the new token
    rejectedTokens.add('exec-a-1');
    expect(await cached.get(PodType, 'lab', 'missing')).toBeUndefined();
    expect(readFileSync(runs, 'utf8')).toBe('xx');
    expect(seen.slice(-2).map((s) => s.authorization)).toEqual(['Bearer exec-a-1', 'Bearer exec-a-2']);
    await cached.close();

    // an expiring credential: reused until status.expirationTimestamp, then the plugin runs again
    writeFileSync(runs, '');
    const expiring = new HttpKubeApi(loadKubeConfig({ kubeconfig: cfg(1500, 'b') }));
    await expiring.get(PodType, 'lab', 'missing');
    await expiring.get(PodType, 'lab', 'missing');
    expect(readFileSync(runs, 'utf8')).toBe('x');
    await new Promise((r) => setTimeout(r, 1600));
    await expiring.get(PodType, 'lab', 'missing');
    expect(readFileSync(runs, 'utf8')).toBe('xx');
    expect(seen.at(-1)!.authorization).toBe('Bearer exec-b-2');
    await expiring.close();
  });

  it('says which plugin failed and why', async () => {
    const failing = path.join(dir, 'failing.mjs');
    writeFileSync(failing, "console.error('please run gcloud auth login'); process.exit(1);\n");
    const user = [
      'exec:',
      '  apiVersion: client.authentication.k8s.io/v1beta1',
      `  command: ${JSON.stringify(process.execPath)}`,
      `  args: [${JSON.stringify(failing)}]`,
    ].join('\n');
    const client = new HttpKubeApi(loadKubeConfig({ kubeconfig: writeKubeconfig('failing.yaml', `http://127.0.0.1:${port}`, user) }));
    const err = await client.get(PodType, 'lab', 'missing').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/exec plugin ".*node" of user "u" failed \(exit 1\): please run gcloud auth login/);

    const missing = [
      'exec:',
      '  apiVersion: client.authentication.k8s.io/v1',
      '  command: no-such-auth-plugin',
      '  installHint: install it with brew install no-such-auth-plugin',
    ].join('\n');
    const client2 = new HttpKubeApi(loadKubeConfig({ kubeconfig: writeKubeconfig('missing.yaml', `http://127.0.0.1:${port}`, missing) }));
    const err2 = await client2.get(PodType, 'lab', 'missing').catch((e: unknown) => e);
    expect((err2 as Error).message).toBe('exec plugin "no-such-auth-plugin" of user "u" not found: install it with brew install no-such-auth-plugin');
  });
});

// ---- TLS ----

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, a serving certificate for `san` and client certificates signed by the CA. */
function makePki(pki: string, san: string): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key'], pki);
  openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      'ca.key',
      '-subj',
      '/CN=test-ca',
      '-days',
      '2',
      '-sha256',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
      '-out',
      'ca.crt',
    ],
    pki,
  );
  issue(
    pki,
    'server',
    '/CN=kube-apiserver',
    `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${san}\n`,
  );
}

function issue(
  pki: string,
  name: string,
  subject: string,
  ext = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
): void {
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`], pki);
  openssl(['req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`], pki);
  writeFileSync(path.join(pki, `${name}.ext`), ext);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-sha256',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    ],
    pki,
  );
}

describe('HttpKubeApi over TLS', () => {
  let tlsDir: string;
  let httpsServer: HttpsServer;
  let tlsPort: number;
  let tlsConnections = 0;
  const clients: string[] = [];

  beforeAll(async () => {
    tlsDir = mkdtempSync(path.join(tmpdir(), 'iacnas-tls-'));
    const pki = path.join(tlsDir, 'pki');
    execFileSync('mkdir', [pki]);
    makePki(pki, 'IP:127.0.0.1,DNS:api.test');
    issue(pki, 'alice', '/O=system:masters/CN=alice');
    issue(pki, 'bob', '/CN=bob');
    const read = (f: string) => readFileSync(path.join(pki, f));
    httpsServer = createHttpsServer(
      { key: read('server.key'), cert: read('server.crt'), ca: read('ca.crt'), requestCert: true, rejectUnauthorized: true },
      (req, res) => {
        const cn = (req.socket as TLSSocket).getPeerCertificate().subject?.CN;
        clients.push(String(cn));
        json(res, 200, { apiVersion: 'v1', kind: 'Pod', metadata: { name: cn, namespace: 'lab' } });
      },
    );
    httpsServer.on('secureConnection', () => tlsConnections++);
    await new Promise<void>((r) => httpsServer.listen(0, '127.0.0.1', r));
    tlsPort = (httpsServer.address() as AddressInfo).port;
  });

  afterAll(async () => {
    httpsServer.closeAllConnections();
    await new Promise((r) => httpsServer.close(r));
    rmSync(tlsDir, { recursive: true, force: true });
  });

  const kubeconfig = (name: string, cluster: string[], user: string[]) => {
    const file = path.join(tlsDir, name);
    writeFileSync(
      file,
      [
        'clusters:',
        '- name: c',
        '  cluster:',
        ...cluster.map((l) => `    ${l}`),
        'users:',
        '- name: u',
        '  user:',
        ...user.map((l) => `    ${l}`),
        'contexts:',
        '- name: ctx',
        '  context: {cluster: c, user: u}',
        'current-context: ctx',
        '',
      ].join('\n'),
    );
    return file;
  };

  it('authenticates with a client certificate from files relative to the kubeconfig, over one connection', async () => {
    const file = kubeconfig(
      'files.yaml',
      [`server: https://127.0.0.1:${tlsPort}`, 'certificate-authority: pki/ca.crt'],
      ['client-certificate: pki/alice.crt', 'client-key: pki/alice.key'],
    );
    const client = new HttpKubeApi(loadKubeConfig({ kubeconfig: file }));
    const before = tlsConnections;
    for (let i = 0; i < 4; i++) expect((await client.get(PodType, 'lab', 'x'))?.metadata.name).toBe('alice');
    expect(tlsConnections - before).toBe(1);

    // a rotated certificate file: a new pool, and the new identity
    const pki = path.join(tlsDir, 'pki');
    writeFileSync(path.join(pki, 'alice.crt'), readFileSync(path.join(pki, 'bob.crt')));
    writeFileSync(path.join(pki, 'alice.key'), readFileSync(path.join(pki, 'bob.key')));
    const later = new Date(Date.now() + 5000);
    utimesSync(path.join(pki, 'alice.crt'), later, later);
    utimesSync(path.join(pki, 'alice.key'), later, later);
    expect((await client.get(PodType, 'lab', 'x'))?.metadata.name).toBe('bob');
    expect((await client.get(PodType, 'lab', 'x'))?.metadata.name).toBe('bob');
    expect(tlsConnections - before).toBe(2);
    await client.close();
  });

  it('takes inline data, checks the server name against tls-server-name, and refuses an unknown CA', async () => {
    const pki = path.join(tlsDir, 'pki');
    const b64 = (f: string) => readFileSync(path.join(pki, f)).toString('base64');
    const user = [`client-certificate-data: ${b64('bob.crt')}`, `client-key-data: ${b64('bob.key')}`];
    const named = new HttpKubeApi(
      loadKubeConfig({
        kubeconfig: kubeconfig(
          'named.yaml',
          [`server: https://127.0.0.1:${tlsPort}`, `certificate-authority-data: ${b64('ca.crt')}`, 'tls-server-name: api.test'],
          user,
        ),
      }),
    );
    expect((await named.get(PodType, 'lab', 'x'))?.metadata.name).toBe('bob');
    await named.close();

    const wrongName = new HttpKubeApi(
      loadKubeConfig({
        kubeconfig: kubeconfig(
          'wrong.yaml',
          [`server: https://127.0.0.1:${tlsPort}`, `certificate-authority-data: ${b64('ca.crt')}`, 'tls-server-name: other.test'],
          user,
        ),
      }),
    );
    const err = await wrongName.get(PodType, 'lab', 'x').catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/other\.test/);
    await wrongName.close();

    const noCA = new HttpKubeApi(loadKubeConfig({ kubeconfig: kubeconfig('noca.yaml', [`server: https://127.0.0.1:${tlsPort}`], user) }));
    const err2 = await noCA.get(PodType, 'lab', 'x').catch((e: unknown) => e);
    expect((err2 as { code?: string }).code).toMatch(/SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY/);
    await noCA.close();

    const insecure = new HttpKubeApi(
      loadKubeConfig({ kubeconfig: kubeconfig('insecure.yaml', [`server: https://127.0.0.1:${tlsPort}`, 'insecure-skip-tls-verify: true'], user) }),
    );
    expect((await insecure.get(PodType, 'lab', 'x'))?.metadata.name).toBe('bob');
    await insecure.close();
  });

  it('uses the client certificate an exec plugin returns', async () => {
    const pki = path.join(tlsDir, 'pki');
    const plugin = path.join(tlsDir, 'cert-plugin.mjs');
    writeFileSync(
      plugin,
      [
        "import { readFileSync } from 'node:fs';",
        'const info = JSON.parse(process.env.KUBERNETES_EXEC_INFO);',
        // provideClusterInfo hands over the server and CA
        "if (!info.spec.cluster?.server?.startsWith('https://127.0.0.1') || !info.spec.cluster['certificate-authority-data']) process.exit(4);",
        `const pem = (f) => readFileSync(${JSON.stringify(pki)} + '/' + f, 'utf8');`,
        "console.log(JSON.stringify({ apiVersion: info.apiVersion, kind: 'ExecCredential', status: { clientCertificateData: pem('alice.crt'), clientKeyData: pem('alice.key') } }));",
      ].join('\n'),
    );
    issue(pki, 'alice', '/O=system:masters/CN=alice'); // (the previous test replaced it)
    const file = kubeconfig(
      'exec-cert.yaml',
      [`server: https://127.0.0.1:${tlsPort}`, 'certificate-authority: pki/ca.crt'],
      [
        'exec:',
        '  apiVersion: client.authentication.k8s.io/v1beta1',
        `  command: ${JSON.stringify(process.execPath)}`,
        `  args: [${JSON.stringify(plugin)}]`,
        '  provideClusterInfo: true',
      ],
    );
    const client = new HttpKubeApi(loadKubeConfig({ kubeconfig: file }));
    expect((await client.get(PodType, 'lab', 'x'))?.metadata.name).toBe('alice');
    await client.close();
  });
});
