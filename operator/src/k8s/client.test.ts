// ClientNodeKubeApi against a small HTTP server that answers like the API server does,
// so the client-node integration (paths, content types, status codes, watch stream,
// pagination) is checked without a cluster.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeConfig } from '@kubernetes/client-node';
import { ClientNodeKubeApi } from './client.ts';
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
let api: ClientNodeKubeApi;
const seen: Seen[] = [];
let watchResponse: ((res: ServerResponse) => void) | undefined;
let connections = 0;

function json(res: ServerResponse, code: number, body: unknown) {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function handle(req: IncomingMessage, res: ServerResponse, body: string) {
  seen.push({ method: req.method!, url: req.url!, contentType: req.headers['content-type'], authorization: req.headers.authorization, body });
  const url = new URL(req.url!, 'http://x');
  const p = url.pathname;
  if (url.searchParams.get('watch') === 'true') {
    res.writeHead(200, { 'content-type': 'application/json' });
    watchResponse?.(res);
    return;
  }
  if (req.method === 'GET' && p === '/api/v1/namespaces/lab/pods') {
    // two pages
    if (!url.searchParams.get('continue')) {
      return json(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '10', continue: 'page2' }, items: [{ metadata: { name: 'a', namespace: 'lab', creationTimestamp: '2026-01-01T00:00:00Z' } }] });
    }
    return json(res, 200, { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '11' }, items: [{ metadata: { name: 'b', namespace: 'lab' }, spec: { unknownField: 1 } }] });
  }
  if (req.method === 'GET' && p === '/api/v1/namespaces/lab/pods/missing') {
    return json(res, 404, { kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'pods "missing" not found', code: 404 });
  }
  if (req.method === 'POST' && p === '/api/v1/namespaces/lab/pods') {
    return json(res, 409, { kind: 'Status', status: 'Failure', reason: 'AlreadyExists', message: 'pods "a" already exists', code: 409 });
  }
  if (req.method === 'PATCH' && p === '/apis/nas.iac.dev/v1alpha1/namespaces/lab/iacsearches/s/status') {
    return json(res, 200, { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name: 's', namespace: 'lab' }, status: JSON.parse(body).status });
  }
  if (req.method === 'DELETE' && p === '/api/v1/namespaces/lab/pods/gone') {
    return json(res, 404, { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' });
  }
  if (req.method === 'DELETE' && p === '/api/v1/namespaces/lab/pods/a') {
    return json(res, 200, { kind: 'Status', status: 'Success' });
  }
  json(res, 500, { kind: 'Status', message: `unexpected ${req.method} ${req.url}`, code: 500 });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => handle(req, res, body));
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'ctx', cluster: 'c', user: 'u', namespace: 'lab' }],
    currentContext: 'ctx',
  });
  api = new ClientNodeKubeApi(kc);
});

afterAll(async () => {
  await api.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('ClientNodeKubeApi', () => {
  it('lists every page, as plain JSON with apiVersion and kind filled in', async () => {
    const res = await api.list(PodType, { namespace: 'lab', labelSelector: 'iac.dev/search' });
    expect(res.resourceVersion).toBe('11');
    expect(res.items.map((i) => i.metadata.name)).toEqual(['a', 'b']);
    expect(res.items[0]).toMatchObject({ apiVersion: 'v1', kind: 'Pod' });
    expect(res.items[0].metadata.creationTimestamp).toBe('2026-01-01T00:00:00Z'); // a string, not a Date
    expect((res.items[1].spec as { unknownField: number }).unknownField).toBe(1);
    const first = seen.find((s) => s.url.startsWith('/api/v1/namespaces/lab/pods?'))!;
    expect(first.url).toContain('labelSelector=iac.dev%2Fsearch');
    expect(first.authorization).toBe('Bearer secret-token');
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

  it('throws ApiError 409 when a create finds the object', async () => {
    const pod: KubeObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a', namespace: 'lab' } };
    const err = await api.create(pod).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe(409);
    expect((err as ApiError).reason).toBe('AlreadyExists');
  });

  it('patches the status subresource as a JSON merge patch', async () => {
    const out = await api.mergePatchStatus(IACSearchType, 'lab', 's', { metadata: { resourceVersion: '5' }, status: { phase: 'Searching' } });
    expect(out.status).toEqual({ phase: 'Searching' });
    const patch = seen.find((s) => s.method === 'PATCH')!;
    expect(patch.contentType).toBe('application/merge-patch+json');
    expect(patch.url).toBe('/apis/nas.iac.dev/v1alpha1/namespaces/lab/iacsearches/s/status');
  });

  it('streams watch events and reports the end of the stream', async () => {
    watchResponse = (res) => {
      res.write(JSON.stringify({ type: 'ADDED', object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'w', resourceVersion: '12' } } }) + '\n');
      res.write(JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired' } }) + '\n');
      setTimeout(() => res.end(), 20);
    };
    const events: string[] = [];
    const closed = new Promise<unknown>((resolve) => {
      void api.watch(PodType, { namespace: 'lab', resourceVersion: '11' }, (t, o) => events.push(`${t}:${o.metadata?.name ?? (o as { code?: number }).code}`), resolve);
    });
    expect(await closed).toBeUndefined();
    expect(events).toEqual(['ADDED:w', 'ERROR:410']);
    const w = seen.find((s) => s.url.includes('watch=true'))!;
    expect(w.url).toContain('resourceVersion=11');
    expect(w.url).toContain('allowWatchBookmarks=true');
  });
});
