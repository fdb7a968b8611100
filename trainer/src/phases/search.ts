// `iacnas trainer search`: backbone first (given, reused or trained), then the
// bi-level IAC-LTH cell search with a checkpoint every epoch.
import { workdirLayout } from '../../../contract/src/index.ts';
import { mkdirSync } from 'node:fs';
import type { PhaseContext } from './context.ts';
import type { TrainerConfig } from '../config/index.ts';
import type { ResultFields } from '../report/progress.ts';
import { prepare } from '../training/setup.ts';
import { ensureBackbone } from '../training/backbone.ts';
import { resultRelevant } from '../training/supervised.ts';
import { runSearch } from '../search/search.ts';
import { summariseGenotype } from '../search/summary.ts';
import { validateForTraining } from '../config/validate.ts';

/**
 * What decides the search's result; a checkpoint with another fingerprint is not resumed.
 * `autoScale` plays no part in the absolute test, so a search with a threshold has the
 * fingerprint it had before the automatic test existed and resumes across that upgrade.
 */
export function searchFingerprint(c: TrainerConfig): string {
  const { autoScale, ...absolute } = c.search.stability;
  const stability = c.search.stability.threshold === undefined ? c.search.stability : absolute;
  return JSON.stringify({ seed: c.seed, dataset: resultRelevant(c.dataset), backbone: c.backbone, search: { ...c.search, stability } });
}

export async function runSearchPhase(ctx: PhaseContext): Promise<ResultFields> {
  const { config, workdir, reporter } = ctx;
  validateForTraining(config, 'search');
  const { kit, data } = await prepare(ctx.config, 'supernet');
  const backbone = await ensureBackbone({ config, workdir, data, kit, reporter });
  const layout = workdirLayout(workdir);
  mkdirSync(layout.search, { recursive: true });
  const r = await runSearch({
    config,
    data,
    kit,
    reporter,
    backboneDir: backbone.dir,
    dir: layout.searchCheckpoint,
    historyFile: layout.searchHistory,
    fingerprint: searchFingerprint(config),
  });
  return {
    ok: true,
    epochs: r.epochs,
    seconds: r.seconds,
    backboneSeconds: backbone.seconds,
    meanEpochSeconds: r.meanEpochSeconds,
    stoppedBy: r.stoppedBy,
    activeOperations: r.activeOperations,
    totalOperations: r.totalOperations,
    stableEdges: r.stableEdges,
    totalEdges: r.totalEdges,
    genotype: summariseGenotype(r.genotype),
    bestValDice: r.bestValDice,
    ...(r.warnings.length > 0 && { warnings: r.warnings }),
  };
}
