import { describe, expect, it } from 'vitest';
import { parseTrainerConfig } from '../../../trainer/src/config/index.ts';
import { parseIACSearch, type IACSearch } from '../api/index.ts';
import { buildArtifactsClaim, buildPod, buildProgressSecret, TRAINER_COMMAND } from './children.ts';
import { observePod, parseResult } from './observe.ts';
import type { KubeObject } from './types.ts';
import { at, searchObject, setPodState } from '../../testing/world.ts';

const settings = { defaultImage: 'ghcr.io/example/iacnas-trainer:0.1.0', progressURL: 'http://iac-operator.iac-system.svc:8080/v1/progress' };

function search(spec: Record<string, unknown> = {}): IACSearch {
  const r = parseIACSearch(searchObject(spec));
  if (!r.ok) throw new Error(r.message);
  return r.search;
}

/** The parts of a phase pod the tests read. */
type Pod = {
  metadata: { name: string; labels: Record<string, string>; ownerReferences: unknown[] };
  spec: {
    restartPolicy: string;
    containers: {
      image: string;
      command: string[];
      args: string[];
      env: { name: string }[];
      volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
      resources: { limits: Record<string, string>; requests: Record<string, string> };
      securityContext: Record<string, unknown>;
      terminationMessagePath: string;
      terminationMessagePolicy: string;
    }[];
    volumes: { name: string }[];
    securityContext: Record<string, unknown>;
    nodeSelector?: Record<string, string>;
    tolerations?: unknown[];
    priorityClassName?: string;
  };
  [k: string]: unknown;
};

describe('phase pod', () => {
  const spec = {
    dataset: { format: 'msd', path: 'Task04_Hippocampus', pvc: { claimName: 'datasets' } },
    resources: {
      gpus: 2,
      cpu: '4',
      memory: '16Gi',
      nodeSelector: { 'nvidia.com/gpu.product': 'A100' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      priorityClassName: 'preemptible',
      phases: { evaluate: { gpus: 1, memory: '8Gi' } },
    },
  };

  it('runs `iacnas trainer <phase>` with the search definition, on the artifacts volume', () => {
    const pod = buildPod(search(spec), 'search', 3, settings) as unknown as Pod;
    expect(pod.metadata.name).toBe('demo-search-3');
    expect(pod.metadata.labels).toMatchObject({ 'iac.dev/search': 'demo', 'iac.dev/phase': 'search', 'iac.dev/attempt': '3' });
    expect(pod.metadata.ownerReferences).toEqual([
      { apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', name: 'demo', uid: 'uid-1', controller: true, blockOwnerDeletion: true },
    ]);
    expect(pod.spec.restartPolicy).toBe('Never');
    const c = pod.spec.containers[0];
    expect(c.image).toBe(settings.defaultImage);
    expect(c.command).toEqual(TRAINER_COMMAND);
    expect(c.args.slice(0, 5)).toEqual(['trainer', 'search', '--workdir', '/artifacts', '--config-json']);
    // The trainer accepts exactly what it is given, with the dataset found on the claim's mount.
    const config = parseTrainerConfig(JSON.parse(c.args[5]));
    expect(config.dataset.path).toBe('/data/Task04_Hippocampus');
    expect(config.name).toBe('demo');
    expect(c.volumeMounts).toContainEqual({ name: 'artifacts', mountPath: '/artifacts' });
    expect(c.volumeMounts).toContainEqual({ name: 'dataset', mountPath: '/data', readOnly: true });
    expect(pod.spec.volumes).toContainEqual({ name: 'artifacts', persistentVolumeClaim: { claimName: 'demo-artifacts' } });
    expect(pod.spec.volumes).toContainEqual({ name: 'dataset', persistentVolumeClaim: { claimName: 'datasets', readOnly: true } });
  });

  it('requests GPUs per phase (none for prune) and places the pod as asked', () => {
    const s = search(spec);
    const limits = (phase: 'search' | 'prune' | 'evaluate') => (buildPod(s, phase, 1, settings) as unknown as Pod).spec.containers[0].resources.limits;
    expect(limits('search')).toEqual({ cpu: '4', memory: '16Gi', 'nvidia.com/gpu': '2' });
    expect(limits('prune')).toEqual({ cpu: '4', memory: '16Gi' });
    expect(limits('evaluate')).toEqual({ cpu: '4', memory: '8Gi', 'nvidia.com/gpu': '1' });
    const pod = buildPod(s, 'search', 1, settings) as unknown as Pod;
    expect(pod.spec.containers[0].resources.requests).toEqual(pod.spec.containers[0].resources.limits);
    expect(pod.spec.nodeSelector).toEqual({ 'nvidia.com/gpu.product': 'A100' });
    expect(pod.spec.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    expect(pod.spec.priorityClassName).toBe('preemptible');
  });

  it('passes the progress endpoint, the token from the Secret and the search name', () => {
    const env = (buildPod(search(), 'retrain', 1, settings) as unknown as Pod).spec.containers[0].env;
    expect(env).toEqual([
      { name: 'IACNAS_SEARCH', value: 'ml/demo' },
      { name: 'IACNAS_PROGRESS_URL', value: settings.progressURL },
      { name: 'IACNAS_PROGRESS_TOKEN', valueFrom: { secretKeyRef: { name: 'demo-progress', key: 'token' } } },
    ]);
    const noURL = (buildPod(search(), 'retrain', 1, { defaultImage: 'x' }) as unknown as Pod).spec.containers[0].env;
    expect(noURL.map((e: { name: string }) => e.name)).toEqual(['IACNAS_SEARCH']);
  });

  it('runs restricted: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    const pod = buildPod(search({ image: 'my/trainer:1' }), 'evaluate', 1, settings) as unknown as Pod;
    expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    const c = pod.spec.containers[0];
    expect(c.image).toBe('my/trainer:1');
    expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
    expect(c.terminationMessagePath).toBe('/dev/termination-log');
    expect(c.terminationMessagePolicy).toBe('FallbackToLogsOnError');
  });

  it('keeps a phantom dataset without a claim as it is', () => {
    const pod = buildPod(search(), 'search', 1, settings) as unknown as Pod;
    expect(JSON.parse(pod.spec.containers[0].args[5]).dataset).not.toHaveProperty('path');
    expect(pod.spec.volumes.map((v: { name: string }) => v.name)).toEqual(['artifacts', 'tmp']);
  });
});

describe('external evaluation datasets', () => {
  const spec = {
    dataset: { format: 'msd', path: 'Task04_Hippocampus', pvc: { claimName: 'datasets' } },
    evaluate: {
      baseline: true,
      external: [
        { name: 'site-b', format: 'msd', path: 'hippocampus-site-b', pvc: { claimName: 'site-b-scans' } },
        { name: 'site-c', format: 'nnunet', path: '/raw/Dataset104_SiteC/', cases: 20, pvc: { claimName: 'site-b-scans' } },
        { name: 'same-claim', format: 'msd', path: 'Task04_Hippocampus_v2', pvc: { claimName: 'datasets' } },
        { name: 'writable', format: 'msd', path: '/', pvc: { claimName: 'scratch', readOnly: false } },
        { name: 'in-image', format: 'msd', path: '/opt/data/hippocampus' },
      ],
    },
  };
  const pod = (stage: 'search' | 'retrain' | 'evaluate') => buildPod(search(spec), stage, 1, settings) as unknown as Pod;
  const config = (p: Pod) => parseTrainerConfig(JSON.parse(p.spec.containers[0].args[5]));

  it('mounts each claim once, in the evaluate pod only, at /external/<claim> (the dataset claim stays at /data)', () => {
    const evaluate = pod('evaluate');
    expect(evaluate.spec.volumes).toEqual([
      { name: 'artifacts', persistentVolumeClaim: { claimName: 'demo-artifacts' } },
      { name: 'tmp', emptyDir: {} },
      { name: 'dataset', persistentVolumeClaim: { claimName: 'datasets', readOnly: true } },
      { name: 'external-0', persistentVolumeClaim: { claimName: 'site-b-scans', readOnly: true } },
      { name: 'external-1', persistentVolumeClaim: { claimName: 'scratch', readOnly: false } },
    ]);
    expect(evaluate.spec.containers[0].volumeMounts).toEqual([
      { name: 'artifacts', mountPath: '/artifacts' },
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'dataset', mountPath: '/data', readOnly: true },
      { name: 'external-0', mountPath: '/external/site-b-scans', readOnly: true },
      { name: 'external-1', mountPath: '/external/scratch', readOnly: false },
    ]);
    for (const stage of ['search', 'retrain'] as const) {
      expect(pod(stage).spec.volumes.map((v: { name: string }) => v.name)).toEqual(['artifacts', 'tmp', 'dataset']);
    }
  });

  it("gives the trainer each dataset's path inside the pod, without the claims, as a configuration it accepts", () => {
    const evaluate = config(pod('evaluate'));
    expect(evaluate.evaluate.external.map((e) => e.path)).toEqual([
      '/external/site-b-scans/hippocampus-site-b',
      '/external/site-b-scans/raw/Dataset104_SiteC/',
      '/data/Task04_Hippocampus_v2',
      '/external/scratch',
      '/opt/data/hippocampus',
    ]);
    expect(evaluate.evaluate.external[1]).toEqual({ name: 'site-c', format: 'nnunet', path: '/external/site-b-scans/raw/Dataset104_SiteC/', cases: 20 });
    expect(JSON.parse(pod('evaluate').spec.containers[0].args[5]).evaluate.external.some((e: object) => 'pvc' in e)).toBe(false);
    expect(evaluate.evaluate.baseline).toBe(true);
    expect(evaluate.dataset.path).toBe('/data/Task04_Hippocampus');
    // every phase gets the same search definition
    expect(config(pod('search'))).toEqual(evaluate);
  });
});

describe('progress Secret and artifacts claim', () => {
  it('stores the token and sizes the claim from the template', () => {
    const secret = buildProgressSecret(search(), 'abc') as KubeObject & { data: { token: string } };
    expect(secret.metadata.name).toBe('demo-progress');
    expect(Buffer.from(secret.data.token, 'base64').toString()).toBe('abc');
    const claim = buildArtifactsClaim(search({ artifacts: { size: '50Gi', storageClassName: 'fast' } })) as KubeObject & { spec: unknown };
    expect(claim.metadata.name).toBe('demo-artifacts');
    expect(claim.spec).toEqual({ accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '50Gi' } }, storageClassName: 'fast' });
  });
});

describe('observing a pod', () => {
  const pod = buildPod(search(), 'search', 2, settings);

  it('reads the attempt, GPUs, times and the result from the termination message', () => {
    const msg = 'some log line\n{"type":"result","phase":"search","ok":true,"epochs":12}';
    const a = observePod(setPodState(pod, { phase: 'Succeeded', startedAt: at(5), finishedAt: at(65), message: msg }))!;
    expect(a).toMatchObject({ stage: 'search', attempt: 2, state: 'Succeeded', gpus: 1, exitCode: 0 });
    expect(a.result).toMatchObject({ epochs: 12 });
    expect(parseResult('not json')).toBeUndefined();
  });

  it('ignores pods that are not phase attempts', () => {
    expect(observePod({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x', labels: { 'iac.dev/phase': 'lunch' } } })).toBeUndefined();
  });
});
