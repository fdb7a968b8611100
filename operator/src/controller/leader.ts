// Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
// a candidate takes the lease when it is free or when the holder has not renewed it for
// leaseDuration (measured on this replica's clock from when it last saw the record
// change, so clock skew between replicas does not matter); the leader renews every
// retryPeriod and gives up leadership, at once, when it has not renewed for renewDeadline
// or sees another holder. Concurrent takeovers are settled by resourceVersion: the
// loser's replace gets 409 Conflict.
import { microTime } from '../k8s/events.ts';
import { LeaseType } from '../k8s/resources.ts';
import { isConflict, type KubeApi, type KubeObject } from '../k8s/types.ts';
import type { Logger } from './log.ts';

export interface LeaderElectionOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Annotations the holder puts on the Lease (e.g. the leader's URL for standbys). */
  annotations?: Record<string, string>;
  onStartedLeading?: () => void;
  /** Called the moment leadership is lost or released: stop reconciling. */
  onStoppedLeading?: () => void;
  now?: () => number;
  log?: Logger;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export type AttemptResult = 'leading' | 'held' | 'failed';

export class LeaderElector {
  private readonly api: KubeApi;
  private readonly o: Required<Omit<LeaderElectionOptions, 'log' | 'onStartedLeading' | 'onStoppedLeading' | 'annotations'>> &
    Pick<LeaderElectionOptions, 'log' | 'onStartedLeading' | 'onStoppedLeading' | 'annotations'>;
  private observed: { record: string; at: number } | undefined;
  private leading = false;
  private stopped = false;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  /** The Lease as last read or written. */
  private lastLease: KubeObject | undefined;

  constructor(api: KubeApi, opts: LeaderElectionOptions) {
    this.api = api;
    this.o = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, now: () => Date.now(), ...opts };
    if (this.o.renewDeadlineMs >= this.o.leaseDurationMs) throw new Error('leader election: renew deadline must be shorter than the lease duration');
    if (this.o.retryPeriodMs >= this.o.renewDeadlineMs) throw new Error('leader election: retry period must be shorter than the renew deadline');
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** The current holder's annotation `key`, as of the last attempt (standbys try every retry period). */
  holderAnnotation(key: string): string | undefined {
    const spec = (this.lastLease?.spec ?? {}) as LeaseSpec;
    if (!spec.holderIdentity) return undefined;
    return this.lastLease?.metadata.annotations?.[key];
  }

  /** One attempt to take or renew the lease. */
  async tryAcquireOrRenew(): Promise<AttemptResult> {
    const now = this.o.now();
    const durationSeconds = Math.ceil(this.o.leaseDurationMs / 1000);
    const lease = await this.api.get(LeaseType, this.o.namespace, this.o.name);
    if (!lease) {
      const spec: LeaseSpec = {
        holderIdentity: this.o.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: microTime(new Date(now)),
        renewTime: microTime(new Date(now)),
        leaseTransitions: 0,
      };
      try {
        this.lastLease = await this.api.create({
          apiVersion: LeaseType.apiVersion,
          kind: 'Lease',
          metadata: { name: this.o.name, namespace: this.o.namespace, annotations: this.o.annotations },
          spec,
        });
      } catch (err) {
        if (isConflict(err)) return 'failed';
        throw err;
      }
      this.observed = { record: JSON.stringify(spec), at: now };
      return 'leading';
    }
    this.lastLease = lease;
    const spec = (lease.spec ?? {}) as LeaseSpec;
    const record = JSON.stringify(spec);
    if (this.observed?.record !== record) this.observed = { record, at: now };
    const holder = spec.holderIdentity ?? '';
    const mine = holder === this.o.identity;
    const durationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (holder && !mine && this.observed.at + durationMs > now) return 'held';
    const next: LeaseSpec = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: durationSeconds,
      acquireTime: mine ? spec.acquireTime : microTime(new Date(now)),
      renewTime: microTime(new Date(now)),
      leaseTransitions: (spec.leaseTransitions ?? 0) + (mine ? 0 : 1),
    };
    try {
      const metadata = this.o.annotations ? { ...lease.metadata, annotations: { ...lease.metadata.annotations, ...this.o.annotations } } : lease.metadata;
      this.lastLease = await this.api.replace({ ...lease, metadata, spec: next } as KubeObject);
    } catch (err) {
      if (isConflict(err)) return 'failed';
      throw err;
    }
    this.observed = { record: JSON.stringify(next), at: now };
    return 'leading';
  }

  /** Campaigns, leads and campaigns again after a loss, until stop(). */
  start(): void {
    this.loop ??= this.run();
  }

  private async attempt(timeoutMs: number): Promise<AttemptResult> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.tryAcquireOrRenew(),
        new Promise<AttemptResult>((resolve) => {
          timer = setTimeout(() => resolve('failed'), Math.max(1, timeoutMs));
        }),
      ]);
    } catch (err) {
      this.o.log?.warn('leader election: lease request failed', { error: err instanceof Error ? err.message : String(err) });
      return 'failed';
    } finally {
      clearTimeout(timer);
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      // campaign
      while (!this.stopped) {
        if ((await this.attempt(this.o.renewDeadlineMs)) === 'leading') break;
        await this.sleep(this.o.retryPeriodMs * (1 + Math.random() * 0.2));
      }
      if (this.stopped) return;
      this.leading = true;
      this.o.log?.info('leader election: became leader', { lease: `${this.o.namespace}/${this.o.name}`, identity: this.o.identity });
      this.o.onStartedLeading?.();
      // renew
      let lastRenew = this.o.now();
      while (!this.stopped && this.leading) {
        await this.sleep(this.o.retryPeriodMs);
        if (this.stopped || !this.leading) break;
        const left = lastRenew + this.o.renewDeadlineMs - this.o.now();
        const result = await this.attempt(left);
        if (this.stopped || !this.leading) break;
        if (result === 'leading') {
          lastRenew = this.o.now();
        } else if (result === 'held' || this.o.now() - lastRenew >= this.o.renewDeadlineMs) {
          this.lose(result === 'held' ? 'another replica holds the lease' : 'renew deadline passed');
        }
      }
    }
  }

  private lose(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.o.log?.warn('leader election: lost leadership', { reason: why });
    this.o.onStoppedLeading?.();
  }

  /** Stops campaigning; a leader releases the lease so a standby takes over at once. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.wake?.();
    const wasLeading = this.leading;
    if (wasLeading) {
      this.leading = false;
      this.o.onStoppedLeading?.();
    }
    await this.loop;
    if (wasLeading && opts.release !== false) await this.release();
  }

  private async release(): Promise<void> {
    try {
      const lease = await this.api.get(LeaseType, this.o.namespace, this.o.name);
      const spec = (lease?.spec ?? {}) as LeaseSpec;
      if (!lease || spec.holderIdentity !== this.o.identity) return;
      const now = microTime(new Date(this.o.now()));
      await this.api.replace({
        ...lease,
        spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1, acquireTime: now, renewTime: now },
      } as KubeObject);
      this.o.log?.info('leader election: released the lease');
    } catch (err) {
      this.o.log?.warn('leader election: could not release the lease', { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}
