// Checks of the trainer configuration that the schema cannot express field by
// field; run before any training so that a bad configuration costs nothing and
// exits with status 2.
import { type BadInputIssue, BadInputError } from '../../../contract/src/index.ts';
import type { TrainerConfig } from './index.ts';

export function validateForTraining(c: TrainerConfig, phase: 'search' | 'retrain'): void {
  const problems: BadInputIssue[] = [];
  const step = 2 ** c.backbone.depth;
  if (c.dataset.sliceSize % step !== 0) {
    problems.push({
      path: 'dataset.sliceSize',
      message: `${c.dataset.sliceSize} is not a multiple of 2^backbone.depth = ${step}; use ${Math.max(step, Math.round(c.dataset.sliceSize / step) * step)} or lower backbone.depth`,
    });
  }
  if (phase === 'search') {
    const s = c.search;
    const p = s.stability.pruneTo;
    if (p.some((k, i) => i > 0 && k >= p[i - 1]))
      problems.push({ path: 'search.stability.pruneTo', message: `must be strictly decreasing, e.g. [3, 1]; got [${p.join(', ')}]` });
    if (s.stability.threshold !== undefined && s.stability.autoScale !== 1) {
      problems.push({
        path: 'search.stability.autoScale',
        message: `${s.stability.autoScale} scales the automatic test, which search.stability.threshold (${s.stability.threshold}) turns off; remove one of them`,
      });
    }
    const dup = s.operations.filter((o, i) => s.operations.indexOf(o) !== i);
    if (dup.length) problems.push({ path: 'search.operations', message: `${[...new Set(dup)].join(', ')} listed more than once` });
    if (!s.operations.some((o) => o !== 'none')) problems.push({ path: 'search.operations', message: `needs at least one operation other than 'none'` });
    if (s.warmupEpochs >= s.maxEpochs) {
      problems.push({
        path: 'search.warmupEpochs',
        message: `${s.warmupEpochs} is not below search.maxEpochs ${s.maxEpochs}, so the architecture would never be trained; lower it`,
      });
    }
    if (c.backbone.baseFilters % s.partialChannels !== 0) {
      problems.push({
        path: 'search.partialChannels',
        message: `${s.partialChannels} does not divide backbone.baseFilters ${c.backbone.baseFilters}; use a divisor such as ${[1, 2, 4, 8].filter((k) => c.backbone.baseFilters % k === 0).at(-1)}`,
      });
    }
  }
  if (problems.length) throw BadInputError.fromIssues('config', 'invalid trainer configuration:', problems);
}
