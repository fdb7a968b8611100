// The objects a search owns: one pod per phase attempt, the progress-token Secret and
// (unless an existing claim is named) the artifacts volume claim. Pure builders.
import {
  ENV,
  LABEL_ATTEMPT,
  LABEL_PHASE,
  LABEL_SEARCH,
  PROGRESS_TOKEN_KEY,
  TERMINATION_MESSAGE_PATH,
  defaultArtifactsClaimName,
  podName,
  progressSecretName,
} from '../../../contract/src/index.ts';
import { API_VERSION, KIND, trainerConfigInput, type IACSearch, type Stage } from '../api/index.ts';
import { KUEUE_QUEUE_LABEL } from './kueue.ts';
import type { KubeObject, OperatorSettings, OwnerReference } from './types.ts';

export const GPU_RESOURCE = 'nvidia.com/gpu';
export const TRAINER_CONTAINER = 'trainer';
export const ARTIFACTS_MOUNT = '/artifacts';
export const DATASET_MOUNT = '/data';
/** Claims of spec.evaluate.external are mounted at /external/<claimName> (the dataset's claim stays at /data). */
export const EXTERNAL_MOUNT = '/external';
/**
 * The trainer image's entrypoint: the `iacnas` command on PATH (the image links
 * /app/bin/iacnas.ts to /usr/local/bin/iacnas). `iacnas run` maps it to
 * `node bin/iacnas.ts` of this checkout.
 */
export const TRAINER_COMMAND = ['iacnas'];

export { podName, progressSecretName, TERMINATION_MESSAGE_PATH } from '../../../contract/src/index.ts';
export const artifactsClaimName = (search: IACSearch) => search.spec.artifacts.claimName ?? defaultArtifactsClaimName(search.metadata.name);

/**
 * The controller owner reference of a child of `owner`: garbage collection deletes the
 * child with its owner, and the owner is not gone before its children (blockOwnerDeletion).
 * The one place an owner reference is built (reconcile's children, the controller's writes).
 */
export function controllerReference(owner: { apiVersion: string; kind: string; metadata: { name: string; uid?: string } }): OwnerReference {
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.metadata.name,
    uid: owner.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: true,
  };
}

function childMeta(search: IACSearch, name: string, labels: Record<string, string> = {}) {
  return {
    name,
    namespace: search.metadata.namespace,
    labels: {
      'app.kubernetes.io/name': 'iacnas-trainer',
      'app.kubernetes.io/managed-by': 'iac-operator',
      [LABEL_SEARCH]: search.metadata.name,
      ...labels,
    },
    ownerReferences: [controllerReference({ apiVersion: API_VERSION, kind: KIND, metadata: search.metadata })],
  };
}

/** GPUs a phase pod requests: the per-phase override, else the search-wide value; prune needs none. */
export function stageGPUs(search: IACSearch, stage: Stage): number {
  if (stage === 'prune') return 0;
  return search.spec.resources.phases?.[stage]?.gpus ?? search.spec.resources.gpus;
}

/** A path on a claim mounted at `mount`: the mount itself for an empty path. */
function onMount(mount: string, path: string | undefined): string {
  const relative = (path ?? '').replace(/^\/+/, '');
  return relative ? `${mount}/${relative}` : mount;
}

/** Where the trainer finds the dataset inside the pod. */
export function podDatasetPath(search: IACSearch): string | undefined {
  const { path, pvc } = search.spec.dataset;
  return pvc ? onMount(DATASET_MOUNT, path) : path;
}

/** A claim the evaluate pod mounts for spec.evaluate.external. */
export interface ExternalClaimMount {
  volume: string;
  claimName: string;
  mountPath: string;
  readOnly: boolean;
}

/**
 * The claims of spec.evaluate.external, one volume per claim (several datasets may sit on
 * one claim); a claim that is also spec.dataset.pvc is the /data mount already.
 */
export function externalClaimMounts(search: IACSearch): ExternalClaimMount[] {
  const out: ExternalClaimMount[] = [];
  for (const item of search.spec.evaluate.external) {
    const pvc = item.pvc;
    if (!pvc || pvc.claimName === search.spec.dataset.pvc?.claimName || out.some((m) => m.claimName === pvc.claimName)) continue;
    out.push({ volume: `external-${out.length}`, claimName: pvc.claimName, mountPath: `${EXTERNAL_MOUNT}/${pvc.claimName}`, readOnly: pvc.readOnly });
  }
  return out;
}

/** Where the trainer finds each dataset of spec.evaluate.external inside the evaluate pod, in order. */
export function podExternalPaths(search: IACSearch): string[] {
  return search.spec.evaluate.external.map((item) => {
    if (!item.pvc) return item.path;
    if (item.pvc.claimName === search.spec.dataset.pvc?.claimName) return onMount(DATASET_MOUNT, item.path);
    return onMount(`${EXTERNAL_MOUNT}/${item.pvc.claimName}`, item.path);
  });
}

/**
 * The trainer's arguments of a phase: `iacnas trainer <phase> --workdir /artifacts --config-json <definition>`.
 * Every phase gets the same definition, with the paths as the evaluate pod sees them; only
 * that pod mounts the claims of spec.evaluate.external (only it reads them).
 */
export function trainerArgs(search: IACSearch, stage: Stage): string[] {
  const config = trainerConfigInput(search, podDatasetPath(search), podExternalPaths(search));
  return ['trainer', stage, '--workdir', ARTIFACTS_MOUNT, '--config-json', JSON.stringify(config)];
}

export function buildPod(search: IACSearch, stage: Stage, attempt: number, settings: OperatorSettings): KubeObject {
  const { spec, metadata } = search;
  const override = spec.resources.phases?.[stage];
  const gpus = stageGPUs(search, stage);
  const cpu = override?.cpu ?? spec.resources.cpu;
  const memory = override?.memory ?? spec.resources.memory;
  const quantities: Record<string, string> = { cpu, memory };
  if (gpus > 0) quantities[GPU_RESOURCE] = String(gpus);

  const env: Array<Record<string, unknown>> = [{ name: ENV.search, value: `${metadata.namespace ?? 'default'}/${metadata.name}` }];
  if (settings.progressURL) {
    env.push(
      { name: ENV.progressURL, value: settings.progressURL },
      { name: ENV.progressToken, valueFrom: { secretKeyRef: { name: progressSecretName(metadata.name), key: PROGRESS_TOKEN_KEY } } },
    );
  }

  const volumeMounts: Array<Record<string, unknown>> = [
    { name: 'artifacts', mountPath: ARTIFACTS_MOUNT },
    { name: 'tmp', mountPath: '/tmp' },
  ];
  const volumes: Array<Record<string, unknown>> = [
    { name: 'artifacts', persistentVolumeClaim: { claimName: artifactsClaimName(search) } },
    { name: 'tmp', emptyDir: {} },
  ];
  if (spec.dataset.pvc) {
    volumeMounts.push({ name: 'dataset', mountPath: DATASET_MOUNT, readOnly: spec.dataset.pvc.readOnly });
    volumes.push({ name: 'dataset', persistentVolumeClaim: { claimName: spec.dataset.pvc.claimName, readOnly: spec.dataset.pvc.readOnly } });
  }
  if (stage === 'evaluate') {
    for (const m of externalClaimMounts(search)) {
      volumeMounts.push({ name: m.volume, mountPath: m.mountPath, readOnly: m.readOnly });
      volumes.push({ name: m.volume, persistentVolumeClaim: { claimName: m.claimName, readOnly: m.readOnly } });
    }
  }

  const podSpec: Record<string, unknown> = {
    restartPolicy: 'Never',
    enableServiceLinks: false,
    automountServiceAccountToken: false,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 1000,
      runAsGroup: 1000,
      fsGroup: 1000,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    containers: [
      {
        name: TRAINER_CONTAINER,
        image: spec.image ?? settings.defaultImage,
        command: TRAINER_COMMAND,
        args: trainerArgs(search, stage),
        env,
        resources: { requests: quantities, limits: quantities },
        volumeMounts,
        securityContext: {
          allowPrivilegeEscalation: false,
          privileged: false,
          runAsNonRoot: true,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ['ALL'] },
          seccompProfile: { type: 'RuntimeDefault' },
        },
        terminationMessagePath: TERMINATION_MESSAGE_PATH,
        terminationMessagePolicy: 'FallbackToLogsOnError',
      },
    ],
    volumes,
  };
  if (spec.resources.nodeSelector) podSpec.nodeSelector = spec.resources.nodeSelector;
  if (spec.resources.tolerations) podSpec.tolerations = spec.resources.tolerations;
  if (spec.resources.priorityClassName) podSpec.priorityClassName = spec.resources.priorityClassName;

  // spec.queueName hands the pod to Kueue: it is created gated and runs once its Workload is admitted.
  const labels: Record<string, string> = { [LABEL_PHASE]: stage, [LABEL_ATTEMPT]: String(attempt) };
  if (spec.queueName) labels[KUEUE_QUEUE_LABEL] = spec.queueName;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: childMeta(search, podName(metadata.name, stage, attempt), labels),
    spec: podSpec,
  };
}

export function buildProgressSecret(search: IACSearch, token: string): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: childMeta(search, progressSecretName(search.metadata.name)),
    type: 'Opaque',
    data: { token: Buffer.from(token, 'utf8').toString('base64') },
  };
}

export function buildArtifactsClaim(search: IACSearch): KubeObject {
  const { artifacts } = search.spec;
  const spec: Record<string, unknown> = {
    accessModes: ['ReadWriteOnce'],
    resources: { requests: { storage: artifacts.size } },
  };
  if (artifacts.storageClassName) spec.storageClassName = artifacts.storageClassName;
  return { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: childMeta(search, artifactsClaimName(search)), spec };
}
