// Progress events and phase results: what a trainer phase prints (JSON lines on
// stdout), POSTs to the operator's /v1/progress, and writes as its termination
// message. The operator validates them with these same schemas.
import { z } from 'zod';

export const Phase = z.enum(['search', 'prune', 'retrain', 'evaluate']);
export type Phase = z.infer<typeof Phase>;

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
  /** Estimated seconds until this phase ends. */
  etaSeconds: z.number().min(0).optional(),
  time: z.string().optional(),
});
export type ProgressEvent = z.infer<typeof ProgressEvent>;

/** Genotype in compact form: per cell, per intermediate node, two [input, operation] pairs. */
export const GenotypeSummary = z.object({
  cells: z.array(z.array(z.array(z.tuple([z.int().min(0), z.string()])))),
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
  /** evaluate: mean foreground Dice over patients and classes, 0-1. */
  meanDice: z.number().optional(),
  dicePerClass: z.record(z.string(), z.number()).optional(),
  /** evaluate: mean HD95 in mm over patients and foreground classes. */
  hd95: z.number().optional(),
});
export type PhaseResult = z.infer<typeof PhaseResult>;
