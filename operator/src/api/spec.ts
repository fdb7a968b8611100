// IACSearch.spec: the search definition (the trainer's own configuration sections)
// plus what the operator needs to run it in a cluster. Every field carries a
// description and, where one makes sense, a default: the CRD is generated from here.
import { z } from 'zod';
import { BackboneConfig, DatasetConfig, EvaluateConfig, ExternalDatasetConfig, RetrainConfig, SearchConfig } from '../../../trainer/src/config/index.ts';

/** A Kubernetes resource quantity such as "500m", "4", "16Gi". */
const Quantity = z
  .string()
  .max(64)
  .regex(/^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$/, 'must be a resource quantity such as "2", "500m" or "16Gi"');

const DNSName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a lowercase DNS name (letters, digits, "-" and ".")');

export const DatasetClaim = z
  .object({
    claimName: DNSName.describe("Name of a PersistentVolumeClaim in the search's namespace that holds the dataset."),
    readOnly: z
      .boolean()
      .default(true)
      .describe("Mount the dataset claim read-only. false (read-write) needs the label iac.dev/search=<this search's name> on the claim."),
  })
  .describe('A PersistentVolumeClaim that holds the dataset. It is mounted at /data in every phase pod; dataset.path is then relative to the claim.');

export const IACSearchDataset = DatasetConfig.extend({
  pvc: DatasetClaim.optional(),
}).describe(DatasetConfig.description ?? 'The dataset.');

/** External evaluation datasets a search may name (as many as the trainer's evaluate.external takes). */
export const MAX_EXTERNAL_DATASETS = 32;

export const ExternalDatasetClaim = DatasetClaim.describe(
  'A PersistentVolumeClaim that holds this dataset. It is mounted at /external/<claimName> in the evaluate pod only (at /data when it is also dataset.pvc); path is then relative to the claim.',
);

export const IACSearchExternalDataset = ExternalDatasetConfig.extend({
  pvc: ExternalDatasetClaim.optional(),
}).describe(ExternalDatasetConfig.description ?? 'An external evaluation dataset.');

export const IACSearchEvaluate = EvaluateConfig.extend({
  external: z
    .array(IACSearchExternalDataset)
    .max(MAX_EXTERNAL_DATASETS)
    .superRefine((items, ctx) => {
      items.forEach((item, i) => {
        const first = items.findIndex((other) => other.name === item.name);
        if (first < i) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `'${item.name}' is also the name of evaluate.external[${first}]; every external dataset needs its own name (its results go to <workdir>/external/<name>/)`,
          });
        }
      });
    })
    .default([])
    .describe(
      'Other labelled datasets to evaluate the retrained network on (all of their cases, no split), each into <workdir>/external/<name>/ and status.results.external. With pvc, path is relative to that claim.',
    ),
}).describe(EvaluateConfig.description ?? 'Evaluation.');

/** Claims mounted in one pod read-only and read-write at once: the same claim must be mounted one way. */
function claimModeConflicts(
  spec: { dataset: { pvc?: { claimName: string; readOnly: boolean } }; evaluate: { external: Array<{ pvc?: { claimName: string; readOnly: boolean } }> } },
  ctx: z.RefinementCtx,
) {
  const mounted = new Map<string, { readOnly: boolean; where: string }>();
  if (spec.dataset.pvc) mounted.set(spec.dataset.pvc.claimName, { readOnly: spec.dataset.pvc.readOnly, where: 'dataset.pvc' });
  spec.evaluate.external.forEach((item, i) => {
    if (!item.pvc) return;
    const before = mounted.get(item.pvc.claimName);
    if (!before) {
      mounted.set(item.pvc.claimName, { readOnly: item.pvc.readOnly, where: `evaluate.external[${i}].pvc` });
    } else if (before.readOnly !== item.pvc.readOnly) {
      ctx.addIssue({
        code: 'custom',
        path: ['evaluate', 'external', i, 'pvc', 'readOnly'],
        message: `claim '${item.pvc.claimName}' is mounted with readOnly: ${before.readOnly} by ${before.where}; one claim is mounted once per pod, so give the same readOnly`,
      });
    }
  });
}

/** A label key (qualified name): an optional DNS-subdomain prefix and '/', then a name of at most 63 characters. */
export const LABEL_KEY_PATTERN = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
/** A label value: empty, or at most 63 characters of letters, digits, '-', '_' and '.', starting and ending with a letter or digit. */
export const LABEL_VALUE_PATTERN = '^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$';
const LABEL_KEY_RE = new RegExp(LABEL_KEY_PATTERN);
const LABEL_VALUE_RE = new RegExp(LABEL_VALUE_PATTERN);

/** Why a label key is not one the Pod API accepts; undefined when it is fine. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf('/');
  if (slash > 253) return `'${key}': the prefix before '/' is longer than 253 characters`;
  if (!LABEL_KEY_RE.test(key)) {
    return `'${key}' is not a label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (e.g. nvidia.com/gpu.product)`;
  }
  return undefined;
}

const LabelValue = z
  .string()
  .max(63)
  .regex(LABEL_VALUE_RE, "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");

export const Toleration = z
  .object({
    key: z.string().max(316).optional().describe('Taint key the toleration applies to; empty with operator Exists matches every taint.'),
    operator: z.enum(['Exists', 'Equal']).optional().describe('Exists or Equal (default Equal).'),
    value: z.string().max(63).optional().describe('Taint value the toleration matches (operator Equal).'),
    effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional().describe('Taint effect to match; empty matches every effect.'),
    tolerationSeconds: z.int().min(0).max(2147483647).optional().describe('How long a NoExecute taint is tolerated; unset is forever.'),
  })
  // The Pod API's own checks (ValidateTolerations): a pod carrying a toleration that fails
  // them is refused with 422, after the search was accepted.
  .superRefine((t, ctx) => {
    if (t.key) {
      const problem = labelKeyProblem(t.key);
      if (problem) ctx.addIssue({ code: 'custom', path: ['key'], message: problem });
    } else if (t.operator !== 'Exists') {
      ctx.addIssue({ code: 'custom', path: ['operator'], message: 'must be Exists when key is empty (a toleration of every taint)' });
    }
    if (t.operator === 'Exists' && t.value) ctx.addIssue({ code: 'custom', path: ['value'], message: 'must be empty when operator is Exists' });
    if (t.operator !== 'Exists' && t.value && !LABEL_VALUE_RE.test(t.value)) {
      ctx.addIssue({
        code: 'custom',
        path: ['value'],
        message: "must be a label value: letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
      });
    }
    if (t.tolerationSeconds !== undefined && t.effect !== 'NoExecute') {
      ctx.addIssue({ code: 'custom', path: ['tolerationSeconds'], message: 'is only allowed with effect NoExecute' });
    }
  })
  .describe('A Kubernetes toleration (core/v1 Toleration).');

export const PhaseResources = z
  .object({
    gpus: z.int().min(0).max(64).optional().describe('nvidia.com/gpu per pod of this phase (overrides resources.gpus).'),
    cpu: Quantity.optional().describe('CPU request and limit of this phase (overrides resources.cpu).'),
    memory: Quantity.optional().describe('Memory request and limit of this phase (overrides resources.memory).'),
  })
  .describe('Resources of one phase; unset fields fall back to the search-wide value.');

/** Prune only derives the discrete cells from the search's alphas: it never requests a GPU, so a GPU count for it is refused rather than ignored. */
export const PrunePhaseResources = PhaseResources.extend({
  gpus: z
    .int()
    .min(0)
    .max(0, 'prune never requests a GPU (it only derives the cells); remove resources.phases.prune.gpus')
    .optional()
    .describe('Prune never requests a GPU: only 0 is accepted (any other value is refused, not ignored).'),
}).describe('Resources of the prune phase (cpu and memory; it never requests a GPU).');

export const Resources = z
  .object({
    gpus: z.int().min(0).max(64).default(1).describe('nvidia.com/gpu requested (and limited) by each GPU phase pod. Prune never requests a GPU.'),
    cpu: Quantity.default('2').describe('CPU request and limit of each phase pod.'),
    memory: Quantity.default('8Gi').describe('Memory request and limit of each phase pod.'),
    nodeSelector: z
      .record(z.string().max(316), LabelValue)
      // (keys checked here, not in the record's key schema, so the message says what is wrong)
      .superRefine((selector, ctx) => {
        for (const key of Object.keys(selector)) {
          const problem = labelKeyProblem(key);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }
      })
      .optional()
      .describe(
        'Node labels a phase pod must match, e.g. {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}; only keys the operator\'s policy allows (--allowed-node-selector-keys; by default GPU models, instance types, node pools and zones).',
      ),
    tolerations: z
      .array(Toleration)
      .max(32)
      .optional()
      .describe(
        "Tolerations of every phase pod, e.g. for tainted GPU nodes; only as broad as the operator's policy allows (--allowed-tolerations; by default the nvidia.com/gpu taint).",
      ),
    priorityClassName: z
      .string()
      .max(253)
      .regex(/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$/, 'must be the name of a PriorityClass (a lowercase DNS name)')
      .optional()
      .describe(
        "PriorityClass of every phase pod (preemptible searches use a low one); only the classes the operator's policy allows (--allowed-priority-classes).",
      ),
    phases: z
      .object({
        search: PhaseResources.optional(),
        prune: PrunePhaseResources.optional(),
        retrain: PhaseResources.optional(),
        evaluate: PhaseResources.optional(),
      })
      .optional()
      .describe('Per-phase overrides of gpus, cpu and memory.'),
  })
  .describe('Compute resources and placement of the phase pods.');

export const Artifacts = z
  .object({
    claimName: DNSName.optional().describe(
      "An existing PersistentVolumeClaim to keep the artifacts on; it must carry the label iac.dev/search=<this search's name> (the phase pods write to it). When unset, the operator creates <name>-artifacts from storageClassName and size, owned by the search.",
    ),
    storageClassName: z.string().max(253).optional().describe('Storage class of the claim the operator creates; the cluster default when unset.'),
    size: Quantity.default('10Gi').describe('Size of the claim the operator creates.'),
  })
  .describe('The volume shared by all phases (mounted at /artifacts): checkpoints, alpha history, genotype, retrained model, results and report.');

export const Cost = z
  .object({
    gpuHourlyUSD: z
      .number()
      .min(0)
      .max(10000)
      .default(0)
      .describe('Price of one GPU-hour in US dollars, used for status.cost.estimatedUSD and the budget; 0 leaves cost unestimated.'),
  })
  .describe('How GPU time is priced.');

export const Budget = z
  .object({
    maxGPUHours: z.number().gt(0).optional().describe('Stop when the search has used this many GPU-hours (all phases, all attempts).'),
    maxCostUSD: z.number().gt(0).optional().describe('Stop when the estimated cost reaches this many US dollars (needs cost.gpuHourlyUSD).'),
    action: z
      .enum(['Suspend', 'Fail'])
      .default('Suspend')
      .describe('What happens when a budget is exceeded: Suspend (resumes once the budget is raised) or Fail.'),
  })
  .describe('Limits on what the search may spend. Editable at any time.');

/** A Kueue LocalQueue's name (the value of the kueue.x-k8s.io/queue-name label). */
export const QueueName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be the name of a Kueue LocalQueue (a lowercase DNS name of at most 63 characters)');

export const IACSearchSpec = z
  .object({
    seed: z.int().min(0).max(2147483647).default(0).describe('Seed of weight initialisation, batch order and augmentation.'),
    dataset: IACSearchDataset.prefault({}),
    backbone: BackboneConfig.prefault({}),
    search: SearchConfig.prefault({}),
    retrain: RetrainConfig.prefault({}),
    evaluate: IACSearchEvaluate.prefault({}),
    resources: Resources.prefault({}),
    image: z
      .string()
      .max(512)
      .optional()
      .describe(
        "Trainer image; the operator's default trainer image when unset. Only images the operator's policy allows (--allowed-images; by default the repository of its own trainer image).",
      ),
    artifacts: Artifacts.prefault({}),
    cost: Cost.prefault({}),
    budget: Budget.prefault({}),
    queueName: QueueName.optional().describe(
      "Kueue LocalQueue in the search's namespace that admits its phase pods: each pod gets the label kueue.x-k8s.io/queue-name=<queueName> and waits, gated, until Kueue admits it (status Reconciling=True, reason Queued; queued time is not GPU time). Unset: the pods are not given to Kueue. Editable: a change applies to the pods created after it, never to one already created (docs/kueue.md).",
    ),
    suspend: z.boolean().default(false).describe('Stop the running phase (its pod is deleted) and resume it from its checkpoint when set back to false.'),
    backoffLimit: z
      .int()
      .min(0)
      .max(100)
      .default(3)
      .describe(
        'Retries of a failed phase attempt (exponential backoff from 10 s to 6 min between them) before the search fails. Disruptions (preemption, eviction, node loss) do not count; exit status 2 (bad configuration or data) fails at once.',
      ),
    activeDeadlineSeconds: z.int().min(1).max(31536000).optional().describe('Fail the search when it has been running this long (suspended time excluded).'),
    ttlSecondsAfterFinished: z
      .int()
      .min(0)
      .max(31536000)
      .optional()
      .describe('Delete the IACSearch (and everything it owns) this many seconds after it succeeded or failed.'),
  })
  .superRefine(claimModeConflicts)
  .describe(
    "The search definition and how to run it. seed, dataset, backbone, search, retrain, evaluate, resources, image and artifacts cannot change after creation (as a Job's template); suspend, budget, backoffLimit, cost, the deadlines and queueName can.",
  );

export type IACSearchSpec = z.infer<typeof IACSearchSpec>;
export type IACSearchSpecInput = z.input<typeof IACSearchSpec>;

/** The spec fields that make up the search definition (and where its checkpoints live): never changed after creation. */
export const IMMUTABLE_SPEC_FIELDS = ['seed', 'dataset', 'backbone', 'search', 'retrain', 'evaluate', 'resources', 'image', 'artifacts'] as const;
