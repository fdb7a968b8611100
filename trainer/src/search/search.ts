// The bi-level, first-order IAC search with IAC-LTH stability pruning. Weights step
// on one half of the training patients, architecture parameters on the other; after
// every epoch the stability tracker decides which edges to prune and whether to stop.
import * as tf from '@tensorflow/tfjs-core';
import { mixSeed, mulberry32, shuffled } from '../util/random.ts';
import type { SliceDataset, SliceSource } from '../data/types.ts';
import type { CellSearchSpace, Genotype, Network } from '../model/api.ts';
import type { TrainerConfig } from '../config/index.ts';
import type { ProgressReporter } from '../report/progress.ts';
import { readCheckpoint, restoreVariables, writeCheckpoint } from '../training/checkpoint.ts';
import { BatchLoader, batchTensors, gradients, namedVariables, validate } from '../training/common.ts';
import { appendHistory, truncateHistory } from '../training/history.ts';
import type { ModelKit } from '../training/model-kit.ts';
import { Adam, type NamedVariable, SgdMomentum, cosineLearningRate } from '../training/optimizers.ts';
import { WorkdirMismatchError, clamp01 } from '../training/supervised.ts';
import { type ArchSnapshot, type DivergenceRange, type EpochDecision, StabilityTracker, type StopReason, type TrackerState } from './stability.ts';
import { edgeCount } from '../model/topology.ts';
import { badInput } from '../util/bad-input.ts';

export interface SearchOptions {
  config: TrainerConfig;
  data: SliceDataset;
  kit: ModelKit;
  reporter: ProgressReporter;
  /** Directory of the trained backbone weights loaded into the supernet. */
  backboneDir: string;
  /** Checkpoint directory and history file. */
  dir: string;
  historyFile: string;
  fingerprint: string;
  /** Called after each epoch's checkpoint (tests use it to look at memory). */
  onEpoch?: (epoch: number) => void;
}

export interface SearchOutcome {
  epochs: number;
  /** Wall seconds of the cell search (backbone training excluded), summed over resumes. */
  seconds: number;
  meanEpochSeconds: number;
  epochSeconds: number[];
  stoppedBy: StopReason;
  genotype: Genotype;
  arch: ArchSnapshot;
  activeOperations: number;
  totalOperations: number;
  stableEdges: number;
  totalEdges: number;
  bestValDice: number;
  warnings: string[];
}

/** What the search checkpoint holds besides tensors; prune reads `arch` and `genotype`. */
export interface SearchState {
  fingerprint: string;
  epoch: number;
  arch: ArchSnapshot;
  tracker: TrackerState;
  weightStep: number;
  archStep: number;
  bestValDice: number;
  epochSeconds: number[];
  genotype: Genotype | null;
  stableEdges: number;
  stoppedBy: StopReason | null;
  operations: string[];
  nodes: number;
  /** Warnings about the stability threshold so far (every later progress event repeats them). */
  warnings?: string[];
}

/** Splits the training patients into two halves (weights / architecture), reproducibly. */
export function halvePatients(source: SliceSource, seed: number): { weights: number[]; arch: number[] } {
  const patients = [...source.patients].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (patients.length < 2) {
    throw badInput(
      'config',
      `dataset.split.train: the search needs at least 2 training patients (the weights and the architecture train on different halves), got ${patients.length}; add cases or raise the train fraction`,
      { path: 'dataset.split.train' },
    );
  }
  const order = shuffled(patients, mulberry32(mixSeed(seed, 'search-halves')));
  const half = Math.ceil(order.length / 2);
  return {
    weights: order.slice(0, half).flatMap((p) => p.slices),
    arch: order.slice(half).flatMap((p) => p.slices),
  };
}

/** Batches for `steps` steps: shuffled passes over `indices`, as many as needed. */
function stepBatches(indices: readonly number[], batchSize: number, steps: number, random: () => number): number[][] {
  const out: number[][] = [];
  while (out.length < steps) {
    const order = shuffled(indices, random);
    for (let i = 0; i < order.length && out.length < steps; i += batchSize) out.push(order.slice(i, i + batchSize));
  }
  return out;
}

export function searchSpace(config: TrainerConfig): CellSearchSpace {
  return { operations: config.search.operations, nodes: config.search.nodes, partialChannels: config.search.partialChannels };
}

/** Significant digits enough to tell divergences apart in a message. */
function sci(x: number): string {
  return x.toExponential(1);
}

/**
 * When the first windows fill: a line saying how the divergences compare with the test,
 * and a warning when an absolute threshold is outside their whole range (it then cannot
 * tell edges apart: every edge is stable at its first check, or none can be).
 */
export function thresholdCheck(threshold: number | undefined, range: DivergenceRange): { info: string; warning?: string } {
  const seen = `the per-epoch divergences of the first windows (epoch ${range.epoch}) range from ${sci(range.min)} to ${sci(range.max)}`;
  if (threshold === undefined) return { info: `search: ${seen}; the automatic test judges each edge by its own movement` };
  const info = `search: ${seen}; search.stability.threshold is ${threshold}`;
  const fix = 'leave search.stability.threshold unset for the automatic test (docs/search.md)';
  if (threshold > range.max) {
    return {
      info,
      warning: `search.stability.threshold ${threshold} is above every divergence of the first windows (largest ${sci(range.max)} at epoch ${range.epoch}): every edge is stable at its first check and is pruned by alphas that have hardly moved; ${fix}`,
    };
  }
  if (threshold < range.calmest) {
    return {
      info,
      warning: `search.stability.threshold ${threshold} is below the largest divergence of every edge's first window (the calmest edge reached ${sci(range.calmest)} by epoch ${range.epoch}): no edge is stable until its divergences fall below it, and the search may run to search.maxEpochs; ${fix}`,
    };
  }
  return { info };
}

/**
 * A search started with an absolute threshold (the default before the automatic test) and
 * resumed without one: how to resume it instead of starting over.
 */
function thresholdHint(fingerprint: string, config: TrainerConfig): string {
  if (config.search.stability.threshold !== undefined) return '';
  let threshold: unknown;
  try {
    threshold = (JSON.parse(fingerprint) as { search?: { stability?: { threshold?: unknown } } }).search?.stability?.threshold;
  } catch {
    return '';
  }
  if (typeof threshold !== 'number') return '';
  return `: it was started with the absolute stability test, search.stability.threshold ${threshold} (the default before the automatic test); set search.stability.threshold: ${threshold} to resume it`;
}

function countActive(active: number[][][]): number {
  return active.reduce((s, cell) => s + cell.reduce((t, ops) => t + ops.length, 0), 0);
}

export async function runSearch(o: SearchOptions): Promise<SearchOutcome> {
  const { config, data, kit, reporter } = o;
  const sc = config.search;
  const space = searchSpace(config);
  const noneIndex = sc.operations.indexOf('none');
  const net: Network = kit.createNetwork({
    backbone: config.backbone,
    inChannels: data.channels,
    numClasses: data.numClasses,
    cells: 'supernet',
    space,
    seed: config.seed,
  });
  const arch = net.arch;
  if (!arch) throw new Error('model: a supernet must expose its architecture parameters');
  const derive = (s: ArchSnapshot) => kit.deriveGenotype(s, space);
  const cells = arch.alphas.length;
  const edges = edgeCount(sc.nodes);
  const totalEdges = cells * edges;
  const totalOperations = totalEdges * sc.operations.length;

  const weightVars: NamedVariable[] = namedVariables(net, sc.freezeBackbone ? 'cells' : 'all');
  const archVars: NamedVariable[] = [
    ...arch.alphas.map((variable, c) => ({ name: `arch/alphas/${c}`, variable })),
    ...arch.betas.map((variable, c) => ({ name: `arch/betas/${c}`, variable })),
  ];
  const weightOpt = new SgdMomentum(weightVars, { momentum: sc.weights.momentum, weightDecay: sc.weights.weightDecay, gradClip: sc.weights.gradClip });
  const archOpt = new Adam(archVars, { beta1: sc.architecture.beta1, beta2: sc.architecture.beta2, weightDecay: sc.architecture.weightDecay });
  const tracker = () =>
    new StabilityTracker(
      {
        enabled: sc.stability.enabled,
        threshold: sc.stability.threshold ?? null,
        autoScale: sc.stability.autoScale,
        window: sc.stability.window,
        pruneTo: sc.stability.pruneTo,
        patience: sc.stability.patience,
        warmupEpochs: sc.warmupEpochs,
        maxEpochs: sc.maxEpochs,
        noneIndex,
      },
      { edgesPerCell: new Array(cells).fill(edges) },
      state?.tracker,
    );
  const tensors = () =>
    new Map<string, tf.Tensor>([
      ...namedVariables(net, 'all').map((v) => [`w/${v.name}`, v.variable] as const),
      ...[...weightOpt.slots()].map(([n, v]) => [`opt/weights/${n}`, v] as const),
      ...[...archOpt.slots()].map(([n, v]) => [`opt/arch/${n}`, v] as const),
    ]);

  let state: SearchState | undefined;
  try {
    const ck = readCheckpoint<SearchState>(o.dir);
    if (ck) {
      if (ck.state.fingerprint !== o.fingerprint) {
        throw new WorkdirMismatchError(
          `${o.dir} holds a search of a different configuration (seed, dataset, backbone or search changed)${thresholdHint(ck.state.fingerprint, config)}; use a new --workdir, or delete ${o.dir} to start over`,
        );
      }
      state = ck.state;
      restoreVariables(ck.tensors, new Map(namedVariables(net, 'all').map((v) => [`w/${v.name}`, v.variable] as const)), o.dir);
      restoreVariables(ck.tensors, new Map([...weightOpt.slots()].map(([n, v]) => [`opt/weights/${n}`, v] as const)), o.dir);
      restoreVariables(ck.tensors, new Map([...archOpt.slots()].map(([n, v]) => [`opt/arch/${n}`, v] as const)), o.dir);
      arch.restore(state.arch);
      weightOpt.step = state.weightStep;
      archOpt.step = state.archStep;
      if (!state.stoppedBy) reporter.log(`search: resuming after epoch ${state.epoch} from ${o.dir}`);
    } else {
      await kit.loadBackbone(net, o.backboneDir);
    }
    const stab = tracker();
    if (!state) stab.start(arch.snapshot(), derive);
    truncateHistory(o.historyFile, state?.epoch ?? 0);

    const halves = halvePatients(data.train, config.seed);
    const steps = Math.min(Math.ceil(halves.weights.length / sc.batchSize), sc.stepsPerEpoch ?? Infinity);
    let epoch = state?.epoch ?? 0;
    let stoppedBy: StopReason | null = state?.stoppedBy ?? null;
    let bestValDice = state?.bestValDice ?? 0;
    const epochSeconds = [...(state?.epochSeconds ?? [])];
    let genotype: Genotype = state?.genotype ?? derive(arch.snapshot());
    let stableEdges = state?.stableEdges ?? 0;
    const warnings = [...(state?.warnings ?? [])];

    while (!stoppedBy) {
      epoch++;
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      const archLearns = epoch > sc.warmupEpochs;
      const lr = cosineLearningRate(epoch - 1, sc.maxEpochs, sc.weights.learningRate, sc.weights.learningRateMin);
      // One random stream per loader: the two load concurrently, and a shared stream
      // would make augmentation depend on which read finishes first.
      const wRandom = mulberry32(mixSeed(config.seed, 'search-weights', epoch));
      const aRandom = mulberry32(mixSeed(config.seed, 'search-arch', epoch));
      const wLoader = new BatchLoader(data.train, stepBatches(halves.weights, sc.batchSize, steps, wRandom), { augment: true, random: wRandom });
      const aLoader = archLearns
        ? new BatchLoader(data.train, stepBatches(halves.arch, sc.batchSize, steps, aRandom), { augment: true, random: aRandom })
        : undefined;
      let lossSum: tf.Scalar = tf.scalar(0);
      for (let step = 0; step < steps; step++) {
        const [wb, ab] = await Promise.all([wLoader.take(), aLoader?.take()]);
        const value = tf.tidy(() => {
          // First-order DARTS: the architecture steps on its half with the current weights...
          if (ab) {
            const { x, y } = batchTensors(ab, data.sliceSize, data.channels);
            archOpt.apply(gradients(net, kit.loss, x, y, data.numClasses, archVars).grads, sc.architecture.learningRate);
          }
          // ...then the weights step on theirs.
          const { x, y } = batchTensors(wb, data.sliceSize, data.channels);
          const { value, grads } = gradients(net, kit.loss, x, y, data.numClasses, weightVars);
          weightOpt.apply(grads, lr);
          return value;
        });
        const next = tf.add(lossSum, value) as tf.Scalar;
        lossSum.dispose();
        value.dispose();
        lossSum = next;
      }
      const trainLoss = (await lossSum.data())[0] / steps;
      lossSum.dispose();
      if (!Number.isFinite(trainLoss)) {
        throw new Error(
          `search: the training loss became ${trainLoss} in epoch ${epoch}; lower search.weights.learningRate or search.architecture.learningRate (the checkpoint of epoch ${epoch - 1} is kept)`,
        );
      }
      const val = await validate(net, data, data.val, kit.loss, sc.batchSize);
      bestValDice = Math.max(bestValDice, val.dice);

      const snap = arch.snapshot();
      const d: EpochDecision = stab.observe(epoch, snap, derive);
      for (const p of d.prunes) arch.prune(p.cell, p.edge, p.keep);
      if (d.range) {
        const check = thresholdCheck(sc.stability.threshold, d.range);
        reporter.log(check.info);
        if (check.warning) {
          reporter.log(`warning: ${check.warning}`);
          warnings.push(check.warning);
        }
      }
      genotype = d.genotype;
      // Stable now, or settled (one operation left, or nothing more to prune).
      stableEdges = d.settled.flat().filter((settled, i) => settled || d.stable.flat()[i]).length;
      stoppedBy = d.stop;
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      epochSeconds.push(seconds);

      appendHistory(o.historyFile, {
        epoch,
        alphas: snap.alphas,
        betas: snap.betas,
        jsd: d.jsd,
        drift: d.drift,
        active: d.active,
        stable: d.stable,
        settled: d.settled,
        kept: d.kept,
        prunes: d.prunes,
        decisions: d.decisions,
        genotype,
        genotypeChanged: d.genotypeChanged,
        archUpdates: archLearns,
        learningRate: lr,
        trainLoss,
        valLoss: val.loss,
        valDice: val.dice,
        valDicePerClass: val.perClass,
        epochSeconds: seconds,
        // CPU time of the epoch: comparable between epochs even on a busy machine.
        epochCpuSeconds: (cpu.user + cpu.system) / 1e6,
        stoppedBy,
      });
      const next: SearchState = {
        fingerprint: o.fingerprint,
        epoch,
        arch: arch.snapshot(),
        tracker: stab.state(),
        weightStep: weightOpt.step,
        archStep: archOpt.step,
        bestValDice,
        epochSeconds,
        genotype,
        stableEdges,
        stoppedBy,
        operations: [...sc.operations],
        nodes: sc.nodes,
        warnings,
      };
      await writeCheckpoint(o.dir, next, tensors());
      state = next;

      const activeOperations = countActive(d.active);
      const recent = epochSeconds.slice(-3);
      const perEpoch = recent.reduce((a, b) => a + b, 0) / recent.length;
      // The ETA counts the epochs the stop rules still need at the least (stability.ts
      // remaining()); the epoch budget is its upper bound.
      const left = stab.remaining(d);
      reporter.progress({
        epoch,
        maxEpochs: sc.maxEpochs,
        trainLoss,
        valLoss: val.loss,
        valDice: clamp01(val.dice),
        bestValDice: clamp01(bestValDice),
        activeOperations,
        totalOperations,
        stableEdges,
        totalEdges,
        edgeJsd: Object.fromEntries(d.jsd.flatMap((cell, c) => cell.map((js, e) => [`${c}.${e}`, js]))),
        epochSeconds: seconds,
        etaSeconds: perEpoch * left.epochs,
        etaBasis: left.basis,
        ...(!stoppedBy && left.basis !== 'max-epochs' && { etaMaxSeconds: perEpoch * (sc.maxEpochs - epoch) }),
        ...(warnings.length > 0 && { warnings }),
      });
      await reporter.settle();
      for (const p of d.prunes) {
        reporter.log(`search: edge ${p.cell}.${p.edge} is stable; keeping ${p.keep.map((i) => sc.operations[i]).join(', ')}`);
      }
      o.onEpoch?.(epoch);
    }

    const final = arch.snapshot();
    const seconds = epochSeconds.reduce((a, b) => a + b, 0);
    return {
      epochs: epoch,
      seconds,
      meanEpochSeconds: epoch ? seconds / epoch : 0,
      epochSeconds,
      stoppedBy,
      genotype,
      arch: final,
      activeOperations: countActive(final.active),
      totalOperations,
      stableEdges,
      totalEdges,
      bestValDice,
      warnings,
    };
  } finally {
    weightOpt.dispose();
    archOpt.dispose();
    net.dispose();
  }
}
