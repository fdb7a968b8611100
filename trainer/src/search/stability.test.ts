import { describe, expect, it } from 'vitest';
import type { Genotype } from '../model/api.ts';
import type { Operation } from '../config/index.ts';
import { softmaxAt } from './jsd.ts';
import { type ArchSnapshot, type EpochDecision, type StabilityOptions, StabilityTracker, keptEdges } from './stability.ts';
import { edgeCount, edgeIndex } from '../model/topology.ts';

const OPS: Operation[] = ['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3', 'max_pool_3x3'];

/** DARTS-style derivation: per node the two edges with the strongest non-none operation. */
function derive(nodes: number) {
  return (a: ArchSnapshot): Genotype => ({
    cells: a.alphas.map((cell, c) => ({
      nodes: Array.from({ length: nodes }, (_, node) => {
        const scored = Array.from({ length: node + 2 }, (_, input) => {
          const e = edgeIndex(node, input);
          const cand = a.active[c][e].filter((i) => i !== 0);
          const p = softmaxAt(cell[e], cand);
          const best = p.indexOf(Math.max(...p));
          return { input, op: OPS[cand[best]], w: p[best] };
        });
        scored.sort((x, y) => y.w - x.w || x.input - y.input);
        return scored.slice(0, 2).map(({ input, op }) => ({ input, op }));
      }),
    })),
  });
}

const base: StabilityOptions = {
  enabled: true,
  threshold: 1e-3,
  autoScale: 1,
  window: 2,
  pruneTo: [3, 1],
  patience: 100,
  warmupEpochs: 2,
  maxEpochs: 30,
  noneIndex: 0,
};

/** Runs a scripted alpha trajectory through the tracker, applying its prunes as the search loop does. */
function run(
  opts: StabilityOptions,
  nodes: number,
  alphasAt: (t: number) => number[][],
  from?: { tracker: StabilityTracker; active: number[][]; epoch: number },
  until = opts.maxEpochs,
): { decisions: EpochDecision[]; tracker: StabilityTracker; active: number[][] } {
  const edges = edgeCount(nodes);
  const tracker = from?.tracker ?? new StabilityTracker(opts, { edgesPerCell: [edges] });
  let active = from?.active ?? Array.from({ length: edges }, () => OPS.map((_, i) => i));
  const snap = (t: number): ArchSnapshot => ({ alphas: [alphasAt(t)], betas: [[]], active: [active] });
  if (!from) tracker.start(snap(0), derive(nodes));
  const decisions: EpochDecision[] = [];
  for (let t = (from?.epoch ?? 0) + 1; t <= until; t++) {
    const d = tracker.observe(t, snap(t), derive(nodes));
    active = d.active[0];
    decisions.push(d);
    if (d.stop) break;
  }
  return { decisions, tracker, active };
}

// Edge 0 never moves; edge 1 moves until epoch 6 and is constant afterwards.
const twoEdges = (t: number) => [
  [0, 1, 0.5, 0.2, 0.1],
  [0, Math.min(t, 6), 0, 0.1, 0],
];

describe('StabilityTracker', () => {
  it('prunes stable edges to top-3, then top-1, and stops when the cell is settled', () => {
    const { decisions } = run(base, 1, twoEdges);
    const prunes = decisions.flatMap((d) => d.prunes.map((p) => ({ epoch: d.epoch, ...p })));
    // Warm-up 2, window 2: the first window is full at epoch 4.
    expect(prunes).toEqual([
      { epoch: 4, cell: 0, edge: 0, keep: [1, 2, 3] },
      { epoch: 6, cell: 0, edge: 0, keep: [1] },
      { epoch: 8, cell: 0, edge: 1, keep: [1, 3, 2] },
      { epoch: 10, cell: 0, edge: 1, keep: [1] },
    ]);
    const last = decisions.at(-1)!;
    expect(last.epoch).toBe(10);
    expect(last.stop).toBe('stable');
    expect(last.active[0]).toEqual([[1], [1]]);
    expect(decisions.slice(0, -1).every((d) => d.stop === null)).toBe(true);
    // Divergence of edge 1 while it moves, none once it stops.
    expect(decisions[4].jsd[0][1]).toBeGreaterThan(1e-3);
    expect(decisions[7].jsd[0][1]).toBe(0);
  });

  it('waits only for the edges the derived genotype keeps', () => {
    // Node 1 (edges 2-4) keeps two of three edges; edge 4 keeps oscillating but is weak.
    const alphas = (t: number) => [[0, 1, 0.5, 0.2, 0.1], [0, 2, 0, 0.1, 0], [0, 5, 0, 0, 0], [0, 0, 5, 0, 0], t % 2 ? [0, 1, 0, 0, 0] : [0, 0, 1, 0, 0]];
    const { decisions } = run(base, 2, alphas);
    const last = decisions.at(-1)!;
    expect(last.epoch).toBe(6);
    expect(last.stop).toBe('stable');
    expect(last.kept[0]).toEqual([true, true, true, true, false]);
    expect(last.active[0][4]).toEqual([0, 1, 2, 3, 4]); // never stable, never pruned
    expect(last.settled[0][4]).toBe(false);
    expect(keptEdges(last.genotype, [5])).toEqual(last.kept);
  });

  it('stops when the genotype has not changed for `patience` epochs', () => {
    // The best operation never changes but the rest keeps moving, so no edge is stable.
    const alphas = (t: number) => [
      [0, 3, t % 2, 0, 0],
      [0, 0, 3, t % 2, 0],
    ];
    const { decisions } = run({ ...base, patience: 3 }, 1, alphas);
    const last = decisions.at(-1)!;
    expect(last.stop).toBe('genotype-unchanged');
    expect(last.epoch).toBe(5); // unchanged at epochs 3, 4, 5 (counted after the warm-up)
    expect(decisions.every((d) => d.prunes.length === 0)).toBe(true);
  });

  it('with stability disabled, records divergences but never prunes or stops early', () => {
    const { decisions } = run({ ...base, enabled: false, maxEpochs: 12 }, 1, twoEdges);
    expect(decisions).toHaveLength(12);
    expect(decisions.every((d) => d.prunes.length === 0)).toBe(true);
    expect(decisions.at(-1)!.stop).toBe('max-epochs');
    expect(decisions[3].stable[0][0]).toBe(true); // it still reports what it sees
    expect(decisions[4].jsd[0][1]).toBeGreaterThan(1e-3);
  });

  it('resumes from its serialised state with the same decisions', () => {
    const whole = run(base, 1, twoEdges).decisions;
    const first = run(base, 1, twoEdges, undefined, 5);
    const state = JSON.parse(JSON.stringify(first.tracker.state()));
    const tracker = new StabilityTracker(base, { edgesPerCell: [2] }, state);
    const rest = run(base, 1, twoEdges, { tracker, active: first.active, epoch: 5 }).decisions;
    expect([...first.decisions, ...rest].map((d) => [d.epoch, d.prunes, d.stop])).toEqual(whole.map((d) => [d.epoch, d.prunes, d.stop]));
  });

  describe('the automatic test (threshold null): no consistent direction over the window', () => {
    const auto: StabilityOptions = { ...base, threshold: null, maxEpochs: 40 };
    // Every edge drifts (its operation 1 grows by one step an epoch) until its own epoch, then only
    // jitters: operation 2 goes back and forth, so its window's net movement is far below its path.
    const driftUntil = [2, 6, 10, 14, 18];
    const scripted = (scale: number) => (t: number) =>
      driftUntil.map((until, e) => [0, Math.min(t, until), 0.5 + 0.3 * (t % 2), 0.2 * e, 0.1].map((a) => scale * a));
    const decisionEpochs = (decisions: EpochDecision[]) => decisions.at(-1)!.decisions[0];

    it('settles each edge when its drift ends, at any scale of the movement', () => {
      const small = run(auto, 2, scripted(1e-3)).decisions;
      const large = run(auto, 2, scripted(0.1)).decisions;
      // Warm-up 2, window 2: an edge is checked from epoch 4, is stable in the first epoch after its
      // drift (a window with a single step of it has no common direction), and each pruning step
      // waits for a new window. Edge 4 is not kept by the genotype: the search does not wait for it.
      expect(decisionEpochs(small)).toEqual([[4, 6], [7, 9], [11, 13], [15, 17], []]);
      expect(decisionEpochs(large)).toEqual(decisionEpochs(small));
      expect(small.at(-1)).toMatchObject({ epoch: 17, stop: 'stable' });
      expect(small.at(-1)!.kept[0]).toEqual([true, true, true, true, false]);
      // The ratio it judges by: about 2 (the window length) while drifting, 0 for a pure back-and-forth.
      expect(small[4].drift[0][4]).toBeGreaterThan(1.5);
      expect(small[3].drift[0][0]).toBeLessThan(0.05);
      // The per-epoch divergences differ by four orders of magnitude between the two scales.
      expect(large[4].jsd[0][4] / small[4].jsd[0][4]).toBeGreaterThan(1e3);
    });

    it('where the absolute threshold decides only at one scale', () => {
      const fixed = { ...auto, threshold: 1e-5 };
      const small = run(fixed, 2, scripted(1e-3)).decisions;
      const large = run(fixed, 2, scripted(0.1)).decisions;
      // Tiny movements: every edge is stable at its first check, drifting or not.
      expect(small[3].prunes.map((p) => p.edge)).toEqual([0, 1, 2, 3, 4]);
      expect(small[3].range).toMatchObject({ epoch: 4 });
      expect(small[3].range!.max).toBeLessThan(1e-5);
      // Large ones: the jitter alone is above it, so no edge ever is.
      expect(large.every((d) => d.prunes.length === 0)).toBe(true);
      expect(large[3].range!.calmest).toBeGreaterThan(1e-5);
      expect(large[3].range!.min).toBeLessThanOrEqual(large[3].range!.calmest);
    });

    it('autoScale below 1 is stricter and above it more lenient', () => {
      const settle = (autoScale: number) => decisionEpochs(run({ ...auto, autoScale }, 2, scripted(1e-3)).decisions).map((d) => d[0]);
      expect(settle(1)).toEqual([4, 7, 11, 15, undefined]);
      // A window of 2 moves at most twice its path: at 2 even a drifting edge is stable at its first check.
      expect(settle(2)).toEqual([4, 4, 4, 4, 4]);
      expect(settle(1e-6).every((e, i) => e === undefined || e >= settle(1)[i])).toBe(true);
    });

    it('starts the windows of a state saved without their origins again', () => {
      const alphas = scripted(1e-3);
      const first = run(auto, 2, alphas, undefined, 5);
      const state = first.tracker.state();
      for (const st of state.edges.flat()) delete st.origins;
      const tracker = new StabilityTracker(auto, { edgesPerCell: [5] }, state);
      expect(
        tracker
          .state()
          .edges.flat()
          .every((st) => st.window.length === 0),
      ).toBe(true);
      const rest = run(auto, 2, alphas, { tracker, active: first.active, epoch: 5 }).decisions;
      expect(rest[0].drift.flat().every((d) => d === null)).toBe(true); // epoch 6: one epoch in each window
      expect(rest[1].drift.flat().some((d) => d !== null)).toBe(true);
    });

    it('resumes from a state saved in the middle of a window', () => {
      const alphas = scripted(1e-3);
      const whole = run(auto, 2, alphas).decisions;
      const first = run(auto, 2, alphas, undefined, 9);
      const tracker = new StabilityTracker(auto, { edgesPerCell: [5] }, JSON.parse(JSON.stringify(first.tracker.state())));
      const rest = run(auto, 2, alphas, { tracker, active: first.active, epoch: 9 }).decisions;
      expect([...first.decisions, ...rest].map((d) => [d.epoch, d.prunes, d.stop, d.drift])).toEqual(whole.map((d) => [d.epoch, d.prunes, d.stop, d.drift]));
    });
  });

  describe('remaining(): the epochs the stop rules still need at the least (the ETA)', () => {
    /** Each epoch's decision with what remaining() says right after it. */
    function trace(opts: StabilityOptions, nodes: number, alphasAt: (t: number) => number[][]) {
      const edges = edgeCount(nodes);
      const tracker = new StabilityTracker(opts, { edgesPerCell: [edges] });
      let active = Array.from({ length: edges }, () => OPS.map((_, i) => i));
      const snap = (t: number): ArchSnapshot => ({ alphas: [alphasAt(t)], betas: [[]], active: [active] });
      tracker.start(snap(0), derive(nodes));
      const out: { d: EpochDecision; left: ReturnType<StabilityTracker['remaining']> }[] = [];
      for (let t = 1; t <= opts.maxEpochs; t++) {
        const d = tracker.observe(t, snap(t), derive(nodes));
        active = d.active[0];
        out.push({ d, left: tracker.remaining(d) });
        if (d.stop) break;
      }
      return out;
    }

    it('never promises a stop before it comes, and is exact once the alphas stay calm', () => {
      // Edge 1 moves until epoch 6, then neither edge moves: two pruning steps of window 2 each for edge 1.
      const steps = trace(base, 1, twoEdges);
      const stop = steps.at(-1)!.d;
      expect([stop.epoch, stop.stop]).toEqual([10, 'stable']);
      for (const { d, left } of steps) expect(d.epoch + left.epochs).toBeLessThanOrEqual(10);
      expect(steps.filter(({ d }) => d.epoch >= 6).map(({ d, left }) => [d.epoch + left.epochs, left.basis])).toEqual([
        [10, 'stable'],
        [10, 'stable'],
        [10, 'stable'],
        [10, 'stable'],
        [10, 'stable'],
      ]);
      expect(steps.at(-1)!.left).toEqual({ epochs: 0, basis: 'stable' });
      // During the warm-up it counts the warm-up and the windows that follow it.
      expect(steps[0].left).toEqual({ epochs: 1 + 2 + 2, basis: 'stable' });
    });

    it('counts what is left of the patience when the genotype rule comes first', () => {
      const alphas = (t: number) => [
        [0, 3, t % 2, 0, 0],
        [0, 0, 3, t % 2, 0],
      ];
      const steps = trace({ ...base, patience: 3 }, 1, alphas);
      expect(steps.at(-1)!.d).toMatchObject({ epoch: 5, stop: 'genotype-unchanged' });
      // Exact from the first epoch: the warm-up, then three unchanged epochs.
      expect(steps.map(({ d, left }) => [d.epoch + left.epochs, left.basis])).toEqual(steps.map(() => [5, 'genotype-unchanged']));
    });

    it('is the epoch budget when nothing can end the search sooner, or when stability is off', () => {
      const short = trace({ ...base, maxEpochs: 8 }, 1, twoEdges);
      expect(short.at(-1)!.d.stop).toBe('max-epochs');
      expect(short[6].left).toEqual({ epochs: 1, basis: 'max-epochs' }); // after epoch 7 the criterion needs 3 more
      const off = trace({ ...base, enabled: false, maxEpochs: 12 }, 1, twoEdges);
      expect(off.map(({ left }) => left)).toEqual(
        off.map(({ d }) => (d.epoch === 12 ? { epochs: 0, basis: 'max-epochs' } : { epochs: 12 - d.epoch, basis: 'max-epochs' })),
      );
    });
  });

  it('refuses pruneTo that is not decreasing and epochs out of order', () => {
    expect(() => new StabilityTracker({ ...base, pruneTo: [1, 3] }, { edgesPerCell: [2] })).toThrow(/pruneTo/);
    const t = new StabilityTracker(base, { edgesPerCell: [2] });
    const snap = { alphas: [twoEdges(0)], betas: [[]], active: [[OPS.map((_, i) => i), OPS.map((_, i) => i)]] };
    expect(() => t.observe(2, snap, derive(1))).toThrow(/expected epoch 1/);
  });
});
