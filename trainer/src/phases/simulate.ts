// `iacnas trainer <phase> --simulate <seconds>` (or IACNAS_SIMULATE_SECONDS): a phase that
// only pretends to train, for benchmarks and tests of the operator at scale, where
// hundreds of real trainers cannot run. It loads neither TensorFlow.js nor data: it waits
// the given time while reporting a few progress events, then returns a plausible result
// of the phase (what the operator reads from a real one; each phase's is in registry.ts).
import { BadInputError, ENV } from '../../../contract/src/index.ts';
import type { ProgressReporter, ResultFields } from '../report/progress.ts';
import type { PhaseDefinition } from './registry.ts';

/** Parses the seconds of --simulate / IACNAS_SIMULATE_SECONDS; undefined when neither is set. */
export function simulateSeconds(flag: string | undefined, env: Record<string, string | undefined>): number | undefined {
  const [raw, source] = flag !== undefined ? [flag, '--simulate'] : [env[ENV.simulateSeconds], ENV.simulateSeconds];
  if (raw === undefined || raw === '') return undefined;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0 || s > 86400) {
    throw new BadInputError(
      'usage',
      `${source}: '${raw}' is not a number of seconds between 0 and 86400 (e.g. ${source === '--simulate' ? '--simulate 5' : `${ENV.simulateSeconds}=5`})`,
    );
  }
  return s;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs a simulated phase: its progress events spread over `seconds`, then its result fields. */
export async function simulatePhase(phase: PhaseDefinition, seconds: number, reporter: ProgressReporter): Promise<ResultFields> {
  const started = performance.now();
  const { epochs, progress, result } = phase.simulate;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    await sleep((seconds * 1000) / epochs);
    const dice = 0.5 + 0.1 * epoch;
    reporter.progress({
      epoch,
      maxEpochs: epochs,
      trainLoss: 1 / (epoch + 1),
      valDice: dice,
      bestValDice: dice,
      ...progress?.(epoch),
      epochSeconds: seconds / epochs,
      etaSeconds: (seconds * (epochs - epoch)) / epochs,
    });
  }
  if (epochs === 0) await sleep(seconds * 1000);
  const elapsed = (performance.now() - started) / 1000;
  return { ok: true, message: `simulated ${phase.name} (${seconds} s)`, seconds: elapsed, ...result(elapsed, epochs) };
}
