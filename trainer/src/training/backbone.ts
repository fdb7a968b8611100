// The trained U-Net the cells are implanted into: <workdir>/backbone/. It comes from
// backbone.pretrained, or from training the plain U-Net (timed apart from the cell
// search), and once there it is reused, never retrained.
import { workdirLayout } from '../../../contract/src/index.ts';
import { existsSync, mkdirSync } from 'node:fs';
import type { TrainerConfig } from '../config/index.ts';
import type { SliceDataset } from '../data/types.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import { namedVariables } from './common.ts';
import type { ModelKit } from './model-kit.ts';
import { readJsonFile } from './json.ts';
import { WorkdirMismatchError, resultRelevant, trainSupervised, trainingPaths } from './supervised.ts';
import { badInput } from '../util/bad-input.ts';

export interface BackboneInfo {
  /** Directory with the backbone weights (saveWeights format). */
  dir: string;
  /** Seconds spent training it (0 when it was given); kept across runs. */
  seconds: number;
  source: 'pretrained' | 'trained';
  epochs: number;
  bestValDice?: number;
  /** The configuration it was made with (backboneFingerprint). */
  fingerprint?: string;
}

export function backboneFingerprint(c: TrainerConfig): string {
  return JSON.stringify({ seed: c.seed, dataset: resultRelevant(c.dataset), backbone: c.backbone });
}

export function readBackboneInfo(workdir: string): BackboneInfo | null {
  const { backbone: dir, backboneMeta: meta } = workdirLayout(workdir);
  if (!existsSync(meta)) return null;
  return { ...readJsonFile<Omit<BackboneInfo, 'dir'>>(meta, 'backbone metadata'), dir };
}

export async function ensureBackbone(o: {
  config: TrainerConfig;
  workdir: string;
  data: SliceDataset;
  kit: ModelKit;
  reporter: ProgressReporter;
}): Promise<BackboneInfo> {
  const { config, workdir, data, kit, reporter } = o;
  const existing = readBackboneInfo(workdir);
  if (existing?.fingerprint !== undefined && existing.fingerprint !== backboneFingerprint(config)) {
    throw new WorkdirMismatchError(
      `${existing.dir} holds a backbone trained with another seed, dataset or backbone configuration; use a new --workdir, or delete ${existing.dir} to train it again`,
    );
  }
  if (existing) {
    reporter.log(`search: reusing the trained backbone in ${existing.dir}`);
    return existing;
  }
  // <workdir>/backbone/meta.json is written last: the backbone is complete when it exists.
  const { backbone: dir, backboneMeta: meta } = workdirLayout(workdir);
  mkdirSync(dir, { recursive: true });
  const net = kit.createNetwork({ backbone: config.backbone, inChannels: data.channels, numClasses: data.numClasses, cells: 'none', seed: config.seed });
  try {
    let info: Omit<BackboneInfo, 'dir'>;
    if (config.backbone.pretrained) {
      if (!existsSync(config.backbone.pretrained)) {
        throw badInput(
          'config',
          `backbone.pretrained: ${config.backbone.pretrained} does not exist; give a directory written by the trainer, or unset it to train the backbone`,
          { path: 'backbone.pretrained' },
        );
      }
      try {
        await kit.loadWeights(net, config.backbone.pretrained);
      } catch (e) {
        throw badInput('config', `backbone.pretrained: cannot load ${config.backbone.pretrained}: ${(e as Error).message}`, { path: 'backbone.pretrained' });
      }
      info = { seconds: 0, source: 'pretrained', epochs: 0, fingerprint: backboneFingerprint(config) };
    } else {
      reporter.log(`search: training the plain U-Net for ${config.backbone.pretrainEpochs} epochs (timed apart from the cell search)`);
      const r = await trainSupervised({
        net,
        loss: kit.loss,
        data,
        vars: namedVariables(net, 'all'),
        epochs: config.backbone.pretrainEpochs,
        batchSize: config.search.batchSize,
        stepsPerEpoch: config.search.stepsPerEpoch,
        learningRate: config.backbone.learningRate,
        seed: config.seed,
        stream: 'backbone',
        ...trainingPaths(workdirLayout(workdir).backboneTraining),
        fingerprint: backboneFingerprint(config),
        reporter,
        events: false,
        label: 'backbone',
        fields: { learningRate: 'backbone.learningRate', stepsPerEpoch: 'search.stepsPerEpoch' },
      });
      info = { seconds: r.seconds, source: 'trained', epochs: r.epochs, bestValDice: r.bestValDice, fingerprint: backboneFingerprint(config) };
    }
    await kit.saveWeights(net, dir);
    writeFileAtomic(meta, JSON.stringify(info, null, 2));
    return { ...info, dir };
  } finally {
    net.dispose();
  }
}
