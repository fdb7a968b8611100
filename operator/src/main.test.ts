import { describe, expect, it } from 'vitest';
import type { IACSearchStatus } from './api/status.ts';
import { silentLogger } from './controller/log.ts';
import { FakeKubeApi } from '../testing/fake-kube-api.ts';
import type { KubeObject } from './k8s/types.ts';
import { DEFAULT_WORKERS, OPTIONS, advertiseURL, parseDuration, parseOperatorArgs, startOperator, usage, type OperatorConfig } from './main.ts';

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const search = (name: string): KubeObject => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name, namespace: 'lab' },
  spec: { dataset: { format: 'phantom' }, search: { maxEpochs: 20 } },
});

function config(over: Partial<OperatorConfig> = {}): OperatorConfig {
  const cfg = parseOperatorArgs(['--host', '127.0.0.1', '--port', '1', '--progress-interval', '50ms'], {});
  if (cfg === 'help') throw new Error('unexpected');
  return { ...cfg, port: 0, ...over };
}

const statusOf = (api: FakeKubeApi, name: string) =>
  api.objects('IACSearch', 'lab').find((o) => o.metadata.name === name)?.status as IACSearchStatus | undefined;

describe('iacnas operator', () => {
  it('parses its flags and documents every one in --help', () => {
    expect(parseOperatorArgs(['--help'])).toBe('help');
    const cfg = parseOperatorArgs(['--namespaces', 'a, b', '--leader-elect', '--lease-duration', '20s', '--log-level', 'debug', '--trainer-image', 'img:1'], {
      POD_NAMESPACE: 'iac-system',
      POD_NAME: 'op-0',
    });
    expect(cfg).toMatchObject({
      namespaces: ['a', 'b'],
      leaderElect: true,
      leaseDurationMs: 20_000,
      leaseNamespace: 'iac-system',
      identity: 'op-0',
      logLevel: 'debug',
      trainerImage: 'img:1',
      progressURL: 'http://iac-operator.iac-system.svc:8080/v1/progress',
    });
    expect(parseOperatorArgs([], { POD_IP: '10.1.2.3' })).toMatchObject({ advertiseAddress: '10.1.2.3' });
    // empty environment variables count as unset
    const empty = parseOperatorArgs([], { POD_NAMESPACE: '', POD_NAME: '', POD_IP: '' }) as OperatorConfig;
    expect(empty.leaseNamespace).toBe('default');
    expect(empty.identity).toMatch(/^.+_[0-9a-f]{8}$/);
    expect(empty.advertiseAddress).toBeUndefined();
    expect(advertiseURL('fd00::1', 8080)).toBe('http://[fd00::1]:8080');
    expect(parseOperatorArgs([], {})).toMatchObject({ progressURL: undefined, leaderElect: false, workers: DEFAULT_WORKERS, phaseEvents: false });
    expect(parseOperatorArgs(['--leader-elect=false'], {})).toMatchObject({ leaderElect: false });
    expect(parseOperatorArgs(['--leader-elect=true', '--phase-events=true'], {})).toMatchObject({ leaderElect: true, phaseEvents: true });
    expect(() => parseOperatorArgs(['--leader-elect=no'], {})).toThrow(/--leader-elect: expected true or false/);
    for (const flag of Object.keys(OPTIONS)) expect(usage, `--${flag} in --help`).toContain(`--${flag}`);
    for (const flag of usage.matchAll(/^\s+(?:-h, )?--([a-z-]+)/gm)) expect(Object.keys(OPTIONS)).toContain(flag[1]);
    expect(() => parseOperatorArgs(['--namespaces', 'Bad_NS'], {})).toThrow(/--namespaces/);
    expect(() => parseOperatorArgs(['--log-level', 'loud'], {})).toThrow(/--log-level/);
    expect(() => parseOperatorArgs(['--leader-elect', '--renew-deadline', '20s'], {})).toThrow(/--renew-deadline/);
    expect(() => parseOperatorArgs(['--bogus'], {})).toThrow();
    expect(parseDuration('--x', '500ms')).toBe(500);
    expect(() => parseDuration('--x', '15')).toThrow(/--x/);
  });

  it('runs searches with the real reconcile and takes progress from the trainer over HTTP', async () => {
    const api = new FakeKubeApi();
    const op = await startOperator(config({ progressURL: 'http://op/v1/progress' }), api, silentLogger);
    try {
      await api.create(search('acdc'));
      await until(() => api.objects('Pod', 'lab').length === 1 && statusOf(api, 'acdc')?.phase === 'Searching');
      const [pod] = api.objects('Pod', 'lab');
      expect(pod.metadata.name).toBe('acdc-search-1');
      expect(pod.metadata.ownerReferences?.[0]).toMatchObject({ kind: 'IACSearch', name: 'acdc', controller: true });
      const secret = api.objects('Secret', 'lab').find((s) => s.metadata.name === 'acdc-progress')!;
      const token = Buffer.from((secret.data as { token: string }).token, 'base64').toString();
      await until(() => op.controller.checkProgressToken('lab', 'acdc', token) === 'ok');

      const res = await fetch(`${op.address}/v1/progress`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-iacsearch': 'lab/acdc' },
        body: JSON.stringify({ type: 'progress', phase: 'search', epoch: 4, maxEpochs: 20, stableEdges: 3, totalEdges: 10, activeOperations: 40 }),
      });
      expect(res.status).toBe(202);
      await until(() => statusOf(api, 'acdc')?.progress?.epoch === 4);

      const metrics = await (await fetch(`${op.address}/metrics`)).text();
      expect(metrics).toMatch(/iacsearch_phase\{namespace="lab",name="acdc",phase="Searching"\} 1/);
      expect(metrics).toMatch(/iacsearch_stable_edges\{namespace="lab",name="acdc"\} 3/);
      expect((await fetch(`${op.address}/readyz`)).status).toBe(200);
    } finally {
      await op.stop();
    }
  });

  it('exports the iacsearchset_* series of a set and labels its children with it', async () => {
    const api = new FakeKubeApi();
    const op = await startOperator(config(), api, silentLogger);
    try {
      await api.create({
        apiVersion: 'nas.iac.dev/v1alpha1',
        kind: 'IACSearchSet',
        metadata: { name: 'fleet', namespace: 'lab' },
        spec: { template: { dataset: { format: 'phantom' }, search: { maxEpochs: 20 } }, matrix: { seeds: [1, 2] }, maxParallel: 1 },
      });
      await until(() => (api.objects('IACSearchSet', 'lab')[0]?.status as { children?: number } | undefined)?.children === 2);
      const metrics = await (await fetch(`${op.address}/metrics`)).text();
      expect(metrics).toMatch(/^iacsearchset_info\{namespace="lab",name="fleet"\} 1$/m);
      expect(metrics).toMatch(/^iacsearchset_children\{namespace="lab",name="fleet",phase="Queued"\} 1$/m);
      expect(metrics).toMatch(/^iacsearch_info\{namespace="lab",name="fleet-s1",dataset="phantom",stability="jsd",set="fleet"\} 1$/m);
    } finally {
      await op.stop();
    }
  });

  it('with leader election only the leader reconciles; on SIGTERM-style stop it releases the lease and a standby takes over', async () => {
    const api = new FakeKubeApi();
    const le = {
      leaderElect: true,
      leaseNamespace: 'iac-system',
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 50,
      advertiseAddress: '127.0.0.1',
    };
    const a = await startOperator(config({ ...le, identity: 'a' }), api, silentLogger);
    await until(() => a.elector!.isLeader());
    const b = await startOperator(config({ ...le, identity: 'b' }), api, silentLogger);
    try {
      await api.create(search('one'));
      await until(() => statusOf(api, 'one')?.phase === 'Searching');
      await new Promise((r) => setTimeout(r, 150));
      expect(b.elector!.isLeader()).toBe(false);
      expect(b.controller.isRunning()).toBe(false);
      const standbyMetrics = await (await fetch(`${b.address}/metrics`)).text();
      expect(standbyMetrics).toMatch(/^iac_operator_leader 0$/m);
      expect(standbyMetrics).not.toMatch(/^iacsearch_info\{/m);

      // progress sent to the standby reaches the leader through the Lease's leader URL
      const secret = api.objects('Secret', 'lab').find((s) => s.metadata.name === 'one-progress')!;
      const token = Buffer.from((secret.data as { token: string }).token, 'base64').toString();
      await until(() => b.controller.checkProgressToken('lab', 'one', token) === 'ok');
      const res = await fetch(`${b.address}/v1/progress`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'x-iacsearch': 'lab/one' },
        body: JSON.stringify({ type: 'progress', phase: 'search', epoch: 7, maxEpochs: 20 }),
      });
      expect(res.status).toBe(202);
      await until(() => statusOf(api, 'one')?.progress?.epoch === 7);

      await a.stop();
      expect((api.objects('Lease', 'iac-system')[0].spec as { holderIdentity: string }).holderIdentity).not.toBe('a');
      await until(() => b.elector!.isLeader(), 2000); // well within the 3 s lease: the lease was released
      await api.create(search('two'));
      await until(() => statusOf(api, 'two')?.phase === 'Searching');
      expect(
        api
          .objects('Pod', 'lab')
          .map((p) => p.metadata.name)
          .sort(),
      ).toEqual(['one-search-1', 'two-search-1']);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
