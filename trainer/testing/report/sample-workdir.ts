// A synthetic work directory as the phases leave it (search history with converging
// alphas, shrinking JS divergences and stability pruning, genotype, training
// histories, results), for tests of the report and for looking at the report without
// running a search.
//
// The search follows the stability rule of trainer/src/search/stability.ts (window 3,
// threshold 1e-3, pruneTo [3, 1], warm-up 3 epochs): an edge whose divergence stays
// below the threshold for the window is pruned to its top 3 operations, then to its
// top 1, after which it has no divergence. Cells converge at different speeds, so the
// first cell's edges are all down to one operation by epoch 13 while the last cell's
// are tracked until the search stops (epoch 27 with the defaults).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OPERATIONS } from '../../src/config/index.ts';
import { mixSeed, mulberry32 } from '../../src/util/random.ts';
import { edgeIndex } from '../../src/model/topology.ts';

export interface SampleWorkdirOptions {
  /** Epoch budget of the search; it stops earlier once every edge is settled. */
  epochs?: number;
  cells?: number;
  /**
   * results.json: 'current' (native grid with the slice-grid figures, the U-Net
   * trained with the same budget as baseline, an external dataset), 'legacy' (the form
   * before those: slice grid, the backbone before the search as baseline), or 'none'.
   */
  results?: 'current' | 'legacy' | 'none';
}

export const SAMPLE_THRESHOLD = 1e-3;
const WINDOW = 3;
const WARMUP = 3;
const PRUNE_TO = [3, 1];
const NONE = OPERATIONS.indexOf('none');

export function writeSampleWorkdir(dir: string, o: SampleWorkdirOptions = {}): void {
  const maxEpochs = o.epochs ?? 40;
  const cells = o.cells ?? 2;
  const nodes = 4;
  const edges = edgeIndex(nodes, 0);
  const ops = OPERATIONS.length;
  const rnd = mulberry32(mixSeed('sample-workdir'));
  // Each edge drifts towards a favourite operation (never `none`); cell c's divergences
  // decay with time constant tau[c] (its slowest edge), so later cells settle later.
  const fav = Array.from({ length: cells }, () => Array.from({ length: edges }, () => 1 + Math.floor(rnd() * (ops - 1))));
  const tau = Array.from({ length: cells }, (_, c) => (cells === 1 ? 1 : 1 + (3.5 * c) / (cells - 1)));
  const edgeTau = (c: number, e: number) => tau[c] * (0.6 + (0.4 * ((e * 7) % 5)) / 4);
  const alphas = Array.from({ length: cells }, () => Array.from({ length: edges }, () => Array.from({ length: ops }, () => 1e-3 * (rnd() - 0.5))));
  const active = Array.from({ length: cells }, () => Array.from({ length: edges }, () => Array.from({ length: ops }, (_, i) => i)));
  const window = alphas.map((cell) => cell.map(() => [] as number[]));
  const steps = alphas.map((cell) => cell.map(() => 0));
  const candidates = (a: number[]) => a.filter((k) => k !== NONE);

  const lines: string[] = [];
  for (let epoch = 1; epoch <= maxEpochs; epoch++) {
    const learns = epoch > WARMUP;
    for (const [c, cell] of alphas.entries()) {
      for (const [e, edge] of cell.entries()) {
        const rate = learns ? 0.3 * Math.exp(-(epoch - WARMUP) / (1.5 * edgeTau(c, e))) : 0;
        edge[fav[c][e]] += rate;
        edge[NONE] -= rate * 0.5;
      }
    }
    const jsd = alphas.map((cell, c) =>
      cell.map((_, e) => (learns && candidates(active[c][e]).length > 1 ? 0.05 * Math.exp(-(epoch - WARMUP) / edgeTau(c, e)) * (1 + 0.2 * rnd()) : 0)),
    );
    const prunes: { cell: number; edge: number; keep: number[] }[] = [];
    const stable = jsd.map((cell, c) =>
      cell.map((js, e) => {
        if (learns) {
          window[c][e].push(js);
          if (window[c][e].length > WINDOW) window[c][e].shift();
        }
        const isStable = window[c][e].length >= WINDOW && Math.max(...window[c][e]) < SAMPLE_THRESHOLD;
        if (!isStable) return false;
        const cand = candidates(active[c][e]);
        let step = steps[c][e];
        while (step < PRUNE_TO.length && PRUNE_TO[step] >= cand.length) step++;
        if (step >= PRUNE_TO.length) {
          steps[c][e] = step;
          return true;
        }
        const keep = [...cand].sort((a, b) => alphas[c][e][b] - alphas[c][e][a] || a - b).slice(0, PRUNE_TO[step]);
        prunes.push({ cell: c, edge: e, keep });
        active[c][e] = [...keep].sort((a, b) => a - b);
        steps[c][e] = step + 1;
        window[c][e] = [];
        return false;
      }),
    );
    const settled = active.map((cell, c) =>
      cell.map((a, e) => candidates(a).length <= 1 || (stable[c][e] && !PRUNE_TO.slice(steps[c][e]).some((k) => k < candidates(a).length))),
    );
    const stoppedBy = settled.every((cell) => cell.every(Boolean)) ? 'stable' : epoch === maxEpochs ? 'max-epochs' : null;
    lines.push(
      JSON.stringify({
        epoch,
        alphas,
        betas: alphas.map(() => Array.from({ length: edges }, () => 0)),
        jsd,
        active,
        stable,
        settled,
        prunes,
        archUpdates: learns,
        trainLoss: 1.2 * Math.exp(-epoch / 10) + 0.2,
        valLoss: 1.3 * Math.exp(-epoch / 10) + 0.25,
        valDice: 0.85 - 0.5 * Math.exp(-epoch / 8),
        epochSeconds: 2 + rnd(),
        stoppedBy,
      }),
    );
    if (stoppedBy) break;
  }

  // Node i takes two distinct inputs of 0 .. i+1; cell 0's last node takes both cell
  // inputs, the longest edges a cell can have.
  const genotype = {
    cells: fav.map((cell, c) => ({
      nodes: Array.from({ length: nodes }, (_, node) => {
        let inputs: number[];
        if (c === 0 && node === nodes - 1) inputs = [0, 1];
        else {
          const a = Math.floor(rnd() * (node + 2));
          const b = (a + 1 + Math.floor(rnd() * (node + 1))) % (node + 2);
          inputs = [a, b].sort((x, y) => x - y);
        }
        return inputs.map((input) => ({ input, op: OPERATIONS[cell[edgeIndex(node, input)]] }));
      }),
    })),
  };
  mkdirSync(join(dir, 'search'), { recursive: true });
  mkdirSync(join(dir, 'retrain'), { recursive: true });
  mkdirSync(join(dir, 'backbone-training'), { recursive: true });
  writeFileSync(join(dir, 'search', 'history.jsonl'), `${lines.join('\n')}\n`);
  writeFileSync(join(dir, 'genotype.json'), JSON.stringify(genotype));
  const train = (n: number, top: number) =>
    `${Array.from({ length: n }, (_, i) =>
      JSON.stringify({
        epoch: i + 1,
        trainLoss: Math.exp(-i / 5) + 0.1,
        valLoss: Math.exp(-i / 5) + 0.15,
        valDice: top - 0.5 * Math.exp(-i / 4),
        bestValDice: top - 0.5 * Math.exp(-i / 4),
      }),
    ).join('\n')}\n`;
  writeFileSync(join(dir, 'backbone-training', 'history.jsonl'), train(10, 0.8));
  writeFileSync(join(dir, 'retrain', 'history.jsonl'), train(15, 0.86));

  const kind = o.results ?? 'current';
  if (kind === 'none') return;
  const classNames = ['background', 'LV', 'MYO', 'RV'];
  const patients = (ids: string[], shift: number, native: boolean) =>
    ids.map((id, i) => ({
      id,
      dice: [0.9 - 0.01 * i - shift, 0.8 - shift, 0.75 + 0.02 * i - shift],
      hd95: [2.1, 3.4 + i, i === 2 ? null : 4.2],
      ...(native ? { sliceDice: [0.91 - 0.01 * i - shift, 0.81 - shift, 0.77 + 0.02 * i - shift] } : {}),
    }));
  const testIds = ['phantom_001', 'phantom_004', 'phantom_009'];
  const conventions = ['Dice of a class absent from both prediction and ground truth is 1.'];
  if (kind === 'legacy') {
    writeFileSync(
      join(dir, 'results.json'),
      JSON.stringify({
        dataset: 'phantom',
        split: 'test',
        classNames,
        conventions,
        model: {
          dicePerClass: { LV: 0.89, MYO: 0.8, RV: 0.77 },
          meanDice: 0.82,
          hd95PerClass: { LV: 2.1, MYO: 4.4, RV: 4.2 },
          meanHd95: 3.57,
          patients: patients(testIds, 0, false),
        },
        baseline: {
          dicePerClass: { LV: 0.86, MYO: 0.76, RV: 0.72 },
          meanDice: 0.78,
          hd95PerClass: { LV: 2.5, MYO: 5.1, RV: 5.0 },
          meanHd95: 4.2,
          patients: patients(testIds, 0.04, false),
        },
        diceGain: 0.04,
      }),
    );
    return;
  }
  // The baseline's own training history (retrain.ts writes it beside baseline/training.json).
  mkdirSync(join(dir, 'baseline'), { recursive: true });
  writeFileSync(join(dir, 'baseline', 'history.jsonl'), train(15, 0.84));
  const extIds = ['ext_101', 'ext_102', 'ext_103', 'ext_104'];
  writeFileSync(
    join(dir, 'results.json'),
    JSON.stringify({
      dataset: 'phantom',
      split: 'test',
      classNames,
      grid: 'native',
      conventions,
      model: {
        dicePerClass: { LV: 0.89, MYO: 0.8, RV: 0.77 },
        meanDice: 0.82,
        hd95PerClass: { LV: 2.1, MYO: 4.4, RV: 4.2 },
        meanHd95: 3.57,
        sliceMeanDice: 0.835,
        patients: patients(testIds, 0, true),
      },
      baseline: {
        dicePerClass: { LV: 0.86, MYO: 0.76, RV: 0.72 },
        meanDice: 0.78,
        hd95PerClass: { LV: 2.5, MYO: 5.1, RV: 5.0 },
        meanHd95: 4.2,
        sliceMeanDice: 0.79,
        patients: patients(testIds, 0.04, true),
      },
      baselineTraining: {
        cells: 'none',
        startedFrom: 'backbone',
        epochs: 15,
        maxEpochs: 20,
        stepsPerEpoch: 24,
        batchSize: 8,
        learningRate: 0.001,
        seed: 7,
        bestValDice: 0.84,
      },
      diceGain: 0.04,
      external: [
        {
          name: 'phantom-external',
          path: '/data/phantom-external',
          cases: extIds.length,
          model: {
            dicePerClass: { LV: 0.81, MYO: 0.7, RV: 0.66 },
            meanDice: 0.7233,
            hd95PerClass: { LV: 3.1, MYO: 6.4, RV: 7.2 },
            meanHd95: 5.57,
            sliceMeanDice: 0.74,
            patients: patients(extIds, 0.08, true),
          },
          baseline: {
            dicePerClass: { LV: 0.79, MYO: 0.66, RV: 0.61 },
            meanDice: 0.6867,
            hd95PerClass: { LV: 3.5, MYO: 7.1, RV: 8.0 },
            meanHd95: 6.2,
            sliceMeanDice: 0.7,
            patients: patients(extIds, 0.12, true),
          },
        },
      ],
    }),
  );
}
