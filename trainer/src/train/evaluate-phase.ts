// `iacnas trainer evaluate`: starts the backend and hands over to trainer/src/eval.
import type { PhaseContext } from '../cli.ts';
import type { ResultFields } from '../report/progress.ts';
import { startBackend } from './setup.ts';

export async function runEvaluatePhase(ctx: PhaseContext): Promise<ResultFields> {
  await startBackend();
  const { runEvaluate } = await import('../eval/evaluate.ts');
  const r = await runEvaluate({ config: ctx.config, workdir: ctx.workdir, log: (line) => ctx.reporter.log(line) });
  return { ok: r.ok, meanDice: r.meanDice, dicePerClass: r.dicePerClass, ...(r.hd95 !== undefined ? { hd95: r.hd95 } : {}), seconds: r.seconds };
}
