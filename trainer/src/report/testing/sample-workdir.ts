// A synthetic work directory as the phases leave it (search history with converging
// alphas and shrinking JS divergences, genotype, training histories, results), for
// tests of the report and for looking at the report without running a search.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OPERATIONS } from '../../config/index.ts';
import { hashSeed, mulberry32 } from '../../data/random.ts';

export function writeSampleWorkdir(dir: string, o: { epochs?: number; cells?: number; withResults?: boolean } = {}): void {
  const epochs = o.epochs ?? 30;
  const cells = o.cells ?? 2;
  const edges = 14;
  const ops = OPERATIONS.length;
  const rnd = mulberry32(hashSeed('sample-workdir'));
  // Each edge drifts towards a favourite operation; the drift slows down over time.
  const fav = Array.from({ length: cells }, () => Array.from({ length: edges }, () => 2 + Math.floor(rnd() * (ops - 2))));
  const alphas = Array.from({ length: cells }, () => Array.from({ length: edges }, () => Array.from({ length: ops }, () => 1e-3 * (rnd() - 0.5))));
  const active = Array.from({ length: cells }, () => Array.from({ length: edges }, () => Array.from({ length: ops }, (_, i) => i)));
  const lines: string[] = [];
  const warmup = 5;
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const rate = epoch > warmup ? 0.3 * Math.exp(-(epoch - warmup) / 6) : 0;
    const jsd = alphas.map((cell, c) =>
      cell.map((edge, e) => {
        edge[fav[c][e]] += rate;
        edge[0] -= rate * 0.5;
        return epoch > warmup ? 0.05 * Math.exp(-(epoch - warmup) / (3 + (e % 4))) + 1e-6 : 0;
      }),
    );
    const stable = jsd.map((cell) => cell.map((j) => epoch > warmup + 5 && j < 1e-3));
    stable.forEach((cell, c) =>
      cell.forEach((s, e) => {
        if (s && active[c][e].length > 3) {
          const order = [...active[c][e]].sort((a, b) => alphas[c][e][b] - alphas[c][e][a]);
          active[c][e] = order.slice(0, 3).sort((a, b) => a - b);
        }
      }),
    );
    lines.push(
      JSON.stringify({
        epoch,
        alphas,
        betas: alphas.map(() => Array.from({ length: edges }, () => 0)),
        jsd,
        active,
        stable,
        archUpdates: epoch > warmup,
        trainLoss: 1.2 * Math.exp(-epoch / 10) + 0.2,
        valLoss: 1.3 * Math.exp(-epoch / 10) + 0.25,
        valDice: 0.85 - 0.5 * Math.exp(-epoch / 8),
        epochSeconds: 2 + rnd(),
        stoppedBy: epoch === epochs ? 'stable' : null,
      }),
    );
  }
  const genotype = {
    cells: fav.map((cell) => ({
      nodes: [0, 1, 2, 3].map((node) => [0, 1].map((input) => ({ input: input + (node > 1 ? node - 1 : 0), op: OPERATIONS[cell[(node * (node + 3)) / 2 + input]] }))),
    })),
  };
  mkdirSync(join(dir, 'search'), { recursive: true });
  mkdirSync(join(dir, 'retrain'), { recursive: true });
  mkdirSync(join(dir, 'backbone-training'), { recursive: true });
  writeFileSync(join(dir, 'search', 'history.jsonl'), `${lines.join('\n')}\n`);
  writeFileSync(join(dir, 'genotype.json'), JSON.stringify(genotype));
  const train = (n: number, top: number) =>
    Array.from({ length: n }, (_, i) => JSON.stringify({ epoch: i + 1, trainLoss: Math.exp(-i / 5) + 0.1, valLoss: Math.exp(-i / 5) + 0.15, valDice: top - 0.5 * Math.exp(-i / 4), bestValDice: top - 0.5 * Math.exp(-i / 4) })).join('\n') + '\n';
  writeFileSync(join(dir, 'backbone-training', 'history.jsonl'), train(10, 0.8));
  writeFileSync(join(dir, 'retrain', 'history.jsonl'), train(15, 0.86));
  if (o.withResults ?? true) {
    const classNames = ['background', 'LV', 'MYO', 'RV'];
    const patients = ['phantom_001', 'phantom_004', 'phantom_009'].map((id, i) => ({ id, dice: [0.9 - 0.01 * i, 0.8, 0.75 + 0.02 * i], hd95: [2.1, 3.4 + i, i === 2 ? null : 4.2] }));
    writeFileSync(
      join(dir, 'results.json'),
      JSON.stringify({
        dataset: 'phantom',
        split: 'test',
        classNames,
        conventions: ['Dice of a class absent from both prediction and ground truth is 1.'],
        model: { dicePerClass: { LV: 0.89, MYO: 0.8, RV: 0.77 }, meanDice: 0.82, hd95PerClass: { LV: 2.1, MYO: 4.4, RV: 4.2 }, meanHd95: 3.57, patients },
        baseline: { dicePerClass: { LV: 0.86, MYO: 0.76, RV: 0.72 }, meanDice: 0.78, hd95PerClass: { LV: 2.5, MYO: 5.1, RV: 5.0 }, meanHd95: 4.2, patients },
        diceGain: 0.04,
      }),
    );
  }
}
