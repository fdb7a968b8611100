// A stand-in for `iacnas trainer <phase>` in tests of `iacnas run`: it follows the
// command-line contract (docs/trainer-phases.md) without TensorFlow.js. Epochs are
// checkpointed to <workdir>/<phase>.epoch, so a stopped phase resumes.
// FAKE_TRAINER_EPOCHS (default 3), FAKE_TRAINER_EPOCH_MS (default 10),
// FAKE_TRAINER_FAIL=<phase> exits 2 (bad input) in that phase. The evaluate phase reports a
// baseline with evaluate.baseline and figures for each dataset of evaluate.external; with
// FAKE_TRAINER_DICE_BY_SEED=1 its test Dice is 0.7 + seed/100 (children of a fleet differ).
// Each phase writes the thread count it was given (TF_NUM_INTRAOP_THREADS) to <workdir>/threads.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { workdirLayout } from '../../contract/src/index.ts';

const argv = process.argv.slice(2);
const [command, phase] = argv;
const flag = (name: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const workdir = flag('--workdir')!;
const resultFile = flag('--result-file') ?? process.env.IACNAS_RESULT_FILE;
const config = JSON.parse(flag('--config-json') ?? '{}') as {
  name?: string;
  seed?: number;
  dataset?: { path?: string };
  evaluate?: { baseline?: boolean; external?: Array<{ name: string; path: string }> };
};
const epochs = Number(process.env.FAKE_TRAINER_EPOCHS ?? 3);
const epochMs = Number(process.env.FAKE_TRAINER_EPOCH_MS ?? 10);

function result(r: Record<string, unknown>) {
  const text = JSON.stringify({ type: 'result', phase, ...r });
  process.stdout.write(`${text}\n`);
  if (resultFile) writeFileSync(resultFile, text);
}

if (command !== 'trainer' || !workdir) {
  process.stderr.write(`fake trainer: bad command line ${argv.join(' ')}\n`);
  process.exit(2);
}
writeFileSync(join(workdir, 'threads'), process.env.TF_NUM_INTRAOP_THREADS ?? '-');
writeFileSync(join(workdir, 'invocations.log'), `${phase} ${config.name} ${config.dataset?.path ?? '-'}\n`, { flag: 'a' });
if (process.env.FAKE_TRAINER_FAIL === phase) {
  process.stderr.write(`${phase}: dataset.path: no dataset.json here\n`);
  result({ ok: false, message: 'dataset.path: no dataset.json here' });
  process.exit(2);
}
const checkpoint = join(workdir, `${phase}.epoch`);
let epoch = existsSync(checkpoint) ? Number(readFileSync(checkpoint, 'utf8')) : 0;
if (epoch > 0) process.stderr.write(`${phase}: resumed from epoch ${epoch}\n`);
const max = phase === 'prune' || phase === 'evaluate' ? 1 : epochs;
while (epoch < max) {
  await new Promise((r) => setTimeout(r, epochMs));
  epoch += 1;
  writeFileSync(`${checkpoint}.tmp`, String(epoch));
  renameSync(`${checkpoint}.tmp`, checkpoint); // atomic, as the trainer's checkpoints
  const event = {
    type: 'progress',
    phase,
    epoch,
    maxEpochs: max,
    activeOperations: 140 - epoch * 10,
    totalOperations: 140,
    stableEdges: Math.min(14, epoch * 4),
    totalEdges: 14,
    epochSeconds: epochMs / 1000,
    etaSeconds: ((max - epoch) * epochMs) / 1000,
  };
  process.stdout.write(`${JSON.stringify(event)}\n`);
  process.stderr.write(`${phase} epoch ${epoch}/${max}\n`);
}
switch (phase) {
  case 'search':
    result({
      ok: true,
      epochs: max,
      seconds: (max * epochMs) / 1000,
      meanEpochSeconds: epochMs / 1000,
      stoppedBy: 'stable',
      stableEdges: 14,
      totalEdges: 14,
      activeOperations: 14,
      totalOperations: 140,
    });
    break;
  case 'prune':
    writeFileSync(workdirLayout(workdir).genotype, '{}');
    result({
      ok: true,
      genotype: {
        cells: [
          [
            [
              [0, 'conv_3x3'],
              [1, 'skip_connect'],
            ],
          ],
        ],
      },
    });
    break;
  case 'retrain':
    result({ ok: true, epochs: max, bestValDice: 0.8 });
    break;
  case 'evaluate': {
    // evaluate.baseline: a U-Net without cells 0.05 below; evaluate.external: 0.6, 0.61, ... on 4 cases each.
    const external = (config.evaluate?.external ?? []).map((e, i) => {
      const dir = workdirLayout(workdir).external(e.name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(workdirLayout(dir).results, JSON.stringify({ path: e.path }));
      return { name: e.name, cases: 4, meanDice: 0.6 + i / 100, dicePerClass: { '1': 0.6, '2': 0.6 + i / 50 }, hd95: 4 };
    });
    const baseline = config.evaluate?.baseline ? { baselineMeanDice: 0.7, diceGain: 0.05 } : {};
    const meanDice = process.env.FAKE_TRAINER_DICE_BY_SEED === '1' ? 0.7 + (config.seed ?? 0) / 100 : 0.75;
    writeFileSync(workdirLayout(workdir).results, JSON.stringify({ meanDice }));
    result({ ok: true, meanDice, dicePerClass: { '1': 0.7, '2': 0.8 }, hd95: 3.2, ...baseline, ...(external.length > 0 && { external }) });
    break;
  }
}
