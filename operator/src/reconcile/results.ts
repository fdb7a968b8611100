// What a phase's result (the PhaseResult of its successful pod) fills in the status, one
// table row per phase: the status fields it sets (verify.ts checks stored ones against
// them), what else it moves, and how its PhaseSucceeded event words it.
import { SearchResult, type IACSearchStatus, type Stage } from '../api/index.ts';
import type { Draft } from './draft.ts';
import type { ObservedAttempt, ObservedResult } from './observe.ts';
import { noteWarnings, stableText } from './progress.ts';

type ResultStatus = Pick<IACSearchStatus, 'searchResult' | 'genotype' | 'results'>;

interface StageResult {
  /** The status fields the result fills in; undefined when it fills none. */
  fields(result: ObservedResult): ResultStatus | undefined;
  /** What else it moves in the status once its fields are in. */
  after?(d: Draft, result: ObservedResult): void;
  /** The end of the PhaseSucceeded event: the result in words. */
  describe?(result: ObservedResult): string;
}

/** The fields of status.results the evaluate phase fills in. */
export const EVALUATE_RESULTS = ['meanDice', 'dicePerClass', 'hd95', 'baselineMeanDice', 'diceGain', 'external'] as const;

const signed = (x: number) => `${x >= 0 ? '+' : ''}${x.toFixed(4)}`;

export const STAGE_RESULTS: Record<Stage, StageResult> = {
  search: {
    fields(res) {
      const summary = SearchResult.safeParse(res);
      return summary.success ? { searchResult: summary.data } : undefined;
    },
    after(d, res) {
      // The search's last figures stay in progress (the EPOCH and STABLE columns).
      const p = d.status.progress;
      d.status.progress = {
        ...p,
        phase: 'search',
        epoch: res.epochs ?? p?.epoch,
        activeOperations: res.activeOperations ?? p?.activeOperations,
        totalOperations: res.totalOperations ?? p?.totalOperations,
        stableEdges: res.stableEdges ?? p?.stableEdges,
        totalEdges: res.totalEdges ?? p?.totalEdges,
        bestValDice: res.bestValDice ?? p?.bestValDice,
        etaSeconds: 0,
      };
      d.status.progress.stable = stableText(d.status.progress);
      noteWarnings(d, res.warnings);
    },
    describe: (res) => (res.epochs !== undefined ? `: ${res.epochs} epochs${res.stoppedBy ? `, stopped by ${res.stoppedBy}` : ''}` : ''),
  },
  prune: {
    fields: (res) => (res.genotype ? { genotype: res.genotype } : undefined),
  },
  retrain: {
    fields: (res) => (res.bestValDice !== undefined ? { results: { bestValDice: res.bestValDice } } : undefined),
  },
  evaluate: {
    fields: (res) => ({
      results: {
        ...(res.meanDice !== undefined && { meanDice: res.meanDice }),
        ...(res.dicePerClass !== undefined && { dicePerClass: res.dicePerClass }),
        ...(res.hd95 !== undefined && { hd95: res.hd95 }),
        ...(res.baselineMeanDice !== undefined && { baselineMeanDice: res.baselineMeanDice }),
        ...(res.diceGain !== undefined && { diceGain: res.diceGain }),
        ...(res.external !== undefined && { external: res.external }),
      },
    }),
    describe(res) {
      if (res.meanDice === undefined) return '';
      const gain = res.diceGain !== undefined ? `, gain of the cells over the U-Net trained with the same budget ${signed(res.diceGain)}` : '';
      const external = res.external?.length ? `; ${res.external.map((e) => `${e.name} ${e.meanDice.toFixed(4)}`).join(', ')}` : '';
      return `: mean Dice ${res.meanDice.toFixed(4)}${gain}${external}`;
    },
  },
};

/** The status fields a phase's result fills in, from the pod that produced it. */
export function resultFields(stage: Stage, a: ObservedAttempt): ResultStatus | undefined {
  return a.result?.ok ? STAGE_RESULTS[stage].fields(a.result) : undefined;
}

/** Puts the result of a successful attempt into the status. */
export function applyResult(d: Draft, a: ObservedAttempt) {
  const res = a.result;
  if (!res?.ok) return;
  const row = STAGE_RESULTS[a.stage];
  const fields = row.fields(res);
  if (fields?.searchResult) d.status.searchResult = fields.searchResult;
  if (fields?.genotype) d.status.genotype = fields.genotype;
  if (fields?.results) d.status.results = { ...d.status.results, ...fields.results };
  row.after?.(d, res);
}

/** The result in words for the PhaseSucceeded event ('' when there is nothing to say). */
export function describeResult(a: ObservedAttempt): string {
  return a.result ? (STAGE_RESULTS[a.stage].describe?.(a.result) ?? '') : '';
}
