// IACSearch.status: written only by the operator. The pods' phases and termination
// messages are the authority for it; progress events only fill in `progress`.
import { z } from 'zod';
import { PHASES, PhaseResult, type Phase } from '../../../contract/src/index.ts';
import { MAX_EXTERNAL_DATASETS } from './spec.ts';

export const SEARCH_PHASES = ['Pending', 'Searching', 'Pruning', 'Retraining', 'Evaluating', 'Succeeded', 'Failed', 'Suspended'] as const;
export const SearchPhase = z
  .enum(SEARCH_PHASES)
  .describe('Where the search is: Pending, Searching, Pruning, Retraining, Evaluating, Succeeded, Failed or Suspended.');
export type SearchPhase = z.infer<typeof SearchPhase>;

/** Trainer phases in the order they run (the contract's PHASES); each is one pod per attempt. */
export const STAGES = PHASES;
export type Stage = Phase;
export const STAGE_PHASE: Record<Stage, SearchPhase> = {
  search: 'Searching',
  prune: 'Pruning',
  retrain: 'Retraining',
  evaluate: 'Evaluating',
};

// Every status string has a maxLength (in the CRD too), so nothing a trainer or a pod
// reports can grow a status without bound. Generous: a stored value over one of these
// makes reconcile drop and rebuild that whole top-level field (see readStatus).
/** RFC 3339 times (at most 35 characters), with room to spare. */
const MAX_TIME = 64;
/** Object names (DNS subdomains). */
const MAX_NAME = 253;
/** CamelCase reasons (metav1.Condition's limit). */
const MAX_REASON = 1024;
/** Human-readable messages (metav1.Condition's limit; termination messages are at most 4 KiB). */
const MAX_MESSAGE = 32768;
/** Names of external evaluation datasets (DNS labels). */
export const MAX_EXTERNAL_NAME = 63;
/** Class names, the keys of dicePerClass. */
export const MAX_CLASS_NAME = 253;

export const Condition = z
  .object({
    type: z.string().max(316).describe('Ready, Reconciling, Stalled or BudgetExceeded.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('True, False or Unknown.'),
    reason: z.string().max(MAX_REASON).describe('CamelCase reason of the last transition.'),
    message: z.string().max(MAX_MESSAGE).describe('Human-readable detail.'),
    lastTransitionTime: z.string().max(MAX_TIME).describe('When status last changed (RFC 3339).'),
    observedGeneration: z.int().min(0).optional().describe('metadata.generation the condition was computed from.'),
  })
  .describe('A metav1.Condition.');
export type Condition = z.infer<typeof Condition>;

export const AttemptOutcome = z.enum(['Succeeded', 'Failed', 'Disrupted', 'Stopped']);
export type AttemptOutcome = z.infer<typeof AttemptOutcome>;

export const AttemptRecord = z
  .object({
    pod: z.string().max(MAX_NAME).describe('Pod of the attempt.'),
    outcome: AttemptOutcome.describe(
      'Succeeded; Failed (counts against backoffLimit); Disrupted (preemption, eviction, node loss: does not count); Stopped (suspend, budget or deadline).',
    ),
    gpuSeconds: z.number().min(0).describe('GPU-seconds the attempt used (container run time times GPUs requested).'),
    startTime: z.string().max(MAX_TIME).optional().describe('When the trainer container started.'),
    endTime: z.string().max(MAX_TIME).optional().describe('When the attempt ended.'),
    exitCode: z.int().optional().describe('Exit status of the trainer container.'),
    reason: z.string().max(MAX_REASON).optional().describe('Why it ended (pod or container reason).'),
  })
  .describe('One finished attempt, recorded once (keyed by pod) so its GPU-seconds are never counted twice.');
export type AttemptRecord = z.infer<typeof AttemptRecord>;

export const PhaseRecord = z
  .object({
    startTime: z.string().max(MAX_TIME).optional().describe('When the first attempt of this phase was created.'),
    endTime: z.string().max(MAX_TIME).optional().describe('When the phase succeeded or failed for good.'),
    attempts: z.int().min(0).default(0).describe('Pods created for this phase.'),
    failures: z.int().min(0).default(0).describe('Failed attempts (count against backoffLimit).'),
    preemptions: z.int().min(0).default(0).describe('Attempts ended by a disruption (do not count against backoffLimit).'),
    gpuSeconds: z.number().min(0).default(0).describe('GPU-seconds of all attempts, the running one up to now.'),
    pod: z.string().max(MAX_NAME).optional().describe('Pod of the latest attempt.'),
    lastAttemptTime: z.string().max(MAX_TIME).optional().describe("When the latest attempt's pod was created."),
    succeeded: z.boolean().optional().describe('The phase finished successfully.'),
    message: z.string().max(MAX_MESSAGE).optional().describe('Latest news of this phase.'),
    history: z.array(AttemptRecord).optional().describe('Finished attempts.'),
  })
  .describe('Record of one phase.');
export type PhaseRecord = z.infer<typeof PhaseRecord>;

export const Progress = z
  .object({
    phase: z.string().max(32).optional().describe('Trainer phase the progress is from.'),
    epoch: z.int().min(0).optional().describe('Epoch just finished.'),
    maxEpochs: z.int().min(0).optional().describe('Epoch budget of the phase.'),
    activeOperations: z.int().min(0).optional().describe('Candidate operations still computed, over all cell edges.'),
    totalOperations: z.int().min(0).optional().describe('Candidate operations at the start of the search.'),
    stableEdges: z.int().min(0).optional().describe('Cell edges whose operation distribution is stable.'),
    totalEdges: z.int().min(0).optional().describe('Cell edges in all cells.'),
    stable: z.string().max(64).optional().describe('stableEdges/totalEdges, for kubectl get.'),
    model: z
      .enum(['cells', 'baseline'])
      .optional()
      .describe(
        'Retrain with evaluate.baseline: the network the epoch and bestValDice are of, the cell model or then the plain U-Net trained with the same budget.',
      ),
    bestValDice: z.number().optional().describe('Best validation Dice so far (of progress.model while retraining).'),
    etaSeconds: z.number().min(0).optional().describe('Estimated seconds until the phase ends.'),
    warnings: z
      .array(z.string().max(600))
      .max(4)
      .optional()
      .describe('Warnings of the running phase, e.g. a search.stability.threshold that cannot decide (each is also a Warning event, reason TrainerWarning).'),
    updateTime: z.string().max(MAX_TIME).optional().describe('When the progress was reported.'),
  })
  .describe("Latest progress of the running phase (advisory: from the trainer's progress events and the phase results).");

export const ExternalResult = z
  .object({
    name: z.string().max(MAX_EXTERNAL_NAME).describe('Name of the dataset (spec.evaluate.external[].name).'),
    cases: z.int().min(0).describe('Cases evaluated: all labelled cases of the dataset (no split).'),
    meanDice: z.number().describe('Mean foreground Dice of the cell model over the cases and classes (0-1).'),
    dicePerClass: z.record(z.string().max(MAX_CLASS_NAME), z.number()).optional().describe('Mean Dice per foreground class.'),
    hd95: z.number().optional().describe('Mean 95th-percentile Hausdorff distance in mm.'),
  })
  .describe('Results of the cell model on one external evaluation dataset.');
export type ExternalResult = z.infer<typeof ExternalResult>;

export const Results = z
  .object({
    meanDice: z.number().optional().describe('Mean foreground Dice over test patients and classes (0-1).'),
    dicePerClass: z.record(z.string(), z.number()).optional().describe('Mean Dice per foreground class.'),
    hd95: z.number().optional().describe('Mean 95th-percentile Hausdorff distance in mm.'),
    bestValDice: z.number().optional().describe('Best validation Dice of the retrained network.'),
    baselineMeanDice: z
      .number()
      .optional()
      .describe('Mean test Dice of the U-Net without cells trained with the same budget as the cell model (spec.evaluate.baseline).'),
    diceGain: z
      .number()
      .optional()
      .describe('Gain of the cells over the U-Net trained with the same budget: meanDice minus baselineMeanDice (spec.evaluate.baseline).'),
    external: z
      .array(ExternalResult)
      .max(MAX_EXTERNAL_DATASETS)
      .optional()
      .describe('Results of the cell model on each dataset of spec.evaluate.external, in the order given there.'),
  })
  .describe('Test-set results of the evaluate phase (bestValDice: of the retrain phase).');

export const CostStatus = z
  .object({
    gpuSeconds: z.number().min(0).default(0).describe('GPU-seconds used by all phases and attempts.'),
    gpuHours: z.number().min(0).default(0).describe('gpuSeconds in hours (rounded), for kubectl get.'),
    estimatedUSD: z.number().min(0).default(0).describe('gpuHours times spec.cost.gpuHourlyUSD.'),
    projectedFullSearchGPUSeconds: z.number().min(0).optional().describe('GPU-seconds the search phase would have used running all search.maxEpochs epochs.'),
    savedGPUSeconds: z.number().min(0).optional().describe('GPU-seconds saved by ending the search early on stability.'),
    speedup: z.number().min(0).optional().describe('Full-length cell search time divided by the actual cell search time.'),
  })
  .describe('What the search costs.');

/**
 * What status.searchResult keeps of the search phase's result (the contract's PhaseResult):
 * its figures, warnings and message. The genotype goes to status.genotype after pruning;
 * type, ok and phase are implied. Parsing a PhaseResult with it drops the rest.
 */
export const SearchResult = z
  .object({
    message: z.string().max(MAX_MESSAGE).optional().describe('What the search phase said at its end.'),
    epochs: PhaseResult.shape.epochs.describe('Search epochs run.'),
    seconds: PhaseResult.shape.seconds.describe('Wall seconds of the cell search (backbone training excluded).'),
    backboneSeconds: PhaseResult.shape.backboneSeconds.describe('Wall seconds of training the backbone before the cell search.'),
    cpuSeconds: PhaseResult.shape.cpuSeconds.describe('CPU seconds (user + system) of the search process.'),
    meanEpochSeconds: PhaseResult.shape.meanEpochSeconds.describe('Mean wall seconds of a search epoch.'),
    stoppedBy: PhaseResult.shape.stoppedBy.describe('What ended the search: stable (every cell edge stable), genotype-unchanged or max-epochs.'),
    activeOperations: PhaseResult.shape.activeOperations.describe('Candidate operations still computed at the end, over all cell edges.'),
    totalOperations: PhaseResult.shape.totalOperations.describe('Candidate operations at the start of the search.'),
    stableEdges: PhaseResult.shape.stableEdges.describe('Cell edges stable at the end.'),
    totalEdges: PhaseResult.shape.totalEdges.describe('Cell edges in all cells.'),
    bestValDice: PhaseResult.shape.bestValDice.describe('Best validation Dice during the search.'),
    warnings: PhaseResult.shape.warnings.describe('Warnings of the search phase, e.g. a search.stability.threshold that cannot decide.'),
  })
  .describe('Result of the search phase (epochs, stoppedBy, mean epoch seconds).');
export type SearchResult = z.infer<typeof SearchResult>;

export const IACSearchStatus = z
  .object({
    phase: SearchPhase.optional(),
    observedGeneration: z.int().min(0).optional().describe('metadata.generation the status was computed from.'),
    conditions: z.array(Condition).optional().describe('Ready, Reconciling, Stalled (kstatus) and BudgetExceeded.'),
    startTime: z.string().max(MAX_TIME).optional().describe('When the search started running (reset on resume, for activeDeadlineSeconds).'),
    activeSeconds: z.number().min(0).optional().describe('Running time before the latest resume (suspended time excluded).'),
    completionTime: z.string().max(MAX_TIME).optional().describe('When the search succeeded or failed.'),
    phases: z
      .object({
        search: PhaseRecord.optional(),
        prune: PhaseRecord.optional(),
        retrain: PhaseRecord.optional(),
        evaluate: PhaseRecord.optional(),
      })
      .optional()
      .describe('Per-phase records.'),
    progress: Progress.optional(),
    searchResult: SearchResult.optional(),
    genotype: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('The discrete cells found (from the prune phase): per cell, per node, two [input, operation] pairs.'),
    results: Results.optional(),
    cost: CostStatus.optional(),
  })
  .describe('What the operator observed.');
export type IACSearchStatus = z.infer<typeof IACSearchStatus>;
