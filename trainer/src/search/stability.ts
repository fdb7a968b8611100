// The IAC-LTH stability tracker: per edge, a window of recent Jensen-Shannon
// divergences; a stable edge is pruned to its top-k operations; the search stops
// when the cell is settled, when the derived genotype stops changing, or at the
// epoch budget. Pure: the search loop feeds it snapshots and applies its decisions.
//
// Two tests of stability (docs/search.md, section 3):
// - automatic (threshold null, the default): the window's net divergence, from the
//   distribution before its first epoch to the current one, is at most autoScale times
//   the sum of its per-epoch divergences, i.e. the edge moved no further than steps
//   without a common direction would have taken it. Both sides scale alike with the
//   steps per epoch, the learning rate and the gradients, so it needs no tuning;
// - absolute (the paper's): every per-epoch divergence of the window is below threshold.
import type { Genotype } from '../model/api.ts';
import { edgeIndex } from '../model/topology.ts';
import { candidateOps, edgeDivergence } from './jsd.ts';

export interface StabilityOptions {
  /** false: divergences are still recorded, but nothing is pruned and the search runs to maxEpochs. */
  enabled: boolean;
  /** The paper's absolute threshold on each per-epoch divergence; null: the automatic test. */
  threshold: number | null;
  /** Automatic test: an edge is stable when net <= autoScale x path over its window (1 = no drift). */
  autoScale: number;
  window: number;
  pruneTo: readonly number[];
  patience: number;
  warmupEpochs: number;
  maxEpochs: number;
  /** Index of `none` in the operation list, or -1 when `none` is not a candidate. */
  noneIndex: number;
}

/** The architecture as the tracker sees it (ArchitectureParams.snapshot()). */
export interface ArchSnapshot {
  alphas: number[][][];
  betas: number[][];
  active: number[][][];
}

export type StopReason = 'stable' | 'genotype-unchanged' | 'max-epochs';

/** The per-epoch divergences of all edges' first full windows, in the epoch they fill. */
export interface DivergenceRange {
  epoch: number;
  /** Smallest and largest divergence in any of the windows. */
  min: number;
  max: number;
  /** The smallest of the edges' largest divergences: an absolute threshold below it makes no edge stable. */
  calmest: number;
}

export interface EdgeState {
  /** Divergences of the epochs since the last pruning step (at most `window`, newest last). */
  window: number[];
  /** Alphas of the edge before each epoch of `window` (same length): origins[0] is where the window starts. */
  origins?: number[][];
  /** Epochs of this edge's pruning steps so far. */
  decisions?: number[];
  /** How many pruning steps this edge has had (index into pruneTo of the next one). */
  steps: number;
  /** Stable by the criterion at the last observed epoch. */
  stable: boolean;
}

/** Everything the tracker remembers; JSON-serialisable for checkpoints. */
export interface TrackerState {
  epoch: number;
  edges: EdgeState[][];
  previousAlphas: number[][][] | null;
  genotypeKey: string | null;
  unchangedEpochs: number;
}

export interface PruneDecision {
  cell: number;
  edge: number;
  /** Operation indices to keep, best first. */
  keep: number[];
}

export interface EpochDecision {
  epoch: number;
  /** Divergence of every edge between this epoch and the previous one. */
  jsd: number[][];
  /**
   * Automatic test, per edge with a full window: the net divergence of the window (from its
   * start to now) over the sum of its per-epoch divergences; null when the window is not
   * full, the edge has one candidate left, or the threshold is absolute.
   */
  drift: Array<Array<number | null>>;
  /** Epochs of each edge's pruning steps so far (this epoch's included). */
  decisions: number[][][];
  /** Set in the epoch the first windows fill: the range of the divergences they hold. */
  range?: DivergenceRange;
  prunes: PruneDecision[];
  /** Active operations after this epoch's pruning. */
  active: number[][][];
  stable: boolean[][];
  /** Edges that the derived genotype keeps (the ones the stop rule waits for). */
  kept: boolean[][];
  /** An edge is settled when it has one candidate left, or is stable and cannot be pruned further. */
  settled: boolean[][];
  genotype: Genotype;
  genotypeChanged: boolean;
  unchangedEpochs: number;
  stop: StopReason | null;
}

/** kept[cell][edge]: whether the genotype keeps that edge. */
export function keptEdges(genotype: Genotype, edgesPerCell: readonly number[]): boolean[][] {
  const kept = edgesPerCell.map((n) => new Array<boolean>(n).fill(false));
  for (const [c, cell] of genotype.cells.entries()) {
    for (const [node, edges] of cell.nodes.entries()) {
      for (const e of edges) kept[c][edgeIndex(node, e.input)] = true;
    }
  }
  return kept;
}

/** A canonical string of a genotype: the order of a node's two edges does not matter. */
export function genotypeKey(genotype: Genotype): string {
  return JSON.stringify(genotype.cells.map((c) => c.nodes.map((n) => n.map((e) => `${e.input}:${e.op}`).sort())));
}

/** How many more epochs the search needs at the least, and which stop rule could end it then. */
export interface RemainingEpochs {
  epochs: number;
  basis: StopReason;
}

export class StabilityTracker {
  readonly options: StabilityOptions;
  private s: TrackerState;

  constructor(options: StabilityOptions, shape: { edgesPerCell: readonly number[] }, state?: TrackerState) {
    if (options.pruneTo.some((k, i) => i > 0 && k >= options.pruneTo[i - 1])) {
      throw new Error(`search.stability.pruneTo: must be decreasing, got [${options.pruneTo.join(', ')}]`);
    }
    this.options = options;
    if (state) {
      // A state saved before windows kept their origins: the automatic test needs them, so
      // those windows start again (the absolute test does not use them).
      state = structuredClone(state);
      for (const st of state.edges.flat()) {
        if (options.threshold === null && (st.origins?.length ?? 0) !== st.window.length) {
          st.window = [];
          st.origins = [];
        }
      }
    }
    this.s = state
      ? state
      : {
          epoch: 0,
          edges: shape.edgesPerCell.map((n) => Array.from({ length: n }, () => ({ window: [], steps: 0, stable: false }))),
          previousAlphas: null,
          genotypeKey: null,
          unchangedEpochs: 0,
        };
  }

  state(): TrackerState {
    return structuredClone(this.s);
  }

  /**
   * Records the architecture at the start of the search (epoch 0), so that the
   * first epoch has a divergence.
   */
  start(initial: ArchSnapshot, derive: (a: ArchSnapshot) => Genotype): void {
    if (this.s.previousAlphas) return;
    this.s.previousAlphas = structuredClone(initial.alphas);
    this.s.genotypeKey = genotypeKey(derive(initial));
  }

  /**
   * The fewest further epochs after `d` (the decision of the last observed epoch) before a
   * stop rule can end the search, if from now on every divergence stays below the
   * threshold: each edge the genotype keeps needs `window` calm epochs (less those it
   * already has) for each stability step it has left (one per pruning step that still
   * removes operations, plus a last one when pruning stops above one operation), after
   * the warm-up; the genotype rule needs what is left of `patience`. Capped by the epoch
   * budget, which is the basis when nothing ends the search sooner.
   */
  remaining(d: EpochDecision): RemainingEpochs {
    const o = this.options;
    const budget = Math.max(0, o.maxEpochs - d.epoch);
    if (d.stop) return { epochs: 0, basis: d.stop };
    if (!o.enabled) return { epochs: budget, basis: 'max-epochs' };
    const warmup = Math.max(0, o.warmupEpochs - d.epoch);
    let stable = 0;
    d.kept.forEach((cell, c) => {
      cell.forEach((kept, e) => {
        if (!kept || d.settled[c][e]) return;
        const st = this.s.edges[c][e];
        // Absolute test: the calm epochs at the end of the window. The automatic test can pass
        // as soon as the window is full, so every epoch in it counts.
        let calm = 0;
        if (o.threshold === null) calm = st.window.length;
        else for (let i = st.window.length - 1; i >= 0 && st.window[i] < o.threshold; i--) calm++;
        // Stability steps: the pruning steps that still remove operations, each followed by
        // a fresh window; after the last, a final one unless it left a single operation.
        let n = candidateOps(d.active[c][e], o.noneIndex).length;
        let stepsLeft = 0;
        for (let step = st.steps; step < o.pruneTo.length; step++) {
          if (o.pruneTo[step] >= n) continue;
          stepsLeft++;
          n = o.pruneTo[step];
        }
        if (n > 1 || stepsLeft === 0) stepsLeft++;
        const epochs = warmup + Math.max(1, o.window - Math.min(calm, o.window)) + o.window * (stepsLeft - 1);
        stable = Math.max(stable, epochs);
      });
    });
    const patience = warmup + Math.max(1, o.patience - this.s.unchangedEpochs);
    const best = Math.min(stable, patience);
    if (best >= budget) return { epochs: budget, basis: 'max-epochs' };
    return stable <= patience ? { epochs: stable, basis: 'stable' } : { epochs: patience, basis: 'genotype-unchanged' };
  }

  /**
   * Observes the architecture at the end of `epoch` (1-based) and decides which
   * edges to prune and whether the search is over. `derive` turns a snapshot
   * (with this epoch's pruning applied) into the genotype it stands for.
   */
  observe(epoch: number, snap: ArchSnapshot, derive: (a: ArchSnapshot) => Genotype): EpochDecision {
    const o = this.options;
    if (epoch !== this.s.epoch + 1) throw new Error(`stability tracker: expected epoch ${this.s.epoch + 1}, got ${epoch}`);
    const prev = this.s.previousAlphas ?? snap.alphas;
    const archLearns = epoch > o.warmupEpochs;
    const active = structuredClone(snap.active);
    const jsd: number[][] = [];
    const drift: Array<Array<number | null>> = [];
    const stable: boolean[][] = [];
    const prunes: PruneDecision[] = [];
    const firstFull = archLearns && epoch === o.warmupEpochs + o.window;
    let low = Infinity;
    let high = 0;
    let calmest = Infinity;

    snap.alphas.forEach((cellAlphas, c) => {
      jsd.push([]);
      drift.push([]);
      stable.push([]);
      cellAlphas.forEach((alphas, e) => {
        const st = this.s.edges[c][e];
        st.origins ??= [];
        st.decisions ??= [];
        const js = edgeDivergence(prev[c][e], alphas, active[c][e], o.noneIndex);
        jsd[c].push(js);
        if (archLearns) {
          st.window.push(js);
          st.origins.push([...prev[c][e]]);
          if (st.window.length > o.window) {
            st.window.shift();
            st.origins.shift();
          }
        }
        const full = st.window.length >= o.window;
        if (firstFull && full) {
          low = Math.min(low, ...st.window);
          high = Math.max(high, ...st.window);
          calmest = Math.min(calmest, Math.max(...st.window));
        }
        let d: number | null = null;
        if (o.threshold === null) {
          if (full && candidateOps(active[c][e], o.noneIndex).length > 1) {
            // Net movement of the window against its path (both over the current candidates).
            const net = edgeDivergence(st.origins[0], alphas, active[c][e], o.noneIndex);
            const path = st.window.reduce((a, b) => a + b, 0);
            d = path > 0 ? net / path : 0;
            st.stable = net <= o.autoScale * path;
          } else st.stable = full;
        } else st.stable = full && Math.max(...st.window) < o.threshold;
        drift[c].push(d);
        stable[c].push(st.stable);
        if (!o.enabled || !st.stable) return;
        const candidates = candidateOps(active[c][e], o.noneIndex);
        // The next pruning step that actually removes operations from this edge.
        let step = st.steps;
        while (step < o.pruneTo.length && o.pruneTo[step] >= candidates.length) step++;
        if (step >= o.pruneTo.length) {
          st.steps = step;
          return;
        }
        const keep = [...candidates].sort((a, b) => alphas[b] - alphas[a] || a - b).slice(0, o.pruneTo[step]);
        prunes.push({ cell: c, edge: e, keep });
        active[c][e] = [...keep].sort((a, b) => a - b);
        st.steps = step + 1;
        st.window = [];
        st.origins = [];
        st.decisions.push(epoch);
        st.stable = false;
        stable[c][e] = false;
      });
    });

    const after: ArchSnapshot = { alphas: snap.alphas, betas: snap.betas, active };
    const genotype = derive(after);
    const key = genotypeKey(genotype);
    const changed = key !== this.s.genotypeKey;
    if (archLearns) this.s.unchangedEpochs = changed ? 0 : this.s.unchangedEpochs + 1;
    this.s.genotypeKey = key;

    const kept = keptEdges(
      genotype,
      snap.alphas.map((a) => a.length),
    );
    const settled = active.map((cell, c) =>
      cell.map((ops, e) => {
        const n = candidateOps(ops, o.noneIndex).length;
        if (n <= 1) return true;
        const st = this.s.edges[c][e];
        return st.stable && !o.pruneTo.slice(st.steps).some((k) => k < n);
      }),
    );

    let stop: StopReason | null = null;
    if (o.enabled && kept.every((cell, c) => cell.every((k, e) => !k || settled[c][e]))) stop = 'stable';
    else if (o.enabled && this.s.unchangedEpochs >= o.patience) stop = 'genotype-unchanged';
    else if (epoch >= o.maxEpochs) stop = 'max-epochs';

    this.s.epoch = epoch;
    this.s.previousAlphas = structuredClone(snap.alphas);
    return {
      epoch,
      jsd,
      drift,
      decisions: this.s.edges.map((cell) => cell.map((st) => [...(st.decisions ?? [])])),
      ...(firstFull && high > 0 && { range: { epoch, min: low, max: high, calmest } }),
      prunes,
      active,
      stable,
      kept,
      settled,
      genotype,
      genotypeChanged: changed,
      unchangedEpochs: this.s.unchangedEpochs,
      stop,
    };
  }
}
