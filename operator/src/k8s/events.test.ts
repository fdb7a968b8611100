import { describe, expect, it } from 'vitest';
import { EventRecorder, eventName, microTime } from './events.ts';
import { FakeKubeApi } from '../../testing/fake-kube-api.ts';
import type { KubeObject } from './types.ts';

const search: KubeObject = {
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name: 's', namespace: 'lab', uid: 'u1', resourceVersion: '7' },
};

describe('EventRecorder', () => {
  it('writes events.k8s.io/v1 events with a microsecond eventTime', async () => {
    const api = new FakeKubeApi();
    const rec = new EventRecorder(api, { instance: 'op-0' });
    await rec.record(search, 'Normal', 'PodCreated', 'created pod s-search-1');
    const [ev] = api.objects('Event', 'lab');
    expect(ev.apiVersion).toBe('events.k8s.io/v1');
    expect(ev.eventTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(ev.regarding).toMatchObject({ kind: 'IACSearch', name: 's', uid: 'u1' });
    expect(ev).toMatchObject({ reason: 'PodCreated', note: 'created pod s-search-1', type: 'Normal', reportingInstance: 'op-0' });
    expect(microTime(new Date('2026-01-02T03:04:05.678Z'))).toBe('2026-01-02T03:04:05.678000Z');
  });

  it('de-duplicates a repeated event into a series on the first one', async () => {
    const api = new FakeKubeApi();
    const rec = new EventRecorder(api, { instance: 'op-0' });
    await rec.record(search, 'Warning', 'BackOff', 'retrying');
    await rec.record(search, 'Warning', 'BackOff', 'retrying');
    await rec.record(search, 'Warning', 'BackOff', 'retrying');
    await rec.record(search, 'Warning', 'BackOff', 'something else');
    const events = api.objects('Event', 'lab');
    expect(events).toHaveLength(2);
    const first = events.find((e) => e.note === 'retrying')!;
    expect((first.series as { count: number }).count).toBe(3);
  });

  it('creates a new event after the window and when the old one is gone', async () => {
    const api = new FakeKubeApi();
    let t = Date.parse('2026-01-01T00:00:00Z');
    const rec = new EventRecorder(api, { instance: 'op-0', windowMs: 1000, now: () => new Date(t) });
    const a = await rec.record(search, 'Normal', 'R', 'n');
    t += 2000;
    const b = await rec.record(search, 'Normal', 'R', 'n');
    expect(b).not.toBe(a);
    await api.delete({ apiVersion: 'events.k8s.io/v1', kind: 'Event', plural: 'events', namespaced: true }, 'lab', b);
    const c = await rec.record(search, 'Normal', 'R', 'n');
    expect(c).not.toBe(b);
    expect(
      api
        .objects('Event', 'lab')
        .map((e) => e.metadata.name)
        .sort(),
    ).toEqual([a, c].sort());
  });

  it('names the events of an object with a 253-character name within the 253 characters an Event may have', async () => {
    const api = new FakeKubeApi();
    const rec = new EventRecorder(api, { instance: 'op-0' });
    const longName = `${'a'.repeat(234)}-${'b'.repeat(18)}`; // 253, a '-' where the cut falls
    const name = await rec.record(
      { ...search, metadata: { ...search.metadata, name: longName } },
      'Warning',
      'InvalidSpec',
      'metadata.name: at most 63 characters',
    );
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
    const [ev] = api.objects('Event', 'lab');
    expect(ev.regarding).toMatchObject({ name: longName });
    expect(eventName('s', '18c1')).toBe('s.18c1');
    expect(eventName(`${'x'.repeat(250)}-yz`, '0123456789abcdef0').length).toBeLessThanOrEqual(253);
  });
});
