// status.progress: the latest progress event of the running phase (advisory), the
// trainer's warnings, and what the columns show once the search has finished.
import type { ProgressEvent } from '../../../contract/src/index.ts';
import type { Stage } from '../api/index.ts';
import { event, iso, type Draft } from './draft.ts';

/** The most trainer warnings a phase keeps in status.progress.warnings and records as events. */
export const MAX_WARNINGS = 4;

/** "stable/total" edges for kubectl get's STABLE column. */
export function stableText(p: { stableEdges?: number; totalEdges?: number }): string | undefined {
  return p.stableEdges !== undefined && p.totalEdges !== undefined ? `${p.stableEdges}/${p.totalEdges}` : undefined;
}

/**
 * A trainer's warnings (e.g. a stability threshold that cannot decide) go to status.progress
 * and each new one becomes a Warning event: the progress events repeat them, the result has them all.
 * At most MAX_WARNINGS per phase: a pod that sends new text in every event makes no more.
 */
export function noteWarnings(d: Draft, warnings: readonly string[] | undefined) {
  if (!warnings?.length) return;
  d.status.progress ??= {};
  const p = d.status.progress;
  const known = p.warnings ?? [];
  const fresh = [...new Set(warnings)].filter((w) => !known.includes(w)).slice(0, Math.max(0, MAX_WARNINGS - known.length));
  if (fresh.length === 0) return;
  for (const w of fresh) event(d, 'Warning', 'TrainerWarning', w);
  p.warnings = [...known, ...fresh];
}

/** Takes the latest progress event when it is about the phase now running. */
export function applyProgress(d: Draft, stage: Stage, progress: ProgressEvent | undefined) {
  const current = d.status.progress;
  if (current?.phase !== stage) {
    // A new phase: epoch counters restart, the cell's stability figures stay.
    d.status.progress = {
      phase: stage,
      ...(current?.activeOperations !== undefined && { activeOperations: current.activeOperations, totalOperations: current.totalOperations }),
      ...(current?.stableEdges !== undefined && { stableEdges: current.stableEdges, totalEdges: current.totalEdges, stable: current.stable }),
    };
  }
  if (!progress || progress.phase !== stage) return;
  const p = d.status.progress!;
  if (progress.model !== p.model) {
    // The retrain phase trains the same-budget U-Net after the cell model: its epochs
    // count from 1 again and its best Dice is its own, never the cell model's.
    delete p.bestValDice;
    if (progress.model === undefined) delete p.model;
    else p.model = progress.model;
  }
  p.epoch = progress.epoch;
  p.maxEpochs = progress.maxEpochs;
  for (const k of ['activeOperations', 'totalOperations', 'stableEdges', 'totalEdges', 'bestValDice', 'etaSeconds'] as const) {
    if (progress[k] !== undefined) p[k] = progress[k];
  }
  noteWarnings(d, progress.warnings);
  p.stable = stableText(p);
  p.updateTime = progress.time ?? iso(d.now);
}

/** Finished: progress (the EPOCH and STABLE columns) shows what the search itself ran. */
export function showSearchedProgress(d: Draft) {
  const searched = d.status.searchResult;
  if (searched?.epochs !== undefined && d.status.progress?.phase !== 'search') {
    d.status.progress = { ...d.status.progress, phase: 'search', epoch: searched.epochs, maxEpochs: d.search.spec.search.maxEpochs };
  }
}
