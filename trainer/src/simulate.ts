// `iacnas trainer <phase> --simulate <seconds>` (or IACNAS_SIMULATE_SECONDS): a phase that
// only pretends to train, for benchmarks and tests of the operator at scale, where
// hundreds of real trainers cannot run. It loads neither TensorFlow.js nor data: it waits
// the given time while reporting a few progress events, then returns a plausible result
// of the phase (what the operator reads from a real one).
import type { Phase } from '../../contract/src/index.ts';
import type { ProgressReporter, ResultFields } from './report/progress.ts';

/** Progress events a simulated phase reports (spread evenly over its time). */
export const SIMULATED_EPOCHS = 2;

/** Parses the seconds of --simulate / IACNAS_SIMULATE_SECONDS; undefined when neither is set. */
export function simulateSeconds(flag: string | undefined, env: Record<string, string | undefined>): number | undefined {
  const [raw, source] = flag !== undefined ? [flag, '--simulate'] : [env.IACNAS_SIMULATE_SECONDS, 'IACNAS_SIMULATE_SECONDS'];
  if (raw === undefined || raw === '') return undefined;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0 || s > 86400) {
    const err = new Error(`${source}: '${raw}' is not a number of seconds between 0 and 86400 (e.g. ${source === '--simulate' ? '--simulate 5' : 'IACNAS_SIMULATE_SECONDS=5'})`);
    err.name = 'ConfigError';
    throw err;
  }
  return s;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs a simulated phase: SIMULATED_EPOCHS progress events over `seconds`, then its result fields. */
export async function simulatePhase(phase: Phase, seconds: number, reporter: ProgressReporter): Promise<ResultFields> {
  const started = performance.now();
  const epochs = phase === 'prune' ? 0 : SIMULATED_EPOCHS;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    await sleep((seconds * 1000) / epochs);
    const dice = 0.5 + 0.1 * epoch;
    reporter.progress({
      epoch,
      maxEpochs: epochs,
      trainLoss: 1 / (epoch + 1),
      valDice: dice,
      bestValDice: dice,
      ...(phase === 'search' && { activeOperations: 8 - epoch, totalOperations: 8, stableEdges: epoch, totalEdges: 4 }),
      epochSeconds: seconds / epochs,
      etaSeconds: (seconds * (epochs - epoch)) / epochs,
    });
  }
  if (epochs === 0) await sleep(seconds * 1000);
  const elapsed = (performance.now() - started) / 1000;
  const common = { ok: true, message: `simulated ${phase} (${seconds} s)`, seconds: elapsed };
  switch (phase) {
    case 'search':
      return { ...common, epochs, meanEpochSeconds: elapsed / epochs, stoppedBy: 'stable', activeOperations: 4, totalOperations: 8, stableEdges: 4, totalEdges: 4, bestValDice: 0.7 };
    case 'prune':
      return { ...common, genotype: { cells: [[[[0, 'skip_connect'], [1, 'conv_3x3']]]] }, activeOperations: 2, totalOperations: 8 };
    case 'retrain':
      return { ...common, epochs, meanEpochSeconds: elapsed / epochs, bestValDice: 0.7 };
    case 'evaluate':
      return { ...common, meanDice: 0.7, dicePerClass: { '1': 0.7 }, hd95: 3.5 };
  }
}
