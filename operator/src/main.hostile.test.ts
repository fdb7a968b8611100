// The operator as a whole (flags, controller, real reconcile) against hostile and careless
// IACSearches, on the in-memory API: the pod policy from the flags, a create the API
// server refuses shown on the search, and a status written by someone else corrected at once.
import { describe, expect, it } from 'vitest';
import type { IACSearchStatus } from './api/status.ts';
import { silentLogger } from './controller/log.ts';
import { FakeKubeApi } from '../testing/fake-kube-api.ts';
import { IACSearchType } from './k8s/resources.ts';
import { ApiError, type KubeObject } from './k8s/types.ts';
import { parseOperatorArgs, startOperator, type OperatorConfig, type RunningOperator } from './main.ts';

/** Waits for a condition that follows from what the test did; the bound only stops a hang. */
async function until<T>(what: string, check: () => T | undefined | false, ms = 120_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const search = (name: string, spec: Record<string, unknown>): KubeObject => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name, namespace: 'lab' },
  spec,
});
const statusOf = (api: FakeKubeApi, name: string) =>
  api.objects('IACSearch', 'lab').find((o) => o.metadata.name === name)?.status as IACSearchStatus | undefined;
const stalled = (api: FakeKubeApi, name: string) => statusOf(api, name)?.conditions?.find((c: { type: string }) => c.type === 'Stalled');
const events = (api: FakeKubeApi, reason: string) =>
  api.objects('Event', 'lab').filter((e) => e.reason === reason) as Array<KubeObject & { note: string; type: string }>;

function config(args: string[] = []): OperatorConfig {
  const cfg = parseOperatorArgs(['--host', '127.0.0.1', '--port', '1', '--trainer-image', 'registry.example.com/iac/trainer-gpu:0.1.0', ...args], {});
  if (cfg === 'help') throw new Error('unexpected');
  return { ...cfg, port: 0 };
}

async function withOperator(args: string[], fn: (api: FakeKubeApi, op: RunningOperator) => Promise<void>): Promise<void> {
  const api = new FakeKubeApi();
  const op = await startOperator(config(args), api, silentLogger);
  try {
    await fn(api, op);
  } finally {
    await op.stop();
  }
}

describe('iacnas operator: the pod policy flags', () => {
  it('default to the trainer image repository, no priority class, GPU node pools and the GPU taint', () => {
    expect(config().policy).toEqual({
      allowedImages: ['registry.example.com/iac/trainer-gpu'],
      allowedPriorityClasses: [],
      allowedNodeSelectorKeys: expect.arrayContaining(['nvidia.com/*', 'topology.kubernetes.io/*']),
      allowedTolerations: [{ key: 'nvidia.com/gpu' }],
    });
    const set = config([
      '--allowed-images=registry.example.com/ml/**,docker.io/library/python:3.12',
      '--allowed-priority-classes=gpu-low, gpu-high',
      '--allowed-node-selector-keys=',
      '--allowed-tolerations=nvidia.com/gpu,dedicated=ml:NoSchedule',
    ]).policy;
    expect(set).toEqual({
      allowedImages: ['registry.example.com/ml/**', 'docker.io/library/python:3.12'],
      allowedPriorityClasses: ['gpu-low', 'gpu-high'],
      allowedNodeSelectorKeys: [],
      allowedTolerations: [{ key: 'nvidia.com/gpu' }, { key: 'dedicated', value: 'ml', effect: 'NoSchedule' }],
    });
    expect(() => config(['--allowed-tolerations=dedicated:Never'])).toThrow(/--allowed-tolerations/);
  });

  it('refuses a search that asks for more: a condition and a Warning event on it, no pod, no Secret, no claim', async () => {
    await withOperator([], async (api) => {
      await api.create(search('proxy', { image: 'docker.io/attacker/miner:latest', resources: { priorityClassName: 'system-node-critical' } }));
      await api.create(search('fine', { resources: { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists' }] } }));
      const cond = await until('PolicyViolation', () => (stalled(api, 'proxy')?.reason === 'PolicyViolation' ? stalled(api, 'proxy') : undefined));
      expect(cond.message).toContain("spec.image: 'docker.io/attacker/miner:latest' matches none of the allowed images");
      expect(cond.message).toContain("'system-node-critical' is not an allowed priority class");
      const [event] = await until('the Warning event', () => (events(api, 'PolicyViolation').length ? events(api, 'PolicyViolation') : undefined));
      expect(event.type).toBe('Warning');
      await until('the allowed search runs', () => statusOf(api, 'fine')?.phase === 'Searching');
      expect(api.objects('Pod', 'lab').map((p) => p.metadata.name)).toEqual(['fine-search-1']);
      expect([...api.objects('Secret', 'lab'), ...api.objects('PersistentVolumeClaim', 'lab')].map((o) => o.metadata.name).sort()).toEqual([
        'fine-artifacts',
        'fine-progress',
      ]);
    });
  });
});

describe('iacnas operator: what the API server refuses shows on the search', () => {
  it("a refused pod create: Stalled with the server's message and a Warning event; the pod follows once the cause is gone", async () => {
    await withOperator(['--allowed-priority-classes=gpu-low'], async (api) => {
      const message = 'pods "pc-search-1" is forbidden: no PriorityClass with name gpu-low was found';
      api.failNext('create', new ApiError(403, `POST /api/v1/namespaces/lab/pods: 403 ${message}`, 'Forbidden'), { kind: 'Pod', times: 3 });
      await api.create(search('pc', { resources: { priorityClassName: 'gpu-low' } }));
      await until('the pod, after three refusals', () => api.objects('Pod', 'lab').length === 1);
      await until('Searching', () => statusOf(api, 'pc')?.phase === 'Searching' && stalled(api, 'pc')?.status === 'False');
      // While refused, the search said why, in the API server's words
      const written = api
        .callsOf('patchStatus', 'IACSearch')
        .map((c) =>
          (c.body as { status: { conditions?: Array<{ type: string; reason: string; message: string }> } }).status.conditions?.find(
            (x) => x.type === 'Stalled',
          ),
        );
      expect(written).toContainEqual(
        expect.objectContaining({ reason: 'CreateRefused', message: expect.stringContaining(`Pod pc-search-1 (403 Forbidden): ${message}`) }),
      );
      const [event] = await until('the Warning event', () => (events(api, 'CreateRefused').length ? events(api, 'CreateRefused') : undefined));
      expect(event).toMatchObject({ type: 'Warning', note: expect.stringContaining(message) });
      expect(api.objects('Pod', 'lab').map((p) => p.metadata.name)).toEqual(['pc-search-1']);
      expect(statusOf(api, 'pc')?.phases?.search?.attempts).toBe(1);
    });
  });
});

describe('iacnas operator: a status written by someone else', () => {
  it('is reconciled at once: a patched phase Succeeded with a fake Dice is overwritten and the running pod kept', async () => {
    await withOperator([], async (api) => {
      await api.create(search('forged', {}));
      await until('Searching', () => statusOf(api, 'forged')?.phase === 'Searching');
      const before = api.objects('IACSearch', 'lab')[0];
      await api.mergePatchStatus(IACSearchType, 'lab', 'forged', {
        status: { phase: 'Succeeded', results: { meanDice: 0.99 }, completionTime: new Date().toISOString() },
      });
      const [event] = await until('StatusCorrected', () => (events(api, 'StatusCorrected').length ? events(api, 'StatusCorrected') : undefined));
      expect(event.note).toContain('status.phase Succeeded: search has not succeeded');
      await until('the corrected status', () => statusOf(api, 'forged')?.phase === 'Searching' && statusOf(api, 'forged')?.results === undefined);
      expect(api.objects('Pod', 'lab').map((p) => p.metadata.name)).toEqual(['forged-search-1']);
      expect(api.callsOf('delete', 'Pod')).toEqual([]);
      expect(before.metadata.generation).toBe(api.objects('IACSearch', 'lab')[0].metadata.generation);
    });
  });
});
