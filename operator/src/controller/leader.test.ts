import { describe, expect, it } from 'vitest';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import { LeaseType } from '../k8s/resources.ts';
import { ApiError } from '../k8s/types.ts';
import { LeaderElector } from './leader.ts';

const lease = { namespace: 'iac-system', name: 'iac-operator' };

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('LeaderElector', () => {
  it('takes a free lease; another candidate finds it held', async () => {
    const api = new FakeKubeApi();
    let t = 0;
    const a = new LeaderElector(api, { ...lease, identity: 'a', now: () => t });
    const b = new LeaderElector(api, { ...lease, identity: 'b', now: () => t });
    expect(await a.tryAcquireOrRenew()).toBe('leading');
    expect(await b.tryAcquireOrRenew()).toBe('held');
    t += 5000;
    expect(await a.tryAcquireOrRenew()).toBe('leading'); // renew
    const stored = api.objects('Lease', 'iac-system')[0].spec as Record<string, unknown>;
    expect(stored).toMatchObject({ holderIdentity: 'a', leaseDurationSeconds: 15, leaseTransitions: 0 });
    expect(stored.renewTime).toMatch(/\.\d{6}Z$/);
  });

  it("publishes the holder's annotations to the other candidates", async () => {
    const api = new FakeKubeApi();
    const a = new LeaderElector(api, { ...lease, identity: 'a', annotations: { 'iac.dev/leader-url': 'http://10.0.0.1:8080' } });
    const b = new LeaderElector(api, { ...lease, identity: 'b', annotations: { 'iac.dev/leader-url': 'http://10.0.0.2:8080' } });
    await a.tryAcquireOrRenew();
    expect(b.holderAnnotation('iac.dev/leader-url')).toBeUndefined(); // b has not looked yet
    expect(await b.tryAcquireOrRenew()).toBe('held');
    expect(b.holderAnnotation('iac.dev/leader-url')).toBe('http://10.0.0.1:8080');
  });

  it('takes over after the holder stops renewing for the lease duration', async () => {
    const api = new FakeKubeApi();
    let t = 0;
    const a = new LeaderElector(api, { ...lease, identity: 'a', now: () => t });
    const b = new LeaderElector(api, { ...lease, identity: 'b', now: () => t });
    await a.tryAcquireOrRenew();
    expect(await b.tryAcquireOrRenew()).toBe('held');
    t += 14_000;
    expect(await b.tryAcquireOrRenew()).toBe('held');
    t += 1_500; // 15.5 s since b first saw this record
    expect(await b.tryAcquireOrRenew()).toBe('leading');
    expect(api.objects('Lease')[0].spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    expect(await a.tryAcquireOrRenew()).toBe('held'); // the old holder sees the new one
  });

  it('settles a concurrent takeover with 409: the loser does not lead', async () => {
    const api = new FakeKubeApi();
    const t = 100_000;
    api.seed({
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: lease.name, namespace: lease.namespace },
      spec: { holderIdentity: '', leaseDurationSeconds: 1 },
    });
    const b = new LeaderElector(api, { ...lease, identity: 'b', now: () => t });
    const c = new LeaderElector(api, { ...lease, identity: 'c', now: () => t });
    const results = await Promise.all([b.tryAcquireOrRenew(), c.tryAcquireOrRenew()]);
    expect([...results].sort()).toEqual(['failed', 'leading']);
    const conflicts = api.callsOf('replace', 'Lease');
    expect(conflicts).toHaveLength(2);
    const winner = (api.objects('Lease')[0].spec as { holderIdentity: string }).holderIdentity;
    expect(winner).toBe(results[0] === 'leading' ? 'b' : 'c');
  });

  it('stops leading at once when renewals fail past the renew deadline, and campaigns again', async () => {
    const api = new FakeKubeApi();
    const events: string[] = [];
    const a = new LeaderElector(api, {
      ...lease,
      identity: 'a',
      leaseDurationMs: 300,
      renewDeadlineMs: 150,
      retryPeriodMs: 20,
      onStartedLeading: () => events.push('start'),
      onStoppedLeading: () => events.push('stop'),
    });
    a.start();
    await until(() => a.isLeader());
    api.failNext('get', new ApiError(503, 'unavailable'), { kind: 'Lease', times: 1000 });
    await until(() => !a.isLeader());
    expect(events).toEqual(['start', 'stop']);
    // the API server comes back: the lease is still ours, so we lead again
    (api as unknown as { failures: unknown[] }).failures.length = 0;
    await until(() => a.isLeader());
    expect(events).toEqual(['start', 'stop', 'start']);
    await a.stop();
  });

  it('stops leading when another replica holds the lease, and releases it on stop', async () => {
    const api = new FakeKubeApi();
    const stops: string[] = [];
    const a = new LeaderElector(api, {
      ...lease,
      identity: 'a',
      leaseDurationMs: 300,
      renewDeadlineMs: 150,
      retryPeriodMs: 20,
      onStoppedLeading: () => stops.push('a'),
    });
    a.start();
    await until(() => a.isLeader());
    // someone forcibly takes the lease
    const current = (await api.get(LeaseType, lease.namespace, lease.name))!;
    await api.replace({ ...current, spec: { ...(current.spec as object), holderIdentity: 'intruder' } });
    await until(() => !a.isLeader());
    expect(stops).toEqual(['a']);
    await a.stop();

    const b = new LeaderElector(api, { ...lease, identity: 'b', leaseDurationMs: 300, renewDeadlineMs: 150, retryPeriodMs: 20 });
    await api.delete(LeaseType, lease.namespace, lease.name);
    b.start();
    await until(() => b.isLeader());
    await b.stop();
    expect(api.objects('Lease')[0].spec).toMatchObject({ holderIdentity: '' });
    // a released lease is taken at once by the next candidate
    const c = new LeaderElector(api, { ...lease, identity: 'c' });
    expect(await c.tryAcquireOrRenew()).toBe('leading');
  });
});
