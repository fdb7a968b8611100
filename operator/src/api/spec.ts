// IACSearch.spec: the search definition (the trainer's own configuration sections)
// plus what the operator needs to run it in a cluster. Every field carries a
// description and, where one makes sense, a default: the CRD is generated from here.
import { z } from 'zod';
import { BackboneConfig, DatasetConfig, EvaluateConfig, RetrainConfig, SearchConfig } from '../../../trainer/src/config/index.ts';

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
    claimName: DNSName.describe('Name of a PersistentVolumeClaim in the search\'s namespace that holds the dataset.'),
    readOnly: z.boolean().default(true).describe('Mount the dataset claim read-only.'),
  })
  .describe('A PersistentVolumeClaim that holds the dataset. It is mounted at /data in every phase pod; dataset.path is then relative to the claim.');

export const IACSearchDataset = DatasetConfig.extend({
  pvc: DatasetClaim.optional(),
}).describe(DatasetConfig.description ?? 'The dataset.');

export const Toleration = z
  .object({
    key: z.string().max(316).optional().describe('Taint key the toleration applies to; empty with operator Exists matches every taint.'),
    operator: z.enum(['Exists', 'Equal']).optional().describe('Exists or Equal (default Equal).'),
    value: z.string().max(63).optional().describe('Taint value the toleration matches (operator Equal).'),
    effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional().describe('Taint effect to match; empty matches every effect.'),
    tolerationSeconds: z.int().min(0).max(2147483647).optional().describe('How long a NoExecute taint is tolerated; unset is forever.'),
  })
  .describe('A Kubernetes toleration (core/v1 Toleration).');

export const PhaseResources = z
  .object({
    gpus: z.int().min(0).max(64).optional().describe('nvidia.com/gpu per pod of this phase (overrides resources.gpus).'),
    cpu: Quantity.optional().describe('CPU request and limit of this phase (overrides resources.cpu).'),
    memory: Quantity.optional().describe('Memory request and limit of this phase (overrides resources.memory).'),
  })
  .describe('Resources of one phase; unset fields fall back to the search-wide value.');

export const Resources = z
  .object({
    gpus: z.int().min(0).max(64).default(1).describe('nvidia.com/gpu requested (and limited) by each GPU phase pod. Prune never requests a GPU.'),
    cpu: Quantity.default('2').describe('CPU request and limit of each phase pod.'),
    memory: Quantity.default('8Gi').describe('Memory request and limit of each phase pod.'),
    nodeSelector: z
      .record(z.string().max(316), z.string().max(63))
      .optional()
      .describe('Node labels a phase pod must match, e.g. {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}.'),
    tolerations: z.array(Toleration).max(32).optional().describe('Tolerations of every phase pod, e.g. for tainted GPU nodes.'),
    priorityClassName: z.string().max(253).optional().describe('PriorityClass of every phase pod (preemptible searches use a low one).'),
    phases: z
      .object({
        search: PhaseResources.optional(),
        prune: PhaseResources.optional(),
        retrain: PhaseResources.optional(),
        evaluate: PhaseResources.optional(),
      })
      .optional()
      .describe('Per-phase overrides of gpus, cpu and memory.'),
  })
  .describe('Compute resources and placement of the phase pods.');

export const Artifacts = z
  .object({
    claimName: DNSName.optional().describe('An existing PersistentVolumeClaim to keep the artifacts on. When unset, the operator creates <name>-artifacts from storageClassName and size, owned by the search.'),
    storageClassName: z.string().max(253).optional().describe('Storage class of the claim the operator creates; the cluster default when unset.'),
    size: Quantity.default('10Gi').describe('Size of the claim the operator creates.'),
  })
  .describe('The volume shared by all phases (mounted at /artifacts): checkpoints, alpha history, genotype, retrained model, results and report.');

export const Cost = z
  .object({
    gpuHourlyUSD: z.number().min(0).max(10000).default(0).describe('Price of one GPU-hour in US dollars, used for status.cost.estimatedUSD and the budget; 0 leaves cost unestimated.'),
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

export const IACSearchSpec = z
  .object({
    seed: z.int().min(0).max(2147483647).default(0).describe('Seed of weight initialisation, batch order and augmentation.'),
    dataset: IACSearchDataset.prefault({}),
    backbone: BackboneConfig.prefault({}),
    search: SearchConfig.prefault({}),
    retrain: RetrainConfig.prefault({}),
    evaluate: EvaluateConfig.prefault({}),
    resources: Resources.prefault({}),
    image: z.string().max(512).optional().describe('Trainer image; the operator\'s default trainer image when unset.'),
    artifacts: Artifacts.prefault({}),
    cost: Cost.prefault({}),
    budget: Budget.prefault({}),
    suspend: z.boolean().default(false).describe('Stop the running phase (its pod is deleted) and resume it from its checkpoint when set back to false.'),
    backoffLimit: z.int().min(0).max(100).default(3).describe('Retries of a failed phase attempt (exponential backoff from 10 s to 6 min between them) before the search fails. Disruptions (preemption, eviction, node loss) do not count; exit status 2 (bad configuration or data) fails at once.'),
    activeDeadlineSeconds: z.int().min(1).max(31536000).optional().describe('Fail the search when it has been running this long (suspended time excluded).'),
    ttlSecondsAfterFinished: z.int().min(0).max(31536000).optional().describe('Delete the IACSearch (and everything it owns) this many seconds after it succeeded or failed.'),
  })
  .describe('The search definition and how to run it. seed, dataset, backbone, search, retrain, evaluate, resources, image and artifacts cannot change after creation (as a Job\'s template); suspend, budget, backoffLimit, cost and the deadlines can.');

export type IACSearchSpec = z.infer<typeof IACSearchSpec>;
export type IACSearchSpecInput = z.input<typeof IACSearchSpec>;

/** The spec fields that make up the search definition (and where its checkpoints live): never changed after creation. */
export const IMMUTABLE_SPEC_FIELDS = ['seed', 'dataset', 'backbone', 'search', 'retrain', 'evaluate', 'resources', 'image', 'artifacts'] as const;
