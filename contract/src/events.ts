// Progress events and phase results: what a trainer phase prints (JSON lines on
// stdout), POSTs to the operator's /v1/progress, and writes as its termination
// message. The operator validates them with these same schemas.
import { z } from 'zod';
import { Phase } from './phases.ts';

export const ProgressEvent = z.object({
  type: z.literal('progress'),
  phase: Phase,
  /** 1-based epoch just finished. */
  epoch: z.int().min(0),
  /** Epoch budget of this phase (search: maxEpochs). */
  maxEpochs: z.int().min(0),
  trainLoss: z.number().optional(),
  valLoss: z.number().optional(),
  valDice: z.number().min(0).max(1).optional(),
  bestValDice: z.number().min(0).max(1).optional(),
  /** Operations still computed, summed over all cell edges. */
  activeOperations: z.int().min(0).optional(),
  totalOperations: z.int().min(0).optional(),
  stableEdges: z.int().min(0).optional(),
  totalEdges: z.int().min(0).optional(),
  /** Latest JS divergence per edge, keyed "<cell>.<edge>". */
  edgeJsd: z.record(z.string(), z.number().min(0)).optional(),
  epochSeconds: z.number().min(0).optional(),
  /**
   * Estimated seconds until this phase ends, at the pace of the recent epochs. What it
   * counts is etaBasis: 'max-epochs' the epoch budget (an upper bound where early stopping
   * or the stability criterion can end the phase sooner); 'stable' the epochs the
   * stability criterion still needs at the least (each cell edge the genotype keeps, stable
   * for search.stability.window epochs once per pruning step it has left); 'genotype-unchanged'
   * the epochs of search.stability.patience left if the genotype stops changing.
   */
  etaSeconds: z.number().min(0).optional(),
  etaBasis: z.enum(['stable', 'genotype-unchanged', 'max-epochs']).optional(),
  /** Seconds until the epoch budget is spent (search.maxEpochs): the upper bound, when etaSeconds counts fewer epochs. */
  etaMaxSeconds: z.number().min(0).optional(),
  /** retrain: which network the epoch trained: the U-Net with the found cells, or the plain U-Net baseline (evaluate.baseline). */
  model: z.enum(['cells', 'baseline']).optional(),
  /** Warnings of this phase so far (search: a stability threshold that cannot decide), repeated by every later event. */
  warnings: z.array(z.string().max(600)).max(4).optional(),
  time: z.string().optional(),
});
export type ProgressEvent = z.infer<typeof ProgressEvent>;

/** Genotype in compact form: per cell, per intermediate node, two [input, operation] pairs. */
export const GenotypeSummary = z.object({
  cells: z.array(z.array(z.array(z.tuple([z.int().min(0), z.string()])))),
});

/** One external dataset's figures in the evaluate phase's result. */
export const ExternalSummary = z.object({
  name: z.string(),
  cases: z.int().min(0),
  meanDice: z.number(),
  dicePerClass: z.record(z.string(), z.number()).optional(),
  hd95: z.number().optional(),
});

/** The small JSON result a phase writes as its termination message (< 4 KiB). */
export const PhaseResult = z.object({
  type: z.literal('result'),
  phase: Phase,
  ok: z.boolean(),
  message: z.string().optional(),
  epochs: z.int().min(0).optional(),
  /** Wall seconds of this phase's own work (search: cell search only, backbone training excluded). */
  seconds: z.number().min(0).optional(),
  backboneSeconds: z.number().min(0).optional(),
  /** CPU seconds (user + system) the phase process used, from process.cpuUsage(). */
  cpuSeconds: z.number().min(0).optional(),
  meanEpochSeconds: z.number().min(0).optional(),
  stoppedBy: z.enum(['stable', 'genotype-unchanged', 'max-epochs']).optional(),
  activeOperations: z.int().min(0).optional(),
  totalOperations: z.int().min(0).optional(),
  stableEdges: z.int().min(0).optional(),
  totalEdges: z.int().min(0).optional(),
  genotype: GenotypeSummary.optional(),
  bestValDice: z.number().optional(),
  /** retrain with evaluate.baseline: best validation Dice of the plain U-Net trained with the same budget. */
  baselineBestValDice: z.number().optional(),
  /** evaluate: mean foreground Dice over patients and classes, 0-1. */
  meanDice: z.number().optional(),
  dicePerClass: z.record(z.string(), z.number()).optional(),
  /** evaluate: mean HD95 in mm over patients and foreground classes. */
  hd95: z.number().optional(),
  /** evaluate with evaluate.baseline: mean Dice of the U-Net trained with the same budget, and meanDice minus it. */
  baselineMeanDice: z.number().optional(),
  diceGain: z.number().optional(),
  /** Warnings of the phase (search: a stability threshold that cannot decide). */
  warnings: z.array(z.string().max(600)).max(4).optional(),
  /** evaluate: the cell model on each dataset of evaluate.external (a malformed list reads as none, never failing the result). */
  external: z.array(ExternalSummary).optional().catch(undefined),
});
export type PhaseResult = z.infer<typeof PhaseResult>;
