// Hostile and careless IACSearches against a real control plane (no kubelet: no pod has
// to run). What the API server can refuse at apply time it refuses; a create it refuses
// later (403 from the Priority admission plugin, 422 from an admission policy) shows on the
// search with the server's own message; a search stored before the name rule existed is
// told why it cannot run, events included; the pod policy refuses what a search editor
// must not get; a status patched by someone else is corrected at once.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { waitFor } from '../cluster/control-plane.ts';
import { KubeApiError, type KubeJSON } from '../cluster/kube-client.ts';
import { clusterAvailability } from '../cluster/suite.ts';
import {
  condition,
  createNamespace,
  CRD_NAME,
  CRD_PATH,
  crdText,
  iacsPath,
  searchPods,
  startE2E,
  startOperator,
  tinySearch,
  waitForSearch,
  type E2EEnv,
} from './env.ts';

const availability = clusterAvailability();
const ns = 'hostile';

const bare = (name: string, spec?: Record<string, unknown>) => ({
  apiVersion: 'nas.iac.dev/v1alpha1',
  kind: 'IACSearch',
  metadata: { name, namespace: ns },
  ...(spec && { spec }),
});

describe.skipIf(availability.skip)('hostile and careless IACSearches in a real control plane', () => {
  let env: E2EEnv;
  const client = () => env.cluster.client;

  /** The API server's answer to creating `obj` (strict field validation), or 'created'. */
  async function tryCreate(obj: KubeJSON, dryRun = false): Promise<KubeApiError | 'created'> {
    try {
      await client().create(`${iacsPath(ns)}?fieldValidation=Strict${dryRun ? '&dryRun=All' : ''}`, obj);
      return 'created';
    } catch (err) {
      if (err instanceof KubeApiError) return err;
      throw err;
    }
  }

  /** Events about a search, as the operator writes them (events.k8s.io/v1). */
  async function eventsOf(name: string): Promise<KubeJSON[]> {
    const list = await client().get(`/apis/events.k8s.io/v1/namespaces/${ns}/events`);
    return (list.items as KubeJSON[]).filter((e) => e.regarding?.name === name);
  }

  async function waitForEvent(name: string, reason: string): Promise<KubeJSON> {
    return waitFor(`${reason} event about ${name.slice(0, 40)}...`, async () => (await eventsOf(name)).find((e) => e.reason === reason), 120_000, 500);
  }

  const stalled = (reason: string) => (s: KubeJSON) => condition(s, 'Stalled')?.status === 'True' && condition(s, 'Stalled')?.reason === reason;

  beforeAll(async () => {
    // One GPU node, tainted as GPU nodes usually are: only a search that tolerates the taint
    // (as the default policy allows) runs there; the others' pods stay Pending.
    env = await startE2E({
      kubelet: {
        nodes: [{ name: 'gpu-tainted', cpu: '16', memory: '64Gi', gpus: 2, taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] }],
      },
    });
    await createNamespace(env.cluster, ns);
    // The platform team allows one priority class (that does not exist yet).
    await startOperator(env.cluster, { args: ['--allowed-priority-classes=gpu-low'] });
  }, 300_000);

  afterAll(async () => {
    await env?.stop();
  });

  it('refuses at apply time, naming the field, what the operator could never run', async () => {
    const cases: Array<[string, KubeJSON, string]> = [
      ['a 64-character name (the iac.dev/search label value of every child)', bare('n'.repeat(64), {}), 'metadata.name must be at most 63 characters'],
      ['no spec (it would start a full-length default GPU search)', bare('no-spec'), 'spec: Required value'],
      [
        'a nodeSelector key the Pod API rejects',
        bare('bad-key', { resources: { nodeSelector: { 'gpu type!': 'a100' } } }),
        'resources.nodeSelector: every key must be a label key',
      ],
      [
        'a nodeSelector value the Pod API rejects',
        bare('bad-value', { resources: { nodeSelector: { 'nvidia.com/gpu.product': 'A100 80GB' } } }),
        'spec.resources.nodeSelector.nvidia.com/gpu.product',
      ],
      [
        'GPUs for prune (accepted and ignored before)',
        bare('prune-gpus', { resources: { phases: { prune: { gpus: 1 } } } }),
        'spec.resources.phases.prune.gpus',
      ],
      ['warm-up as long as the search', bare('warmup', { search: { maxEpochs: 10, warmupEpochs: 10 } }), 'search.warmupEpochs must be below search.maxEpochs'],
      [
        'a toleration with operator Exists and a value',
        bare('tol', { resources: { tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', value: 'x' }] } }),
        'toleration value must be empty when operator is Exists',
      ],
    ];
    const failures: string[] = [];
    for (const [what, obj, message] of cases) {
      const answer = await tryCreate(obj);
      if (answer === 'created') failures.push(`${what}: accepted`);
      else if (answer.status !== 422 || !answer.message.includes(message)) failures.push(`${what}: ${answer.status} ${answer.message}`);
    }
    expect(failures).toEqual([]);
    expect(await tryCreate(bare('n'.repeat(63), {}), true)).toBe('created');
  });

  it('a pod refused by the Priority admission plugin (403) shows on the search with its message; the pod follows once the class exists', async () => {
    await client().create(iacsPath(ns), tinySearch('pc', ns, { spec: { resources: { priorityClassName: 'gpu-low' } } }));
    const s = await waitForSearch(env.cluster, ns, 'pc', 'Stalled CreateRefused', stalled('CreateRefused'), 120_000);
    expect(condition(s, 'Stalled').message).toContain('Pod pc-search-1 (403 Forbidden)');
    expect(condition(s, 'Stalled').message).toContain('no PriorityClass with name gpu-low was found');
    expect(condition(s, 'Ready')).toMatchObject({ status: 'False', reason: 'CreateRefused' });
    const event = await waitForEvent('pc', 'CreateRefused');
    expect(event.type).toBe('Warning');
    expect(event.note).toContain('no PriorityClass with name gpu-low was found');
    expect(await searchPods(env.cluster, ns, 'pc')).toEqual([]);

    await client().create('/apis/scheduling.k8s.io/v1/priorityclasses', {
      apiVersion: 'scheduling.k8s.io/v1',
      kind: 'PriorityClass',
      metadata: { name: 'gpu-low' },
      value: 100,
    });
    const running = await waitForSearch(
      env.cluster,
      ns,
      'pc',
      'the pod created',
      (x) => x.status?.phase === 'Searching' && condition(x, 'Stalled')?.status === 'False',
      180_000,
    );
    expect(running.status.phases.search.attempts).toBe(1);
    expect((await searchPods(env.cluster, ns, 'pc')).map((p) => p.metadata.name)).toEqual(['pc-search-1']);
  }, 400_000);

  it('a pod refused with 422 by an admission policy shows on the search with its message', async () => {
    await client().create('/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name: 'frozen-searches' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }] },
        validations: [
          {
            expression: "!has(object.metadata.labels) || !('iac.dev/search' in object.metadata.labels) || object.metadata.labels['iac.dev/search'] != 'frozen'",
            message: 'the platform team froze search frozen',
            reason: 'Invalid',
          },
        ],
      },
    });
    await client().create('/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings', {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name: 'frozen-searches' },
      spec: { policyName: 'frozen-searches', validationActions: ['Deny'] },
    });
    // The policy is enforced once the API server has loaded it: probe with a dry run.
    const probe = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'probe', labels: { 'iac.dev/search': 'frozen' } },
      spec: { containers: [{ name: 'c', image: 'x' }] },
    };
    await waitFor(
      'the admission policy enforced',
      async () => {
        try {
          await client().create(`/api/v1/namespaces/${ns}/pods?dryRun=All`, probe);
          return false;
        } catch (err) {
          return err instanceof KubeApiError && err.status === 422;
        }
      },
      120_000,
      500,
    );

    await client().create(iacsPath(ns), tinySearch('frozen', ns));
    const s = await waitForSearch(env.cluster, ns, 'frozen', 'Stalled CreateRefused', stalled('CreateRefused'), 120_000);
    expect(condition(s, 'Stalled').message).toMatch(/Pod frozen-search-1 \(422 Invalid\): .*the platform team froze search frozen/);
    expect((await waitForEvent('frozen', 'CreateRefused')).note).toContain('the platform team froze search frozen');
    expect(await searchPods(env.cluster, ns, 'frozen')).toEqual([]);
  }, 400_000);

  it('a search stored before the name rule (253 characters) is told why it cannot run, in its status and an event', async () => {
    // An older CRD without the rule, as before an upgrade.
    const crd = parse(crdText());
    delete crd.spec.versions[0].schema.openAPIV3Schema['x-kubernetes-validations'];
    const older = path.join(env.cluster.dir, 'older-crd.yaml');
    writeFileSync(older, stringify(crd));
    await env.cluster.kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=iacnas-e2e', '-f', older]);
    const long = `long-${'n'.repeat(248)}`;
    await waitFor('the older CRD served', async () => (await tryCreate(bare(long, {}), true)) === 'created', 60_000, 500);
    await client().create(iacsPath(ns), bare(long, {}));
    await env.cluster.kubectl(['apply', '--server-side', '--force-conflicts', '--field-manager=iacnas-e2e', '-f', CRD_PATH]);
    await waitFor('the current CRD served', async () => (await tryCreate(bare('n'.repeat(64), {}), true)) !== 'created', 60_000, 500);

    const s = await waitForSearch(env.cluster, ns, long, 'Stalled InvalidSpec', stalled('InvalidSpec'), 120_000);
    expect(condition(s, 'Stalled').message).toContain('metadata.name: at most 63 characters');
    const event = await waitForEvent(long, 'InvalidSpec');
    expect(event.type).toBe('Warning');
    expect(event.metadata.name.length).toBeLessThanOrEqual(253);
    // nothing was created for it (its children's label could not even hold its name)
    for (const kind of ['pods', 'secrets', 'persistentvolumeclaims']) {
      const list = await client().get(`/api/v1/namespaces/${ns}/${kind}`);
      expect(
        (list.items as KubeJSON[]).filter((x) => x.metadata.name.startsWith('long-')),
        kind,
      ).toEqual([]);
    }
    // the current CRD still lets it be changed (suspended) and deleted
    await client().mergePatch(iacsPath(ns, long), { spec: { suspend: true } });
    await client().delete(iacsPath(ns, long));
    expect(
      (await client().get(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${CRD_NAME}`)).spec.versions[0].schema.openAPIV3Schema[
        'x-kubernetes-validations'
      ],
    ).toHaveLength(1);
  }, 400_000);

  it("the pod policy refuses an image of the user's choice, a system priority class, a control-plane toleration and another search's claim", async () => {
    await client().create(iacsPath(ns), tinySearch('victim', ns, { searchEpochs: 100 }));
    await waitForSearch(env.cluster, ns, 'victim', 'its pod created', (x) => x.status?.phases?.search?.attempts === 1, 120_000);
    await client().create(
      iacsPath(ns),
      tinySearch('proxy', ns, {
        spec: {
          image: 'docker.io/attacker/miner:latest',
          resources: {
            priorityClassName: 'system-node-critical',
            tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }],
          },
          artifacts: { claimName: 'victim-artifacts' },
        },
      }),
    );
    const s = await waitForSearch(env.cluster, ns, 'proxy', 'Stalled PolicyViolation', stalled('PolicyViolation'), 120_000);
    const message = condition(s, 'Stalled').message as string;
    for (const field of ['spec.image', 'spec.resources.priorityClassName', 'spec.resources.tolerations[0]', 'spec.artifacts.claimName'])
      expect(message).toContain(field);
    expect((await waitForEvent('proxy', 'PolicyViolation')).type).toBe('Warning');
    expect(await searchPods(env.cluster, ns, 'proxy')).toEqual([]);
    const claims = await client().get(`/api/v1/namespaces/${ns}/persistentvolumeclaims`);
    expect((claims.items as KubeJSON[]).map((c) => c.metadata.name)).not.toContain('proxy-artifacts');
  }, 400_000);

  it('a search the operator runs to the end is never "corrected": its own status survives the round trip through the API server', async () => {
    const toleration = { key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' };
    await client().create(iacsPath(ns), tinySearch('honest', ns, { spec: { resources: { tolerations: [toleration] } } }));
    const done = await waitForSearch(env.cluster, ns, 'honest', 'finished', (x) => ['Succeeded', 'Failed'].includes(x.status?.phase), 300_000);
    expect(done.status.phase, JSON.stringify(done.status.conditions)).toBe('Succeeded');
    expect(done.status.results.meanDice).toBeGreaterThan(0);
    // one more look at the finished search (an edit of an editable field)
    const edited = await client().mergePatch(iacsPath(ns, 'honest'), { spec: { backoffLimit: 5 } });
    const again = await waitForSearch(
      env.cluster,
      ns,
      'honest',
      'reconciled again',
      (x) => x.status?.observedGeneration === edited.metadata.generation,
      60_000,
    );
    expect(again.status.results).toEqual(done.status.results);
    expect(again.status.phase).toBe('Succeeded');
    expect((await eventsOf('honest')).filter((e) => e.reason === 'StatusCorrected')).toEqual([]);
  }, 400_000);

  it('a status patched by someone else is corrected at once: the pod is not deleted and the fake Dice does not stay', async () => {
    await client().create(iacsPath(ns), tinySearch('forged', ns, { searchEpochs: 100 }));
    await waitForSearch(env.cluster, ns, 'forged', 'Searching', (x) => x.status?.phase === 'Searching', 120_000);
    await client().mergePatch(`${iacsPath(ns, 'forged')}/status`, {
      status: { phase: 'Succeeded', results: { meanDice: 0.99 }, completionTime: new Date().toISOString() },
    });
    const event = await waitForEvent('forged', 'StatusCorrected');
    expect(event.note).toContain('status.phase Succeeded: search has not succeeded');
    const s = await waitForSearch(env.cluster, ns, 'forged', 'corrected', (x) => x.status?.phase === 'Searching' && x.status?.results === undefined, 60_000);
    expect(s.status.completionTime).toBeUndefined();
    const [pod] = await searchPods(env.cluster, ns, 'forged');
    expect(pod.metadata.name).toBe('forged-search-1');
    expect(pod.metadata.deletionTimestamp).toBeUndefined();
  }, 400_000);
});
