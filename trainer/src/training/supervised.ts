// Plain supervised training with Adam, validation Dice every epoch, early stopping,
// best-validation weights and an exact resume from the checkpoint of the last
// finished epoch. Used for the backbone U-Net (before the search) and for retraining
// the U-Net with the discrete cells.
import { BadInputError, trainingFiles } from '../../../contract/src/index.ts';
import * as tf from '@tensorflow/tfjs-core';
import { mixSeed, mulberry32 } from '../util/random.ts';
import type { DatasetConfig } from '../config/index.ts';
import type { SliceDataset } from '../data/types.ts';
import type { Network } from '../model/api.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { readCheckpoint, restoreVariables, writeCheckpoint } from './checkpoint.ts';
import { BatchLoader, type LossFn, batchTensors, epochBatches, gradients, validate } from './common.ts';
import { appendHistory, truncateHistory } from './history.ts';
import { Adam, type NamedVariable } from './optimizers.ts';
import { badInput } from '../util/bad-input.ts';

export interface SupervisedOptions {
  net: Network;
  loss: LossFn;
  data: SliceDataset;
  /** The weights that train (all of the network's weights, by stable name). */
  vars: readonly NamedVariable[];
  epochs: number;
  batchSize: number;
  stepsPerEpoch?: number;
  learningRate: number;
  /** Stop when validation Dice has not improved for this many epochs; unset: never. */
  earlyStoppingPatience?: number;
  seed: number;
  /** Separates the random streams of different trainings with the same seed. */
  stream: string;
  /** Checkpoint directory and history file of this training. */
  dir: string;
  historyFile: string;
  /** A string describing the configuration; a checkpoint of another configuration is refused. */
  fingerprint: string;
  reporter: ProgressReporter;
  /** Emit ProgressEvents (retrain) or only human lines (backbone training inside the search). */
  events: boolean;
  label: string;
  /** retrain: which network this is, carried by every progress event. */
  model?: 'cells' | 'baseline';
  /** Epochs of trainings that follow in the same phase (the baseline after the cell model), counted in the ETA. */
  followingEpochs?: number;
  /** The configuration fields of the learning rate and the steps per epoch, for advice. */
  fields?: { learningRate: string; stepsPerEpoch: string };
  /** Called after each epoch's checkpoint (tests use it). */
  onEpoch?: (epoch: number) => void;
}

/** Validation Dice below this counts as "near 0": the network predicts (almost) only background. */
export const NEAR_ZERO_DICE = 0.01;

/**
 * The lines trainSupervised prints when validation Dice is near 0: once in the first
 * epoch it is (expected early on small structures: a fresh network first learns the
 * background, so Dice can sit at 0 for many epochs before the first structure is
 * found), and once more when it still is at two thirds of the epochs (then the
 * training is unlikely to find the structures in the epochs left). Undefined when
 * there is nothing to say.
 */
export function nearZeroDiceLine(o: {
  label: string;
  epoch: number;
  epochs: number;
  valDice: number;
  foreground: number;
  noted: boolean;
  fields: { learningRate: string; stepsPerEpoch: string };
}): { line: string; kind: 'expected' | 'problem' } | undefined {
  if (o.valDice >= NEAR_ZERO_DICE) return undefined;
  const late = Math.max(3, Math.ceil((2 * o.epochs) / 3));
  const share = `${(100 * o.foreground).toFixed(o.foreground < 0.1 ? 1 : 0)}%`;
  if (o.epoch === late) {
    return {
      kind: 'problem',
      line:
        `${o.label}: validation Dice is still ${o.valDice.toFixed(4)} after ${o.epoch} of ${o.epochs} epochs: the network predicts background only, ` +
        `which is no longer the normal start. Check that the labels hold the structures (iacnas dataset check), raise ${o.fields.learningRate} or ${o.fields.stepsPerEpoch}, or give it more epochs`,
    };
  }
  if (o.noted || o.epoch > late) return undefined;
  return {
    kind: 'expected',
    line:
      `${o.label}: validation Dice ${o.valDice.toFixed(4)} in epoch ${o.epoch} is expected in the first epochs: the foreground is ${share} of the validation pixels, ` +
      `so the network first learns the background and predicts no structure yet. It is a problem if Dice is still near 0 at epoch ${late} of ${o.epochs}, or if the training loss stops falling`,
  };
}

export interface SupervisedResult {
  epochs: number;
  bestEpoch: number;
  bestValDice: number;
  /** Wall seconds of training, summed over every run that contributed (resumes included). */
  seconds: number;
  meanEpochSeconds: number;
  stoppedEarly: boolean;
}

interface SupervisedState {
  fingerprint: string;
  epoch: number;
  optimizerStep: number;
  bestEpoch: number;
  bestValDice: number;
  sinceBest: number;
  seconds: number;
  done: boolean;
  stoppedEarly: boolean;
}

/** The dataset settings that change results (the cache size does not). */
export function resultRelevant(d: DatasetConfig): Omit<DatasetConfig, 'cacheMB'> {
  const { cacheMB: _, ...rest } = d;
  return rest;
}

/** Thrown when a work directory holds a run of a different configuration. */
export class WorkdirMismatchError extends BadInputError {
  override name = 'WorkdirMismatchError';
  constructor(message: string) {
    super('config', message);
  }
}

export async function trainSupervised(o: SupervisedOptions): Promise<SupervisedResult> {
  const { net, data } = o;
  const opt = new Adam(o.vars);
  const best = new Map(o.vars.map((v) => [v.name, tf.variable(v.variable, false)] as const));
  let s: SupervisedState = {
    fingerprint: o.fingerprint,
    epoch: 0,
    optimizerStep: 0,
    bestEpoch: 0,
    bestValDice: -1,
    sinceBest: 0,
    seconds: 0,
    done: false,
    stoppedEarly: false,
  };
  const weightsByName = new Map(o.vars.map((v) => [`w/${v.name}`, v.variable] as const));
  const bestByName = new Map([...best].map(([n, v]) => [`best/${n}`, v] as const));
  const fields = o.fields ?? { learningRate: 'the learning rate', stepsPerEpoch: 'the steps per epoch' };
  let zeroNoted = false;
  const allTensors = () => new Map<string, tf.Tensor>([...weightsByName, ...bestByName, ...[...opt.slots()].map(([n, v]) => [`opt/${n}`, v] as const)]);

  try {
    const ck = readCheckpoint<SupervisedState>(o.dir);
    if (ck) {
      if (ck.state.fingerprint !== o.fingerprint) {
        throw new WorkdirMismatchError(
          `${o.dir} holds a ${o.label} of a different configuration; use a new --workdir, or delete ${o.dir} to start this one over`,
        );
      }
      restoreVariables(ck.tensors, weightsByName, o.dir);
      restoreVariables(ck.tensors, bestByName, o.dir);
      restoreVariables(ck.tensors, new Map([...opt.slots()].map(([n, v]) => [`opt/${n}`, v] as const)), o.dir);
      s = ck.state;
      opt.step = s.optimizerStep;
      if (!s.done) o.reporter.log(`${o.label}: resuming after epoch ${s.epoch} from ${o.dir}`);
    }
    truncateHistory(o.historyFile, s.epoch);
    const trainIdx = Array.from({ length: data.train.length }, (_, i) => i);
    if (trainIdx.length === 0) throw badInput('data', `${o.label}: the training split has no slices`);

    while (!s.done && s.epoch < o.epochs) {
      const epoch = s.epoch + 1;
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      const random = mulberry32(mixSeed(o.seed, o.stream, epoch));
      const loader = new BatchLoader(data.train, epochBatches(trainIdx, o.batchSize, random, o.stepsPerEpoch), { augment: true, random });
      let lossSum: tf.Scalar = tf.scalar(0);
      for (let step = 0; step < loader.length; step++) {
        const b = await loader.take();
        const value = tf.tidy(() => {
          const { x, y } = batchTensors(b, data.sliceSize, data.channels);
          const { value, grads } = gradients(net, o.loss, x, y, data.numClasses, o.vars);
          opt.apply(grads, o.learningRate);
          return value;
        });
        const next = tf.add(lossSum, value) as tf.Scalar;
        lossSum.dispose();
        value.dispose();
        lossSum = next;
      }
      const trainLoss = (await lossSum.data())[0] / loader.length;
      lossSum.dispose();
      if (!Number.isFinite(trainLoss)) {
        throw new Error(
          `${o.label}: the training loss became ${trainLoss} in epoch ${epoch}; lower the learning rate (the checkpoint of epoch ${s.epoch} is kept)`,
        );
      }
      const val = await validate(net, data, data.val, o.loss, o.batchSize);
      if (val.dice > s.bestValDice) {
        s.bestValDice = val.dice;
        s.bestEpoch = epoch;
        s.sinceBest = 0;
        for (const v of o.vars) best.get(v.name)!.assign(v.variable);
      } else {
        s.sinceBest++;
      }
      const zero = nearZeroDiceLine({ label: o.label, epoch, epochs: o.epochs, valDice: val.dice, foreground: val.foreground, noted: zeroNoted, fields });
      if (zero?.kind === 'expected') zeroNoted = true;
      const epochSeconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      s.epoch = epoch;
      s.seconds += epochSeconds;
      s.optimizerStep = opt.step;
      if (o.earlyStoppingPatience !== undefined && s.sinceBest >= o.earlyStoppingPatience && epoch < o.epochs) {
        s.done = true;
        s.stoppedEarly = true;
      }
      if (epoch >= o.epochs) s.done = true;
      appendHistory(o.historyFile, {
        epoch,
        trainLoss,
        valLoss: val.loss,
        valDice: val.dice,
        valDicePerClass: val.perClass,
        bestValDice: s.bestValDice,
        epochSeconds,
        // CPU time of the epoch (every thread of the process): comparable between epochs even on a busy machine.
        epochCpuSeconds: (cpu.user + cpu.system) / 1e6,
      });
      await writeCheckpoint(o.dir, s, allTensors());
      // The epoch budget at the mean pace so far: an upper bound, as early stopping may end it sooner.
      const etaSeconds = (s.seconds / epoch) * ((s.done ? 0 : o.epochs - epoch) + (o.followingEpochs ?? 0));
      const progress = {
        epoch,
        maxEpochs: o.epochs,
        trainLoss,
        valLoss: val.loss,
        valDice: clamp01(val.dice),
        bestValDice: clamp01(s.bestValDice),
        epochSeconds,
        etaSeconds,
        etaBasis: 'max-epochs' as const,
        ...(o.model && { model: o.model }),
      };
      if (o.events) {
        o.reporter.progress(progress);
        await o.reporter.settle();
      } else
        o.reporter.log(
          `${o.label} epoch ${epoch}/${o.epochs} | loss ${trainLoss.toFixed(4)} | val Dice ${val.dice.toFixed(4)} | ${epochSeconds.toFixed(1)}s/epoch`,
        );
      if (zero) o.reporter.log(zero.line);
      if (s.stoppedEarly) o.reporter.log(`${o.label}: validation Dice has not improved for ${o.earlyStoppingPatience} epochs; stopping`);
      o.onEpoch?.(epoch);
    }
    // The result is the best-validation model.
    if (s.bestEpoch > 0) for (const v of o.vars) v.variable.assign(best.get(v.name)!);
    return {
      epochs: s.epoch,
      bestEpoch: s.bestEpoch,
      bestValDice: Math.max(0, s.bestValDice),
      seconds: s.seconds,
      meanEpochSeconds: s.epoch ? s.seconds / s.epoch : 0,
      stoppedEarly: s.stoppedEarly,
    };
  } finally {
    opt.dispose();
    for (const v of best.values()) v.dispose();
  }
}

export function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}

/** The checkpoint directory and history file of a training under `root`. */
export function trainingPaths(root: string): { dir: string; historyFile: string } {
  const files = trainingFiles(root);
  return { dir: files.checkpoint, historyFile: files.history };
}
