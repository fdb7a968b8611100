// What a search costs, from the attempt records in the status (each finished attempt
// counted once) plus the running attempt up to now; and what stability pruning saved
// compared with running the search for its whole epoch budget.
import { STAGES, type IACSearch, type PhaseRecord, type Stage } from '../api/index.ts';
import { runningGPUSeconds } from './attempts.ts';
import { stageGPUs } from './children.ts';
import type { Draft } from './draft.ts';

export interface CostStatus {
  gpuSeconds: number;
  gpuHours: number;
  estimatedUSD: number;
  projectedFullSearchGPUSeconds?: number;
  savedGPUSeconds?: number;
  speedup?: number;
}

export interface CostInput {
  phases: Partial<Record<Stage, PhaseRecord>>;
  /** GPU-seconds of attempts still running (not yet in the records), by stage. */
  running: Partial<Record<Stage, number>>;
  gpuHourlyUSD: number;
  /** search.maxEpochs: the full-length search budget. */
  maxEpochs: number;
  searchGPUs: number;
  searchSucceeded: boolean;
  /** The search phase's result (epochs run, cell-search seconds, mean epoch seconds). */
  searchResult?: { epochs?: number; seconds?: number; meanEpochSeconds?: number };
  /** Latest search progress while the search runs. */
  progress?: { epoch: number; epochSeconds?: number };
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

/** Updates each phase record's gpuSeconds and returns the search's cost. */
export function computeCost(input: CostInput): CostStatus {
  let total = 0;
  for (const stage of STAGES) {
    const r = input.phases[stage];
    const finished = (r?.history ?? []).reduce((s, h) => s + h.gpuSeconds, 0);
    const seconds = finished + (input.running[stage] ?? 0);
    if (r) r.gpuSeconds = round(seconds, 3);
    total += seconds;
  }
  const hours = total / 3600;
  const cost: CostStatus = {
    gpuSeconds: round(total, 3),
    gpuHours: round(hours, 4),
    estimatedUSD: round(hours * input.gpuHourlyUSD, 4),
  };

  const searchSeconds = input.phases.search?.gpuSeconds ?? 0;
  const res = input.searchResult;
  if (input.searchSucceeded && res?.epochs && res.meanEpochSeconds) {
    if (input.searchGPUs > 0) {
      const saved = Math.max(0, input.maxEpochs - res.epochs) * res.meanEpochSeconds * input.searchGPUs;
      cost.savedGPUSeconds = round(saved, 3);
      cost.projectedFullSearchGPUSeconds = round(searchSeconds + saved, 3);
    }
    const cellSearchSeconds = res.seconds && res.seconds > 0 ? res.seconds : res.epochs * res.meanEpochSeconds;
    cost.speedup = round((input.maxEpochs * res.meanEpochSeconds) / cellSearchSeconds, 3);
  } else if (!input.searchSucceeded && input.progress?.epochSeconds && input.searchGPUs > 0) {
    // While searching: what the whole epoch budget would cost at the current pace.
    const remaining = Math.max(0, input.maxEpochs - input.progress.epoch);
    cost.projectedFullSearchGPUSeconds = round(searchSeconds + remaining * input.progress.epochSeconds * input.searchGPUs, 3);
  }
  return cost;
}

/** Writes status.cost (and each phase record's gpuSeconds) from the records and the running attempts. */
export function updateCost(d: Draft): CostStatus {
  const cost = computeCost({
    phases: d.status.phases ?? {},
    running: runningGPUSeconds(d),
    gpuHourlyUSD: d.search.spec.cost.gpuHourlyUSD,
    maxEpochs: d.search.spec.search.maxEpochs,
    searchGPUs: stageGPUs(d.search, 'search'),
    searchSucceeded: Boolean(d.status.phases?.search?.succeeded),
    searchResult: d.status.searchResult,
    progress: d.input.progress?.phase === 'search' ? d.input.progress : undefined,
  });
  d.status.cost = cost;
  return cost;
}

/** Whether the search has used up spec.budget, and the sentence that says how far it is. */
export interface BudgetState {
  exceeded: boolean;
  message: string;
}

export function budgetState(budget: IACSearch['spec']['budget'], cost: CostStatus): BudgetState {
  const { maxGPUHours, maxCostUSD } = budget;
  const overHours = maxGPUHours !== undefined && cost.gpuSeconds >= maxGPUHours * 3600;
  const overCost = maxCostUSD !== undefined && cost.estimatedUSD >= maxCostUSD;
  const message = overHours
    ? `used ${cost.gpuHours} GPU-hours of the ${maxGPUHours} allowed by spec.budget.maxGPUHours`
    : overCost
      ? `estimated cost ${cost.estimatedUSD} USD reached spec.budget.maxCostUSD ${maxCostUSD}`
      : 'within budget';
  return { exceeded: overHours || overCost, message };
}
