// The generated CRD in a real API server: it installs with server-side apply, kubectl
// explains it, the API server itself (OpenAPI schema and CEL rules) rejects bad specs
// with a message naming the field, and the search definition is immutable while
// suspend and the budget stay editable.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApiError } from '../cluster/kube-client.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import { createNamespace, iacsPath, startE2E, type E2EEnv } from './env.ts';

const availability = clusterAvailability();
const ns = 'crd';

interface InvalidCase {
  what: string;
  spec: Record<string, unknown>;
  /** Every string must appear in the API server's message. */
  expect: string[];
}

// Each case breaks one rule; the message must name the field so a user can fix it.
const invalid: InvalidCase[] = [
  { what: 'negative GPUs', spec: { resources: { gpus: -1 } }, expect: ['spec.resources.gpus'] },
  { what: 'too many GPUs', spec: { resources: { gpus: 65 } }, expect: ['spec.resources.gpus'] },
  { what: 'CPU not a quantity', spec: { resources: { cpu: 'two' } }, expect: ['spec.resources.cpu'] },
  { what: 'memory not a quantity', spec: { resources: { memory: '8GB' } }, expect: ['spec.resources.memory'] },
  { what: 'unknown dataset format', spec: { dataset: { format: 'dicom' } }, expect: ['spec.dataset.format', 'phantom'] },
  { what: 'msd without a path (CEL)', spec: { dataset: { format: 'msd' } }, expect: ['spec.dataset', 'dataset.path is required'] },
  {
    what: 'split not summing to 1 (CEL)',
    spec: { dataset: { split: { train: 0.5, val: 0.2, test: 0.2 } } },
    expect: ['spec.dataset', 'train + val + test must be 1'],
  },
  { what: 'slices too small', spec: { dataset: { sliceSize: 8 } }, expect: ['spec.dataset.sliceSize'] },
  { what: 'too few phantom cases', spec: { dataset: { cases: 2 } }, expect: ['spec.dataset.cases'] },
  { what: 'zero search epochs', spec: { search: { maxEpochs: 0 } }, expect: ['spec.search.maxEpochs'] },
  { what: 'unknown operation', spec: { search: { operations: ['conv_3x3', 'conv_9x9'] } }, expect: ['spec.search.operations[1]', 'conv_3x3'] },
  { what: 'single operation', spec: { search: { operations: ['conv_3x3'] } }, expect: ['spec.search.operations'] },
  { what: 'too many cell nodes', spec: { search: { nodes: 9 } }, expect: ['spec.search.nodes'] },
  { what: 'stability threshold above 1', spec: { search: { stability: { threshold: 2 } } }, expect: ['spec.search.stability.threshold'] },
  { what: 'unknown stability criterion', spec: { search: { stability: { criterion: 'kl' } } }, expect: ['spec.search.stability.criterion', 'jsd'] },
  { what: 'U-Net too deep', spec: { backbone: { depth: 6 } }, expect: ['spec.backbone.depth'] },
  { what: 'negative backoffLimit', spec: { backoffLimit: -1 }, expect: ['spec.backoffLimit'] },
  { what: 'unknown budget action', spec: { budget: { action: 'Delete' } }, expect: ['spec.budget.action', 'Suspend'] },
  { what: 'zero GPU-hour budget', spec: { budget: { maxGPUHours: 0 } }, expect: ['spec.budget.maxGPUHours'] },
  { what: 'negative GPU price', spec: { cost: { gpuHourlyUSD: -1 } }, expect: ['spec.cost.gpuHourlyUSD'] },
  { what: 'artifacts claim not a DNS name', spec: { artifacts: { claimName: 'Bad_Name' } }, expect: ['spec.artifacts.claimName'] },
  {
    what: 'unknown toleration operator',
    spec: { resources: { tolerations: [{ key: 'gpu', operator: 'Maybe' }] } },
    expect: ['spec.resources.tolerations[0].operator'],
  },
  { what: 'seed of the wrong type', spec: { seed: 'abc' }, expect: ['spec.seed', 'integer'] },
  { what: 'zero active deadline', spec: { activeDeadlineSeconds: 0 }, expect: ['spec.activeDeadlineSeconds'] },
  { what: 'unknown field', spec: { serach: { maxEpochs: 3 } }, expect: ['spec.serach'] },
];

const search = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name, namespace: ns },
  spec,
});

describe.skipIf(availability.skip)('IACSearch CRD in a real API server', () => {
  let env: E2EEnv;

  beforeAll(async () => {
    env = await startE2E();
    await createNamespace(env.cluster, ns);
  });

  afterAll(async () => {
    await env?.stop();
  });

  it('is installed by server-side apply and explained by kubectl', async () => {
    const crd = await env.cluster.client.get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/iacsearches.nas.iac.dev');
    expect(crd.metadata.managedFields.map((m: { manager: string; operation: string }) => `${m.manager}/${m.operation}`)).toContain('iacnas-e2e/Apply');
    const spec = await env.cluster.kubectl(['explain', 'iacs.spec']);
    expect(spec.stdout).toContain('The search definition and how to run it');
    expect(spec.stdout).toMatch(/backoffLimit\s+<integer>/);
    const stability = await env.cluster.kubectl(['explain', 'iacs.spec.search.stability.threshold']);
    expect(stability.stdout).toContain('stable');
  });

  it('applies the defaults of the schema', async () => {
    const created = await env.cluster.client.create(iacsPath(ns), search('defaults', {}));
    expect(created.spec.dataset.format).toBe('phantom');
    expect(created.spec.search.maxEpochs).toBe(200);
    expect(created.spec.resources.gpus).toBe(1);
    expect(created.spec.suspend).toBe(false);
    await env.cluster.client.delete(iacsPath(ns, 'defaults'));
  });

  it(`rejects ${invalid.length} invalid specs in the API server with a message naming the field`, async () => {
    expect(invalid.length).toBeGreaterThanOrEqual(15);
    const failures: string[] = [];
    for (const [i, c] of invalid.entries()) {
      try {
        await env.cluster.client.create(`${iacsPath(ns)}?fieldValidation=Strict`, search(`bad-${i}`, c.spec));
        failures.push(`${c.what}: accepted`);
      } catch (err) {
        if (!(err instanceof KubeApiError)) throw err;
        const msg = err.message;
        if (err.status !== 422 && err.status !== 400) failures.push(`${c.what}: status ${err.status}: ${msg}`);
        for (const e of c.expect) if (!msg.includes(e)) failures.push(`${c.what}: message lacks "${e}": ${msg}`);
      }
    }
    expect(failures).toEqual([]);
  });

  it('rejects a bad spec through kubectl apply with the field in the error', async () => {
    const yaml = `apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata:\n  name: bad-kubectl\n  namespace: ${ns}\nspec:\n  resources:\n    gpus: -2\n`;
    const res = await env.cluster.kubectl(['apply', '-f', '-'], { input: yaml, allowFail: true });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('spec.resources.gpus');
  });

  it('refuses a change to the search definition and accepts suspend and budget changes', async () => {
    await env.cluster.client.create(iacsPath(ns), search('immutable', { search: { maxEpochs: 5, warmupEpochs: 1 } }));
    const tries: Array<[string, Record<string, unknown>]> = [
      ['spec.search', { spec: { search: { maxEpochs: 6 } } }],
      ['spec.dataset', { spec: { dataset: { sliceSize: 64 } } }],
      ['spec.resources', { spec: { resources: { gpus: 2 } } }],
      ['spec.seed', { spec: { seed: 7 } }],
    ];
    for (const [field, patch] of tries) {
      const err = await env.cluster.client.mergePatch(iacsPath(ns, 'immutable'), patch).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, `changing ${field} must be refused`).toBeInstanceOf(KubeApiError);
      expect((err as KubeApiError).message).toContain(`${field} is immutable`);
    }
    const suspended = await env.cluster.client.mergePatch(iacsPath(ns, 'immutable'), { spec: { suspend: true, budget: { maxGPUHours: 2 }, backoffLimit: 5 } });
    expect(suspended.spec.suspend).toBe(true);
    expect(suspended.spec.budget.maxGPUHours).toBe(2);
    expect(suspended.spec.search.maxEpochs).toBe(5);
    const resumed = await env.cluster.kubectl(['patch', 'iacs', 'immutable', '-n', ns, '--type=merge', '-p', '{"spec":{"suspend":false}}']);
    expect(resumed.code).toBe(0);
  });

  it('lists searches with the printer columns', async () => {
    const out = await env.cluster.kubectl(['get', 'iacs', '-n', ns]);
    const header = out.stdout.split('\n')[0].split(/\s+/).filter(Boolean);
    expect(header).toEqual(['NAME', 'PHASE', 'EPOCH', 'STABLE', 'DICE', 'GPU-HOURS', 'COST', 'AGE']);
    expect(out.stdout).toContain('immutable');
  });
});
