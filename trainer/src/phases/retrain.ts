// `iacnas trainer retrain`: the U-Net with the discrete cells of genotype.json,
// trained from the backbone weights with fresh cells (the IAC setting) or from
// scratch; the best-validation weights become <workdir>/retrain/model/.
//
// With evaluate.baseline the phase then trains the plain U-Net (cells 'none') the same
// way: from the same start (the backbone weights, or from scratch), with the same
// epochs, steps per epoch, batch size, learning rate, early stopping, seed and the same
// batches in the same order (one random stream). Its best-validation weights become
// <workdir>/baseline/model/ and its record <workdir>/baseline/training.json, so the
// evaluate phase compares the cells against a U-Net that had the same training.
import { CHECKPOINT_STATE_FILE, workdirLayout } from '../../../contract/src/index.ts';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PhaseContext } from './context.ts';
import type { TrainerConfig } from '../config/index.ts';
import type { SliceDataset } from '../data/types.ts';
import { type BaselineTraining, readGenotype } from '../eval/evaluate.ts';
import type { Genotype, NetworkOptions } from '../model/api.ts';
import type { ResultFields } from '../report/progress.ts';
import { validateForTraining } from '../config/validate.ts';
import { readBackboneInfo } from '../training/backbone.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { namedVariables, stepsPerEpoch } from '../training/common.ts';
import type { ModelKit } from '../training/model-kit.ts';
import { prepare } from '../training/setup.ts';
import { type SupervisedResult, resultRelevant, trainSupervised, trainingPaths } from '../training/supervised.ts';
import { badInput } from '../util/bad-input.ts';

/** The random stream of the retrain batches; the baseline uses the same one, so it sees the same batches in the same order. */
const STREAM = 'retrain';

interface TrainOne {
  ctx: PhaseContext;
  kit: ModelKit;
  data: SliceDataset;
  cells: NetworkOptions['cells'];
  /** <workdir>/retrain or <workdir>/baseline. */
  root: string;
  model: 'cells' | 'baseline';
  fingerprint: string;
  /** Epochs of trainings that follow in this phase (for the ETA). */
  followingEpochs: number;
}

/** Where the training starts: the backbone's weights (found lazily: a resumed training does not need them). */
function backboneDirOf(workdir: string, config: TrainerConfig): string {
  const dir = readBackboneInfo(workdir)?.dir ?? config.backbone.pretrained;
  if (!dir) {
    throw badInput(
      'file',
      `retrain: no trained backbone in ${workdirLayout(workdir).backbone} and no backbone.pretrained; run the search phase first, or set retrain.fromScratch: true`,
    );
  }
  return dir;
}

const NAMES = { cells: 'the U-Net with the found cells', baseline: 'the U-Net baseline (no cells)' } as const;

async function trainOne(o: TrainOne): Promise<SupervisedResult> {
  const { config, workdir, reporter } = o.ctx;
  const rc = config.retrain;
  const space = { operations: config.search.operations, nodes: config.search.nodes, partialChannels: config.search.partialChannels };
  const net = o.kit.createNetwork({
    backbone: config.backbone,
    inChannels: o.data.channels,
    numClasses: o.data.numClasses,
    cells: o.cells,
    space,
    seed: config.seed,
  });
  try {
    const paths = trainingPaths(o.root);
    const resumed = existsSync(join(paths.dir, CHECKPOINT_STATE_FILE));
    if (!rc.fromScratch && !resumed) {
      const backboneDir = backboneDirOf(workdir, config);
      await o.kit.loadBackbone(net, backboneDir);
      reporter.log(`retrain: ${NAMES[o.model]}, from the backbone weights in ${backboneDir}${o.model === 'cells' ? ', fresh discrete cells' : ''}`);
    } else if (!resumed) {
      reporter.log(`retrain: ${NAMES[o.model]}, from scratch (retrain.fromScratch)`);
    }
    const r = await trainSupervised({
      net,
      loss: o.kit.loss,
      data: o.data,
      vars: namedVariables(net, 'all'),
      epochs: rc.epochs,
      batchSize: rc.batchSize,
      stepsPerEpoch: rc.stepsPerEpoch,
      learningRate: rc.learningRate,
      earlyStoppingPatience: rc.earlyStoppingPatience,
      seed: config.seed,
      stream: STREAM,
      ...paths,
      fingerprint: o.fingerprint,
      reporter,
      events: true,
      label: o.model === 'cells' ? 'retrain' : 'baseline',
      model: o.model,
      followingEpochs: o.followingEpochs,
      fields: { learningRate: 'retrain.learningRate', stepsPerEpoch: 'retrain.stepsPerEpoch' },
    });
    // Written beside and renamed into place, so a kill never leaves half a model.
    const modelDir = join(o.root, 'model');
    const tmp = `${modelDir}.tmp-${process.pid}`;
    mkdirSync(o.root, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    await o.kit.saveWeights(net, tmp);
    rmSync(modelDir, { recursive: true, force: true });
    renameSync(tmp, modelDir);
    reporter.log(`retrain: ${NAMES[o.model]}: best validation Dice ${r.bestValDice.toFixed(4)} at epoch ${r.bestEpoch}; model in ${modelDir}`);
    return r;
  } finally {
    net.dispose();
  }
}

export async function runRetrainPhase(ctx: PhaseContext): Promise<ResultFields> {
  const { config, workdir, reporter } = ctx;
  const rc = config.retrain;
  validateForTraining(config, 'retrain');
  const layout = workdirLayout(workdir);
  const genotype: Genotype = readGenotype(layout.genotype);
  const { kit, data } = await prepare(ctx.config, genotype, rc.batchSize, 'retrain.batchSize');
  const withBaseline = config.evaluate.baseline;
  const common = { seed: config.seed, dataset: resultRelevant(config.dataset), backbone: config.backbone, retrain: rc };
  const steps = stepsPerEpoch(data.train.length, rc.batchSize, rc.stepsPerEpoch);
  if (withBaseline) {
    reporter.log(
      `retrain: evaluate.baseline is set: after the cell model, the plain U-Net is trained the same way (${rc.epochs} epochs at most x ${steps} steps of ${rc.batchSize} slices, learning rate ${rc.learningRate}, early stopping after ${rc.earlyStoppingPatience}, seed ${config.seed}, the same batches)`,
    );
  }
  const cells = await trainOne({
    ctx,
    kit,
    data,
    cells: genotype,
    root: layout.retrain,
    model: 'cells',
    fingerprint: JSON.stringify({ ...common, genotype, pc: config.search.partialChannels }),
    followingEpochs: withBaseline ? rc.epochs : 0,
  });
  let baseline: SupervisedResult | undefined;
  if (withBaseline) {
    const root = layout.baseline;
    baseline = await trainOne({
      ctx,
      kit,
      data,
      cells: 'none',
      root,
      model: 'baseline',
      fingerprint: JSON.stringify({ ...common, cells: 'none' }),
      followingEpochs: 0,
    });
    const training: BaselineTraining = {
      cells: 'none',
      startedFrom: rc.fromScratch ? 'scratch' : 'backbone',
      epochs: baseline.epochs,
      maxEpochs: rc.epochs,
      stepsPerEpoch: steps,
      batchSize: rc.batchSize,
      learningRate: rc.learningRate,
      seed: config.seed,
      bestValDice: baseline.bestValDice,
    };
    writeFileAtomic(layout.baselineTraining, `${JSON.stringify(training, null, 2)}\n`);
    reporter.log(
      `retrain: best validation Dice, same budget: cells ${cells.bestValDice.toFixed(4)}, U-Net baseline ${baseline.bestValDice.toFixed(4)} (${cells.bestValDice >= baseline.bestValDice ? '+' : ''}${(100 * (cells.bestValDice - baseline.bestValDice)).toFixed(2)} points)`,
    );
  }
  return {
    ok: true,
    epochs: cells.epochs,
    seconds: cells.seconds + (baseline?.seconds ?? 0),
    meanEpochSeconds: cells.meanEpochSeconds,
    bestValDice: cells.bestValDice,
    ...(baseline && { baselineBestValDice: baseline.bestValDice }),
  };
}
