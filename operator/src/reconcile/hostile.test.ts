// Hostile and careless IACSearches, each reproduced against the pure state machine:
// searches that could never progress and said nothing (3), the editor role used as a
// pod-creation proxy (4), and a forged status the operator trusted (8).
import { describe, expect, it } from 'vitest';
import { defaultPolicy, parseAllowedToleration, type PodPolicy, type RefusedCreate } from './index.ts';
import { imageMatches, parseImageRef } from './policy.ts';
import type { KubeObject } from './types.ts';
import { at, result, runningWorld, World } from '../../testing/world.ts';

type Result = { actions: Array<{ type: string; reason?: string; message?: string; object?: KubeObject }> };
const creates = (r: Result, kind?: string) =>
  r.actions.filter((a) => a.type === 'create' && (!kind || a.object!.kind === kind)).map((a) => a.object!.metadata.name);
const deletes = (r: Result) => r.actions.filter((a) => a.type === 'delete');
const warnings = (r: Result) => r.actions.filter((a) => a.type === 'event' && (a as { eventType?: string }).eventType === 'Warning');
const cond = (w: World, type: string) => w.status.conditions?.find((c: { type: string }) => c.type === type);

const policy: PodPolicy = defaultPolicy('registry.example.com/iac/trainer-gpu:0.1.0');
const withPolicy = (spec: Record<string, unknown>, opts: { name?: string } = {}) =>
  new World(spec, { ...opts, settings: { defaultImage: 'registry.example.com/iac/trainer-gpu:0.1.0', policy } });

describe('(3) a search that cannot progress says so on itself', () => {
  it('refuses a name longer than 63 characters (the iac.dev/search label value of every child) before creating anything', () => {
    for (const length of [64, 253]) {
      const w = new World({}, { name: 'n'.repeat(length) });
      const r = w.step(at(0));
      expect(creates(r), `${length}`).toEqual([]);
      expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
      expect(cond(w, 'Stalled').message).toMatch(/metadata\.name: at most 63 characters/);
      expect(warnings(r).map((e) => e.reason)).toEqual(['InvalidSpec']);
    }
    // 63 is fine: its pods, Secret and claim are all valid names with a valid label
    expect(creates(new World({}, { name: 'n'.repeat(63) }).step(at(0)))).toHaveLength(3);
  });

  it('refuses a nodeSelector key the Pod API would reject (422) instead of backing off on it', () => {
    const w = new World({ resources: { nodeSelector: { 'gpu type!': 'a100' } } });
    const r = w.step(at(0));
    expect(creates(r)).toEqual([]);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(cond(w, 'Stalled').message).toMatch(/spec\.resources\.nodeSelector.*'gpu type!' is not a label key/);
    const value = new World({ resources: { nodeSelector: { 'nvidia.com/gpu.product': 'A100 80GB' } } });
    value.step(at(0));
    expect(cond(value, 'Stalled').message).toMatch(/spec\.resources\.nodeSelector\.nvidia\.com\/gpu\.product: must be a label value/);
  });

  it('refuses tolerations the Pod API would reject', () => {
    for (const [toleration, field] of [
      [{ key: 'gpu', operator: 'Exists', value: 'x' }, 'tolerations[0].value'],
      [{ key: 'gpu', effect: 'NoSchedule', tolerationSeconds: 5 }, 'tolerations[0].tolerationSeconds'],
      [{ value: 'x' }, 'tolerations[0].operator'],
    ] as const) {
      const w = new World({ resources: { tolerations: [toleration] } });
      expect(creates(w.step(at(0)))).toEqual([]);
      expect(cond(w, 'Stalled').message).toContain(`spec.resources.${field}`);
    }
  });

  it('requires a spec: a search without one does not start a full-length default GPU search', () => {
    const w = new World();
    delete (w.search as { spec?: unknown }).spec;
    const r = w.step(at(0));
    expect(creates(r)).toEqual([]);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
    expect(cond(w, 'Stalled').message).toMatch(/^[\s\S]*spec: required/m);
    // `spec: {}` asks for the defaults explicitly
    expect(creates(new World({}).step(at(0)), 'Pod')).toEqual(['demo-search-1']);
  });

  it('refuses resources.phases.prune.gpus instead of ignoring it', () => {
    const w = new World({ resources: { phases: { prune: { gpus: 2 } } } });
    expect(creates(w.step(at(0)))).toEqual([]);
    expect(cond(w, 'Stalled').message).toMatch(/spec\.resources\.phases\.prune\.gpus: prune never requests a GPU/);
    expect(creates(new World({ resources: { phases: { prune: { gpus: 0, cpu: '1' } } } }).step(at(0)), 'Pod')).toEqual(['demo-search-1']);
  });

  it("catches the trainer's cross-field checks before any pod (or GPU) is used", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ search: { maxEpochs: 10, warmupEpochs: 10 } }, /spec\.search\.warmupEpochs: 10 is not below search\.maxEpochs 10/],
      [{ search: { stability: { pruneTo: [1, 3] } } }, /spec\.search\.stability\.pruneTo: must be strictly decreasing/],
      [{ search: { operations: ['conv_3x3', 'conv_3x3'] } }, /spec\.search\.operations: conv_3x3 listed more than once/],
      [{ search: { stability: { threshold: 1e-3, autoScale: 0.5 } } }, /spec\.search\.stability\.autoScale: 0\.5 scales the automatic test/],
      [{ backbone: { baseFilters: 6 } }, /spec\.search\.partialChannels: 4 does not divide backbone\.baseFilters 6/],
      [{ backbone: { depth: 5 }, dataset: { sliceSize: 48 } }, /spec\.dataset\.sliceSize: 48 is not a multiple of 2\^backbone\.depth = 32/],
    ];
    for (const [spec, message] of cases) {
      const w = new World(spec);
      const r = w.step(at(0));
      expect(creates(r), JSON.stringify(spec)).toEqual([]);
      expect(cond(w, 'Stalled'), JSON.stringify(spec)).toMatchObject({ status: 'True', reason: 'InvalidSpec' });
      expect(cond(w, 'Stalled').message).toMatch(message);
    }
  });

  it("says on the search when the API server refuses to create its pod, with the server's message, and recovers when it is fixed", () => {
    const w = new World({ resources: { priorityClassName: 'gpu-low' } });
    const refusal: RefusedCreate = {
      kind: 'Pod',
      name: 'demo-search-1',
      code: 403,
      reason: 'Forbidden',
      message: 'pods "demo-search-1" is forbidden: no PriorityClass with name gpu-low was found',
    };
    const refuse = (o: KubeObject) => (o.kind === 'Pod' ? refusal : undefined);
    let r = w.step(at(0), refuse);
    expect(w.pods).toEqual([]);
    expect(w.secrets.map((s) => s.metadata.name)).toEqual(['demo-progress']); // created before the pod
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'CreateRefused' });
    expect(cond(w, 'Stalled').message).toContain('no PriorityClass with name gpu-low was found');
    expect(cond(w, 'Stalled').message).toContain('Pod demo-search-1 (403 Forbidden)');
    expect(cond(w, 'Ready')).toMatchObject({ status: 'False', reason: 'CreateRefused' });
    expect(warnings(r)).toEqual([expect.objectContaining({ reason: 'CreateRefused', message: expect.stringContaining('no PriorityClass with name gpu-low') })]);
    expect(r.actions.filter((a) => a.type === 'event').map((a) => a.reason)).toEqual(['CreateRefused']); // no "phase started" for a pod that never was
    expect(w.status.phases.search).toMatchObject({ attempts: 0 });
    expect(w.status.phase).toBe('Pending');

    // The retry is refused the same way: the condition stays, no second event
    r = w.step(at(5), refuse);
    expect(warnings(r)).toEqual([]);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'CreateRefused' });

    // The priority class now exists: the same attempt number goes through
    r = w.step(at(20));
    expect(creates(r, 'Pod')).toEqual(['demo-search-1']);
    expect(w.status.phase).toBe('Searching');
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'False' });
  });

  it('says so when the Secret or the claim is refused (e.g. a storage quota), and creates no pod', () => {
    const w = new World();
    const r = w.step(at(0), (o) =>
      o.kind === 'PersistentVolumeClaim'
        ? {
            kind: o.kind,
            name: o.metadata.name,
            code: 403,
            reason: 'Forbidden',
            message: 'exceeded quota: storage, requested: requests.storage=10Gi, used: requests.storage=95Gi, limited: requests.storage=100Gi',
          }
        : undefined,
    );
    expect(w.pods).toEqual([]);
    expect(creates(r)).toEqual([]);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'CreateRefused' });
    expect(cond(w, 'Stalled').message).toMatch(/PersistentVolumeClaim demo-artifacts \(403 Forbidden\): exceeded quota/);
  });
});

describe('(4) the editor role is not a pod-creation proxy', () => {
  const refused = (w: World, r: Result) => {
    expect(creates(r), 'nothing is created').toEqual([]);
    expect(w.pods).toEqual([]);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'PolicyViolation' });
    expect(warnings(r).map((e) => e.reason)).toEqual(['PolicyViolation']);
    return cond(w, 'Stalled').message as string;
  };

  it("refuses an image of the user's choice, a system priority class, a control-plane toleration and node selector, and another search's claim", () => {
    const w = withPolicy({
      image: 'docker.io/attacker/miner:latest',
      resources: {
        priorityClassName: 'system-node-critical',
        tolerations: [{ key: 'node-role.kubernetes.io/control-plane', operator: 'Exists', effect: 'NoSchedule' }, { operator: 'Exists' }],
        nodeSelector: { 'node-role.kubernetes.io/control-plane': '' },
      },
      artifacts: { claimName: 'victim-artifacts' },
    });
    // the victim's claim exists, but belongs to another search
    w.claims.push({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: 'victim-artifacts',
        namespace: 'ml',
        labels: { 'iac.dev/search': 'victim' },
        ownerReferences: [{ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', name: 'victim', uid: 'uid-victim', controller: true }],
      },
    });
    const message = refused(w, w.step(at(0)));
    expect(message).toContain("spec.image: 'docker.io/attacker/miner:latest' matches none of the allowed images (registry.example.com/iac/trainer-gpu)");
    expect(message).toContain("spec.resources.priorityClassName: 'system-node-critical' is not an allowed priority class (allowed: none)");
    expect(message).toContain(
      "spec.resources.tolerations[0]: the toleration 'node-role.kubernetes.io/control-plane:NoSchedule' is not allowed (allowed: nvidia.com/gpu)",
    );
    expect(message).toContain('spec.resources.tolerations[1]: the toleration of every taint (empty key) is not allowed');
    expect(message).toContain("spec.resources.nodeSelector: key 'node-role.kubernetes.io/control-plane' is not allowed");
    expect(message).toContain("spec.artifacts.claimName: claim 'victim-artifacts' is not labelled for this search");
    expect(w.status.phase).toBe('Pending');
    // once, not at every look
    expect(warnings(w.step(at(60)))).toEqual([]);
  });

  it('refuses mounting a dataset claim read-write unless it is labelled for the search', () => {
    const w = withPolicy({ dataset: { format: 'phantom', pvc: { claimName: 'victim-artifacts', readOnly: false } } });
    expect(refused(w, w.step(at(0)))).toContain("spec.dataset.pvc.readOnly: false mounts claim 'victim-artifacts' read-write");
    // read-only is how a shared dataset is read
    expect(creates(withPolicy({ dataset: { format: 'phantom', pvc: { claimName: 'datasets' } } }).step(at(0)), 'Pod')).toEqual(['demo-search-1']);
  });

  it('refuses mounting an external evaluation claim read-write unless it is labelled for the search', () => {
    const external = (readOnly: boolean) => ({ name: 'site-b', format: 'msd', path: 'Task04', pvc: { claimName: 'victim-artifacts', readOnly } });
    const w = withPolicy({ dataset: { format: 'phantom' }, evaluate: { external: [external(false)] } });
    expect(refused(w, w.step(at(0)))).toContain(
      "spec.evaluate.external[0].pvc.readOnly: false mounts claim 'victim-artifacts' read-write, which needs the label iac.dev/search=demo on it",
    );
    expect(creates(withPolicy({ dataset: { format: 'phantom' }, evaluate: { external: [external(true)] } }).step(at(0)), 'Pod')).toEqual(['demo-search-1']);
  });

  it('allows what the platform team allows: its trainer image, GPU node pools, the GPU taint, a claim labelled for the search', () => {
    const w = withPolicy({
      image: `registry.example.com/iac/trainer-gpu@sha256:${'a'.repeat(64)}`,
      resources: {
        nodeSelector: { 'nvidia.com/gpu.product': 'NVIDIA-A100-SXM4-80GB', 'topology.kubernetes.io/zone': 'eu-west-1a' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      },
      artifacts: { claimName: 'shared-run' },
    });
    w.claims.push({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'shared-run', namespace: 'ml', labels: { 'iac.dev/search': 'demo' } } });
    const r = w.step(at(0));
    expect(creates(r, 'Pod')).toEqual(['demo-search-1']);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'False' });
    const pod = w.pod('demo-search-1') as unknown as {
      spec: { priorityClassName?: string; volumes: Array<{ persistentVolumeClaim?: { claimName: string } }> };
    };
    expect(pod.spec.volumes[0].persistentVolumeClaim?.claimName).toBe('shared-run');

    // a priority class the platform team allows
    const pc = new World(
      { resources: { priorityClassName: 'gpu-preemptible' } },
      { settings: { policy: { ...policy, allowedPriorityClasses: ['gpu-preemptible'] } } },
    );
    expect(creates(pc.step(at(0)), 'Pod')).toEqual(['demo-search-1']);
    // no spec.image: the operator's own image, always
    expect(creates(withPolicy({}).step(at(0)), 'Pod')).toEqual(['demo-search-1']);
  });

  it('leaves a pod that already runs alone and refuses only the next one', () => {
    const w = new World({ image: 'docker.io/attacker/miner:1' });
    w.step(at(0)); // created before the policy existed
    w.setPod('demo-search-1', { phase: 'Running', startedAt: at(1) });
    Object.assign(w.settings, { policy });
    let r = w.step(at(30));
    expect(deletes(r)).toEqual([]);
    expect(w.status.phase).toBe('Searching');
    w.setPod('demo-search-1', { phase: 'Succeeded', startedAt: at(1), finishedAt: at(40) });
    r = w.step(at(50));
    expect(creates(r)).toEqual([]);
    expect(cond(w, 'Stalled')).toMatchObject({ status: 'True', reason: 'PolicyViolation' });
  });

  it('matches images as a container runtime resolves them', () => {
    expect(parseImageRef('ubuntu')).toEqual({ repository: 'docker.io/library/ubuntu', tag: '', digest: '' });
    expect(parseImageRef('localhost:5000/a/b:1@sha256:x')).toEqual({ repository: 'localhost:5000/a/b', tag: ':1', digest: '@sha256:x' });
    expect(imageMatches('iac-operator/trainer-gpu', 'docker.io/iac-operator/trainer-gpu:0.2.0')).toBe(true);
    expect(imageMatches('iac-operator/trainer-gpu', 'iac-operator/trainer-gpu-evil:0.2.0')).toBe(false);
    expect(imageMatches('iac-operator/trainer-gpu', 'evil.io/iac-operator/trainer-gpu:1')).toBe(false);
    expect(imageMatches('iac-operator/trainer-gpu:0.1.*', 'iac-operator/trainer-gpu:0.2.0')).toBe(false);
    expect(imageMatches('registry.example.com/ml/*', 'registry.example.com/ml/trainer:1')).toBe(true);
    expect(imageMatches('registry.example.com/ml/*', 'registry.example.com/ml/x/trainer:1')).toBe(false);
    expect(imageMatches('registry.example.com/ml/**', 'registry.example.com/ml/x/trainer:1')).toBe(true);
    expect(parseAllowedToleration('dedicated=ml:NoSchedule')).toEqual({ key: 'dedicated', value: 'ml', effect: 'NoSchedule' });
    expect(() => parseAllowedToleration('x:Sometimes')).toThrow(/effect/);
  });

  it('allows a toleration only as narrow as an allowed one', () => {
    const only = (allowed: string, toleration: Record<string, unknown>) =>
      creates(
        new World(
          { resources: { tolerations: [toleration] } },
          { settings: { policy: { ...policy, allowedTolerations: [parseAllowedToleration(allowed)] } } },
        ).step(at(0)),
        'Pod',
      ).length === 1;
    expect(only('dedicated=ml:NoSchedule', { key: 'dedicated', value: 'ml', effect: 'NoSchedule' })).toBe(true);
    expect(only('dedicated=ml:NoSchedule', { key: 'dedicated', operator: 'Exists', effect: 'NoSchedule' })).toBe(false); // any value
    expect(only('dedicated=ml:NoSchedule', { key: 'dedicated', value: 'ml' })).toBe(false); // any effect
    expect(only('dedicated', { key: 'dedicated', operator: 'Exists' })).toBe(true);
    expect(only('*', { operator: 'Exists' })).toBe(true);
  });
});

describe('(8) a forged status is not trusted', () => {
  const running = runningWorld;
  const forge = (w: World, patch: Record<string, unknown>) => {
    w.search = { ...w.search, status: { ...w.status, ...patch } };
  };

  it('does not delete the running pod for a patched phase Succeeded, and drops the fake Dice', () => {
    const w = running();
    forge(w, { phase: 'Succeeded', results: { meanDice: 0.99 }, completionTime: at(25).toISOString() });
    const r = w.step(at(30));
    expect(deletes(r)).toEqual([]);
    expect(w.status.phase).toBe('Searching');
    expect(w.status.results).toBeUndefined();
    expect(w.status.completionTime).toBeUndefined();
    expect(cond(w, 'Ready')).toMatchObject({ status: 'False' });
    const [corrected] = warnings(r);
    expect(corrected).toMatchObject({ reason: 'StatusCorrected' });
    expect(corrected.message).toContain('status.phase Succeeded: search has not succeeded (pod demo-search-1 is Running)');
    expect(corrected.message).toContain('status.results.meanDice: evaluate has not succeeded');
    // once: the status now holds what the pods show
    expect(warnings(w.step(at(40)))).toEqual([]);
  });

  it('does not start the next phase for a patched succeeded flag, nor fail for patched failures or phase Failed', () => {
    const w = running({ backoffLimit: 1 });
    forge(w, {
      phase: 'Failed',
      completionTime: at(25).toISOString(),
      phases: {
        ...w.status.phases,
        search: { ...w.status.phases.search, succeeded: true, failures: 99, history: [{ pod: 'demo-search-1', outcome: 'Succeeded', gpuSeconds: 1 }] },
      },
      genotype: { cells: [] },
    });
    const r = w.step(at(30));
    expect(creates(r)).toEqual([]);
    expect(deletes(r)).toEqual([]);
    expect(w.status.phase).toBe('Searching');
    expect(w.status.phases.search).toMatchObject({ failures: 0 });
    expect(w.status.phases.search.succeeded).toBeUndefined();
    expect(w.status.phases.search.history ?? []).toEqual([]);
    expect(w.status.genotype).toBeUndefined();
    const message = warnings(r)[0].message!;
    expect(message).toContain('status.phases.search.history: pod demo-search-1 is Running, not Succeeded');
    expect(message).toContain('status.phases.search.failures 99: 0 failed attempts are recorded');
    expect(message).toContain('status.phase Failed: pod demo-search-1 is Running and not stopped');
  });

  it('takes results from the pod that produced them, even in a search that did succeed', () => {
    const w = new World();
    w.step(at(0));
    for (const [i, stage] of ['search', 'prune', 'retrain', 'evaluate'].entries()) {
      const extra = stage === 'evaluate' ? { meanDice: 0.71 } : stage === 'prune' ? { genotype: { cells: [[[[0, 'conv_3x3']]]] } } : {};
      w.setPod(`demo-${stage}-1`, {
        phase: 'Succeeded',
        startedAt: at(100 * i + 1),
        finishedAt: at(100 * i + 50),
        message: result({ phase: stage, ...extra }),
      });
      w.step(at(100 * i + 60));
    }
    expect(w.status.phase).toBe('Succeeded');
    expect(w.status.results.meanDice).toBe(0.71);
    forge(w, {
      results: { ...w.status.results, meanDice: 0.99 },
      phases: { ...w.status.phases, evaluate: { ...w.status.phases.evaluate, history: [{ ...w.status.phases.evaluate.history[0], gpuSeconds: 1e6 }] } },
    });
    const r = w.step(at(1000));
    expect(w.status.phase).toBe('Succeeded');
    expect(w.status.results.meanDice).toBe(0.71);
    expect(w.status.phases.evaluate.history[0].gpuSeconds).toBe(49);
    expect(warnings(r)[0].message).toContain('status.results.meanDice 0.99: pod demo-evaluate-1 reported 0.71');
    expect(warnings(r)[0].message).toContain('pod demo-evaluate-1 used 49 GPU-seconds, not 1000000');
    // the records of pods that are gone are all that is left: kept
    w.pods = [];
    expect(warnings(w.step(at(2000)))).toEqual([]);
    expect(w.status.phase).toBe('Succeeded');
  });

  it('takes the gain and the external figures from the evaluate pod too', () => {
    const w = new World();
    w.step(at(0));
    const external = [{ name: 'site-b', cases: 12, meanDice: 0.61 }];
    for (const [i, stage] of ['search', 'prune', 'retrain', 'evaluate'].entries()) {
      const extra = stage === 'evaluate' ? { meanDice: 0.71, baselineMeanDice: 0.7, diceGain: 0.01, external } : {};
      w.setPod(`demo-${stage}-1`, {
        phase: 'Succeeded',
        startedAt: at(100 * i + 1),
        finishedAt: at(100 * i + 50),
        message: result({ phase: stage, ...extra }),
      });
      w.step(at(100 * i + 60));
    }
    forge(w, { results: { ...w.status.results, diceGain: 0.3, external: [{ name: 'site-b', cases: 12, meanDice: 0.99 }] } });
    const r = w.step(at(1000));
    expect(w.status.results).toMatchObject({ diceGain: 0.01, external });
    const message = warnings(r)[0].message!;
    expect(message).toContain('status.results.diceGain 0.3: pod demo-evaluate-1 reported 0.01');
    expect(message).toContain('status.results.external');

    // before the evaluate phase succeeded there are no such figures
    const early = running();
    forge(early, { results: { diceGain: 0.5, external } });
    const e = early.step(at(30));
    expect(early.status.results).toBeUndefined();
    expect(warnings(e)[0].message).toContain('status.results.diceGain/external: evaluate has not succeeded');
  });

  it('drops a recorded success of a later phase while an earlier one has not succeeded, and foreign pod names', () => {
    const w = running();
    forge(w, {
      phases: {
        ...w.status.phases,
        evaluate: {
          attempts: 1,
          failures: 0,
          preemptions: 0,
          gpuSeconds: 0,
          succeeded: true,
          history: [{ pod: 'demo-evaluate-1', outcome: 'Succeeded', gpuSeconds: 0 }],
        },
        prune: { attempts: 1, failures: 0, preemptions: 0, gpuSeconds: 0, history: [{ pod: 'other-prune-1', outcome: 'Failed', gpuSeconds: 0 }] },
      },
    });
    const r = w.step(at(30));
    expect(w.status.phases.evaluate.succeeded).toBeUndefined();
    expect(w.status.phases.evaluate.history).toEqual([]);
    expect(w.status.phases.prune.history).toEqual([]);
    expect(warnings(r)[0].message).toContain('status.phases.prune.history: pod other-prune-1 is not a prune pod of this search');
  });

  it('a status the operator wrote itself is never "corrected"', () => {
    // suspend and resume, a failure and a retry, a disruption, success: no StatusCorrected on the way
    const w = running({ backoffLimit: 2 });
    w.editSpec({ suspend: true });
    w.step(at(30));
    w.editSpec({ suspend: false });
    w.step(at(40));
    w.setPod('demo-search-2', { phase: 'Failed', startedAt: at(41), finishedAt: at(50), exitCode: 1 });
    w.step(at(60));
    w.step(at(80));
    w.setPod('demo-search-3', { phase: 'Failed', startedAt: at(81), finishedAt: at(90), reason: 'Evicted', disruption: 'PreemptionByScheduler' });
    w.step(at(100));
    w.setPod('demo-search-4', { phase: 'Succeeded', startedAt: at(101), finishedAt: at(150), message: result({ phase: 'search', epochs: 3 }) });
    w.step(at(160));
    expect(w.status.phase).toBe('Pruning');
    expect(w.status.phases.search).toMatchObject({ succeeded: true, failures: 1, preemptions: 1 });
    expect(w.events.filter((e) => e.reason === 'StatusCorrected')).toEqual([]);
  });
});
