// `iacnas trainer retrain`: the U-Net with the discrete cells of genotype.json,
// trained from the backbone weights with fresh cells (the IAC setting) or from
// scratch; the best-validation weights become <workdir>/retrain/model/.
import { existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PhaseContext } from '../cli.ts';
import { readGenotype } from '../eval/evaluate.ts';
import type { ResultFields } from '../report/progress.ts';
import { validateForTraining } from '../search/validate.ts';
import { readBackboneInfo } from './backbone.ts';
import { namedVariables } from './common.ts';
import { prepare } from './setup.ts';
import { resultRelevant, trainSupervised, trainingPaths } from './supervised.ts';

export async function runRetrainPhase(ctx: PhaseContext): Promise<ResultFields> {
  const { config, workdir, reporter } = ctx;
  const rc = config.retrain;
  validateForTraining(config, 'retrain');
  const genotype = readGenotype(join(workdir, 'genotype.json'));
  const { kit, data } = await prepare(ctx, genotype, rc.batchSize, 'retrain.batchSize');
  const space = { operations: config.search.operations, nodes: config.search.nodes, partialChannels: config.search.partialChannels };
  const net = kit.createNetwork({ backbone: config.backbone, inChannels: data.channels, numClasses: data.numClasses, cells: genotype, space, seed: config.seed });
  try {
    const paths = trainingPaths(join(workdir, 'retrain'));
    if (!rc.fromScratch && !existsSync(join(paths.dir, 'state.json'))) {
      const backboneDir = readBackboneInfo(workdir)?.dir ?? config.backbone.pretrained;
      if (!backboneDir) {
        throw Object.assign(
          new Error(`retrain: no trained backbone in ${join(workdir, 'backbone')} and no backbone.pretrained; run the search phase first, or set retrain.fromScratch: true`),
          { badInput: true },
        );
      }
      await kit.loadBackbone(net, backboneDir);
      reporter.log(`retrain: backbone weights from ${backboneDir}, fresh discrete cells`);
    }
    const r = await trainSupervised({
      net,
      loss: kit.loss,
      data,
      vars: namedVariables(net, 'all'),
      epochs: rc.epochs,
      batchSize: rc.batchSize,
      stepsPerEpoch: rc.stepsPerEpoch,
      learningRate: rc.learningRate,
      earlyStoppingPatience: rc.earlyStoppingPatience,
      seed: config.seed,
      stream: 'retrain',
      ...paths,
      fingerprint: JSON.stringify({ seed: config.seed, dataset: resultRelevant(config.dataset), backbone: config.backbone, retrain: rc, genotype, pc: space.partialChannels }),
      reporter,
      events: true,
      label: 'retrain',
    });
    // Written beside and renamed into place, so a kill never leaves half a model.
    const modelDir = join(workdir, 'retrain', 'model');
    const tmp = `${modelDir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    await kit.saveWeights(net, tmp);
    rmSync(modelDir, { recursive: true, force: true });
    renameSync(tmp, modelDir);
    reporter.log(`retrain: best validation Dice ${r.bestValDice.toFixed(4)} at epoch ${r.bestEpoch}; model in ${modelDir}`);
    return {
      ok: true,
      epochs: r.epochs,
      seconds: r.seconds,
      meanEpochSeconds: r.meanEpochSeconds,
      bestValDice: r.bestValDice,
    };
  } finally {
    net.dispose();
  }
}
