// `iacnas trainer evaluate`: starts the backend and hands over to trainer/src/eval.
import type { PhaseContext } from './context.ts';
import type { ResultFields } from '../report/progress.ts';
import { startBackend } from '../training/setup.ts';

export async function runEvaluatePhase(ctx: PhaseContext): Promise<ResultFields> {
  await startBackend();
  const { runEvaluate } = await import('../eval/evaluate.ts');
  const r = await runEvaluate({ config: ctx.config, workdir: ctx.workdir, log: (line) => ctx.reporter.log(line) });
  const fields = {
    ok: r.ok,
    meanDice: r.meanDice,
    dicePerClass: r.dicePerClass,
    ...(r.hd95 !== undefined ? { hd95: r.hd95 } : {}),
    ...(r.baselineMeanDice !== undefined ? { baselineMeanDice: r.baselineMeanDice, diceGain: r.diceGain } : {}),
    // The result line is bounded (a container's termination message): per dataset only
    // the figures; the per-patient results are in external/<name>/results.json.
    ...(ctx.config.evaluate.external.length > 0 ? { external: r.external } : {}),
    seconds: r.seconds,
  };
  return fields;
}
