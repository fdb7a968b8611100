// loadKubeConfig: the order of the sources, kubectl's merging of $KUBECONFIG, relative
// paths, the service account in a pod, and errors that name the source and the fix.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadKubeConfig } from './kubeconfig.ts';

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'iacnas-kubeconfig-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  vi.useRealTimers();
});

function write(rel: string, text: string): string {
  const file = path.join(dir, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

const noCluster = { env: {}, homeDir: '/nonexistent', serviceAccountDir: '/nonexistent' };

describe('loadKubeConfig', () => {
  it('merges the files of KUBECONFIG as kubectl does: the first file wins per name, paths relative to each file', async () => {
    write('a/ca.crt', 'CA-A');
    write('b/ca.crt', 'CA-B');
    write('b/token', 'file-token\n');
    const a = write(
      'a/config',
      [
        'clusters:',
        '- name: shared',
        '  cluster: {server: "https://a.example:6443", certificate-authority: ca.crt}',
        'users:',
        '- name: alice',
        '  user: {token: from-a}',
        'contexts:',
        '- name: dev',
        '  context: {cluster: shared, user: alice, namespace: team-a}',
        'current-context: dev',
      ].join('\n'),
    );
    const b = write(
      'b/config',
      [
        'clusters:',
        '- name: shared',
        '  cluster: {server: "https://b.example:6443"}',
        '- name: other',
        '  cluster: {server: "https://other.example/", certificate-authority: ./ca.crt}',
        'users:',
        '- name: alice',
        '  user: {token: from-b}',
        '- name: bob',
        '  user: {tokenFile: token}',
        'contexts:',
        '- name: prod',
        '  context: {cluster: other, user: bob}',
        'current-context: prod',
      ].join('\n'),
    );
    const env = { KUBECONFIG: [a, path.join(dir, 'missing'), b].join(path.delimiter) };
    const kc = loadKubeConfig({ ...noCluster, env });
    expect(kc.source).toBe(`KUBECONFIG=${env.KUBECONFIG}`);
    expect(kc.contextName).toBe('dev'); // current-context of the first file
    expect(kc.server).toBe('https://a.example:6443');
    expect(kc.namespace).toBe('team-a');
    expect(kc.cluster.caFile).toBe(path.join(dir, 'a/ca.crt'));
    expect((await kc.credentials()).authorization).toBe('Bearer from-a');
    expect(String((await kc.credentials()).tls.ca)).toBe('CA-A');

    const prod = loadKubeConfig({ ...noCluster, env, context: 'prod' });
    expect(prod.server).toBe('https://other.example'); // no trailing slash
    expect(prod.namespace).toBeUndefined();
    expect(prod.cluster.caFile).toBe(path.join(dir, 'b/ca.crt'));
    expect(prod.user.tokenFile).toBe(path.join(dir, 'b/token'));
    expect((await prod.credentials()).authorization).toBe('Bearer file-token');
  });

  it('prefers --kubeconfig, then the service account in a pod, then KUBECONFIG, then ~/.kube/config', () => {
    const cfg = (server: string) =>
      ['clusters:', '- name: c', `  cluster: {server: "${server}"}`, 'contexts:', '- name: x', '  context: {cluster: c}', 'current-context: x'].join('\n');
    const explicit = write('order/explicit', cfg('https://explicit'));
    const fromEnv = write('order/env', cfg('https://env'));
    write('order/home/.kube/config', cfg('https://home'));
    const sa = path.join(dir, 'order/sa');
    write('order/sa/token', 'sa-token');
    const home = path.join(dir, 'order/home');
    const inPod = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
    expect(loadKubeConfig({ kubeconfig: explicit, env: { ...inPod, KUBECONFIG: fromEnv }, serviceAccountDir: sa, homeDir: home }).server).toBe(
      'https://explicit',
    );
    expect(loadKubeConfig({ env: { ...inPod, KUBECONFIG: fromEnv }, serviceAccountDir: sa, homeDir: home }).server).toBe('https://10.96.0.1:443');
    expect(loadKubeConfig({ env: { KUBECONFIG: fromEnv }, serviceAccountDir: sa, homeDir: home }).server).toBe('https://env');
    expect(loadKubeConfig({ env: { ...inPod }, serviceAccountDir: path.join(dir, 'order/no-sa'), homeDir: home }).server).toBe('https://home');
    expect(() => loadKubeConfig({ env: {}, serviceAccountDir: sa, homeDir: path.join(dir, 'order/nohome') })).toThrow(
      'no Kubernetes cluster configured: pass --kubeconfig <file>, set KUBECONFIG, or run in a pod with a service account',
    );
  });

  it('uses the service account in a pod: its CA and namespace, and a token read again at most once a minute', async () => {
    const sa = path.join(dir, 'sa');
    write('sa/token', 'token-1\n');
    write('sa/ca.crt', 'SA-CA');
    write('sa/namespace', 'iac-system\n');
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2026-03-01T00:00:00Z'));
    const kc = loadKubeConfig({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }, serviceAccountDir: sa });
    expect(kc.server).toBe('https://[fd00::1]:6443');
    expect(kc.namespace).toBe('iac-system');
    expect(kc.source).toContain('in-cluster service account');
    const first = await kc.credentials();
    expect(first.authorization).toBe('Bearer token-1');
    expect(String(first.tls.ca)).toBe('SA-CA');
    expect(first.tls.rejectUnauthorized).toBe(true);

    write('sa/token', 'token-2\n'); // kubelet rotated the bound token
    vi.setSystemTime(new Date('2026-03-01T00:00:30Z'));
    expect((await kc.credentials()).authorization).toBe('Bearer token-1');
    vi.setSystemTime(new Date('2026-03-01T00:01:01Z'));
    expect((await kc.credentials()).authorization).toBe('Bearer token-2');
    // a 401 reads it at once
    write('sa/token', 'token-3\n');
    expect(kc.unauthorized(await kc.credentials())).toBe(true);
    expect((await kc.credentials()).authorization).toBe('Bearer token-3');
    // the TLS material did not change: the connections stay
    expect((await kc.credentials()).tlsGeneration).toBe(first.tlsGeneration);
  });

  it('builds basic auth and keeps client certificate data', async () => {
    const file = write(
      'basic',
      [
        'clusters:',
        '- name: c',
        '  cluster: {server: "https://h", insecure-skip-tls-verify: true, tls-server-name: kubernetes}',
        'users:',
        '- name: u',
        `  user: {username: admin, password: "p:w", client-certificate-data: ${Buffer.from('CERT').toString('base64')}, client-key-data: ${Buffer.from('KEY').toString('base64')}}`,
        'contexts:',
        '- name: x',
        '  context: {cluster: c, user: u}',
        'current-context: x',
      ].join('\n'),
    );
    const creds = await loadKubeConfig({ kubeconfig: file }).credentials();
    expect(creds.authorization).toBe(`Basic ${Buffer.from('admin:p:w').toString('base64')}`);
    expect(creds.tls).toMatchObject({ rejectUnauthorized: false, servername: 'kubernetes', ca: undefined });
    expect(String(creds.tls.cert)).toBe('CERT');
    expect(String(creds.tls.key)).toBe('KEY');
  });

  it('refuses legacy auth-provider users, naming the user and the exec plugin to use instead', () => {
    const file = write(
      'gcp',
      [
        'clusters:',
        '- name: c',
        '  cluster: {server: "https://h"}',
        'users:',
        '- name: gke_user',
        '  user:',
        '    auth-provider: {name: gcp, config: {cmd-path: gcloud}}',
        'contexts:',
        '- name: x',
        '  context: {cluster: c, user: gke_user}',
        'current-context: x',
      ].join('\n'),
    );
    expect(() => loadKubeConfig({ kubeconfig: file })).toThrow(
      new RegExp(
        `^cannot load --kubeconfig ${file}: user "gke_user" uses auth-provider "gcp", which is not supported: switch the user to the provider's exec credential plugin, gke-gcloud-auth-plugin`,
      ),
    );
  });

  it('lists the contexts when --context names none of them', () => {
    const file = write(
      'ctx',
      [
        'clusters:',
        '- name: c',
        '  cluster: {server: "https://h"}',
        'contexts:',
        '- name: one',
        '  context: {cluster: c}',
        '- name: two',
        '  context: {cluster: c}',
        'current-context: one',
      ].join('\n'),
    );
    expect(() => loadKubeConfig({ kubeconfig: file, context: 'three' })).toThrow(
      `--context three: no such context in --kubeconfig ${file} (its contexts: one, two)`,
    );
    expect(loadKubeConfig({ kubeconfig: file, context: 'two' }).contextName).toBe('two');
  });

  it('names the source and the fix when a kubeconfig cannot be read or is incomplete', () => {
    const missing = path.join(dir, 'nope');
    expect(() => loadKubeConfig({ kubeconfig: missing })).toThrow(
      new RegExp(`^cannot load --kubeconfig ${missing}: ENOENT.*\\(pass --kubeconfig <file>, set KUBECONFIG, or run in a pod with a service account\\)$`),
    );
    expect(() => loadKubeConfig({ ...noCluster, env: { KUBECONFIG: missing } })).toThrow(
      `no Kubernetes cluster configured: none of the files in KUBECONFIG=${missing} exists`,
    );
    const noServer = write(
      'noserver',
      ['clusters:', '- name: c', '  cluster: {}', 'contexts:', '- name: x', '  context: {cluster: c}', 'current-context: x'].join('\n'),
    );
    expect(() => loadKubeConfig({ kubeconfig: noServer })).toThrow(`cannot load --kubeconfig ${noServer}: cluster "c" has no server`);
    const badCA = write(
      'badca',
      [
        'clusters:',
        '- name: c',
        '  cluster: {server: "https://h", certificate-authority: missing-ca.crt}',
        'contexts:',
        '- name: x',
        '  context: {cluster: c}',
        'current-context: x',
      ].join('\n'),
    );
    expect(() => loadKubeConfig({ kubeconfig: badCA })).toThrow(`cannot load --kubeconfig ${badCA}: cannot read ${path.join(dir, 'missing-ca.crt')}`);
    const oldExec = write(
      'oldexec',
      [
        'clusters:',
        '- name: c',
        '  cluster: {server: "https://h"}',
        'users:',
        '- name: u',
        '  user: {exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: foo}}',
        'contexts:',
        '- name: x',
        '  context: {cluster: c, user: u}',
        'current-context: x',
      ].join('\n'),
    );
    expect(() => loadKubeConfig({ kubeconfig: oldExec })).toThrow(/user "u": exec apiVersion "client.authentication.k8s.io\/v1alpha1" is not supported/);
  });
});
