// The search loop on the small fake model and in-memory data (fast); the real
// model and the phantom are exercised through the CLI in test/.
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { describeEachBackend } from '../../testing/backend.ts';
import { type TrainerConfigInput, parseTrainerConfig } from '../config/index.ts';
import type { ProgressEvent } from '../../../contract/src/index.ts';
import { ProgressReporter } from '../report/progress.ts';
import { ensureBackbone } from '../training/backbone.ts';
import { readCheckpoint } from '../training/checkpoint.ts';
import { readHistory } from '../training/history.ts';
import { resultRelevant } from '../training/supervised.ts';
import { searchFingerprint } from '../phases/search.ts';
import { type SearchOutcome, runSearch, thresholdCheck } from './search.ts';
import { fakeDataset } from '../../testing/search/fake-data.ts';
import { fakeModelKit } from '../../testing/search/fake-model.ts';

const quiet = { write: () => true };

function config(over: { search?: Record<string, unknown>; seed?: number } = {}) {
  const input: TrainerConfigInput = {
    seed: over.seed ?? 3,
    backbone: { pretrainEpochs: 2, learningRate: 0.01 },
    search: {
      maxEpochs: 14,
      warmupEpochs: 2,
      batchSize: 4,
      operations: ['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3', 'max_pool_3x3'],
      nodes: 2,
      architecture: { learningRate: 0.003 },
      stability: { window: 2, threshold: 2e-3, patience: 50 },
      ...over.search,
    },
  };
  return parseTrainerConfig(input);
}

async function search(
  workdir: string,
  cfg = config(),
  onEpoch?: (epoch: number) => void,
  stdout: { write(t: string): unknown } = quiet,
  fingerprint = JSON.stringify(cfg),
): Promise<SearchOutcome> {
  const data = fakeDataset();
  const reporter = new ProgressReporter({ phase: 'search', stdout, stderr: quiet, env: {} });
  const backbone = await ensureBackbone({ config: cfg, workdir, data, kit: fakeModelKit, reporter });
  return runSearch({
    config: cfg,
    data,
    kit: fakeModelKit,
    reporter,
    backboneDir: backbone.dir,
    dir: join(workdir, 'search', 'checkpoint'),
    historyFile: join(workdir, 'search', 'history.jsonl'),
    fingerprint,
    onEpoch,
  });
}

const tmp = () => mkdtempSync(join(tmpdir(), 'search-'));

describe('thresholdCheck: an absolute threshold against the first windows', () => {
  const range = { epoch: 5, min: 2e-7, max: 4.3e-5, calmest: 1.5e-6 };
  it('says what the automatic test saw and warns about nothing', () => {
    expect(thresholdCheck(undefined, range)).toEqual({
      info: 'search: the per-epoch divergences of the first windows (epoch 5) range from 2.0e-7 to 4.3e-5; the automatic test judges each edge by its own movement',
    });
  });
  it('warns above the largest divergence and below the calmest edge, not in between', () => {
    expect(thresholdCheck(1e-3, range).warning).toMatch(
      /^search\.stability\.threshold 0\.001 is above every divergence of the first windows \(largest 4\.3e-5 at epoch 5\): every edge is stable at its first check/,
    );
    expect(thresholdCheck(1e-6, range).warning).toMatch(
      /^search\.stability\.threshold 0\.000001 is below the largest divergence of every edge's first window \(the calmest edge reached 1\.5e-6 by epoch 5\): no edge is stable/,
    );
    expect(thresholdCheck(1e-5, range).warning).toBeUndefined();
    expect(thresholdCheck(1e-5, range).info).toContain('search.stability.threshold is 0.00001');
  });
});

describe('searchFingerprint across the automatic test', () => {
  it('is, with a threshold, what it was before autoScale existed', () => {
    const c = config({ search: { stability: { window: 2, threshold: 1e-3, patience: 50 } } });
    const { autoScale: _, ...before } = c.search.stability;
    expect(searchFingerprint(c)).toBe(
      JSON.stringify({ seed: c.seed, dataset: resultRelevant(c.dataset), backbone: c.backbone, search: { ...c.search, stability: before } }),
    );
    // Without one, autoScale decides the search and is part of it.
    const auto = config({ search: { stability: { window: 2, patience: 50, autoScale: 0.5 } } });
    expect(searchFingerprint(auto)).not.toBe(searchFingerprint(config({ search: { stability: { window: 2, patience: 50 } } })));
  });
});

describeEachBackend('runSearch', (backend) => {
  beforeAll(async () => {
    await initBackend({ backend, quiet: true });
  });

  it('prunes stable edges, stops early, and records every epoch', async () => {
    const dir = tmp();
    const r = await search(dir);
    const history = readHistory<{ epoch: number; prunes: unknown[]; active: number[][][]; epochSeconds: number }>(join(dir, 'search', 'history.jsonl'));
    expect(history.map((h) => h.epoch)).toEqual(Array.from({ length: r.epochs }, (_, i) => i + 1));
    expect(history.some((h) => h.prunes.length > 0)).toBe(true);
    expect(r.activeOperations).toBeLessThan(r.totalOperations);
    expect(r.stoppedBy).not.toBe('max-epochs');
    expect(r.genotype.cells).toHaveLength(2);
  });

  it('warns when an absolute threshold is outside every divergence of the first windows, on the events and the result', async () => {
    const out: string[] = [];
    const dir = tmp();
    const r = await search(dir, config({ search: { stability: { window: 2, threshold: 0.9, patience: 50 } } }), undefined, {
      write: (t: string) => out.push(t),
    });
    expect(r.warnings).toHaveLength(1);
    expect(r.warnings[0]).toMatch(
      /^search\.stability\.threshold 0\.9 is above every divergence of the first windows \(largest .* at epoch 4\).*leave search\.stability\.threshold unset/,
    );
    const events = out
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l)) as ProgressEvent[];
    // From the epoch the first windows fill (warm-up 2 + window 2) on, every event repeats it.
    expect(events.filter((e) => e.warnings).map((e) => e.epoch)).toEqual(events.filter((e) => e.epoch >= 4).map((e) => e.epoch));
    // Every edge was stable, and pruned, at its first check.
    const history = readHistory<{ epoch: number; prunes: unknown[] }>(join(dir, 'search', 'history.jsonl'));
    expect(history[3].prunes).toHaveLength(10);
  });

  it("decides with the automatic test by default, recording each edge's drift ratio and decision epochs", async () => {
    const dir = tmp();
    const cfg = config({ search: { stability: { window: 2, patience: 50 } } });
    expect(cfg.search.stability.threshold).toBeUndefined();
    const r = await search(dir, cfg);
    expect(r.warnings).toEqual([]);
    const history = readHistory<{ epoch: number; drift: Array<Array<number | null>>; decisions: number[][][]; prunes: { cell: number; edge: number }[] }>(
      join(dir, 'search', 'history.jsonl'),
    );
    // Judged from the first full window (epoch 4) on: a ratio between 0 and the window length.
    expect(history[2].drift.flat().every((d) => d === null)).toBe(true);
    const judged = history[3].drift.flat().filter((d): d is number => d !== null);
    expect(judged.length).toBeGreaterThan(0);
    for (const d of judged) {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(2 + 1e-9);
    }
    // The decisions of the last line are the epochs of every prune in the history.
    const last = history.at(-1)!.decisions;
    for (const h of history) for (const p of h.prunes) expect(last[p.cell][p.edge]).toContain(h.epoch);
    expect(last.flat(2).length).toBe(history.reduce((n, h) => n + h.prunes.length, 0));
  });

  it('says how to resume a search started with an absolute threshold when the config no longer sets one', async () => {
    const dir = tmp();
    const fixed = config({ search: { maxEpochs: 3, stability: { window: 2, threshold: 2e-3, patience: 50 } } });
    await search(dir, fixed, undefined, quiet, searchFingerprint(fixed));
    const auto = config({ search: { maxEpochs: 3, stability: { window: 2, patience: 50 } } });
    await expect(search(dir, auto, undefined, quiet, searchFingerprint(auto))).rejects.toThrow(
      /different configuration \(seed, dataset, backbone or search changed\): it was started with the absolute stability test, search\.stability\.threshold 0\.002 .*; set search\.stability\.threshold: 0\.002 to resume it; use a new --workdir/,
    );
    // With the threshold set again it is the same search: finished, it does no work.
    expect((await search(dir, fixed, undefined, quiet, searchFingerprint(fixed))).epochs).toBe(3);
  });

  it('estimates the time left from the stop rules, with maxEpochs as the upper bound', async () => {
    const out: string[] = [];
    const r = await search(tmp(), config(), undefined, { write: (t: string) => out.push(t) });
    const events = out
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l)) as ProgressEvent[];
    expect(events.map((e) => e.epoch)).toEqual(Array.from({ length: r.epochs }, (_, i) => i + 1));
    expect(events.every((e) => e.etaBasis !== undefined)).toBe(true);
    // Before the end, somewhere the criterion needed fewer epochs than the budget had left.
    const early = events.slice(0, -1).filter((e) => e.etaBasis !== 'max-epochs');
    expect(early.length).toBeGreaterThan(0);
    for (const e of early) expect(e.etaMaxSeconds!).toBeGreaterThan(e.etaSeconds!);
    expect(events.at(-1)).toMatchObject({ etaSeconds: 0, etaBasis: r.stoppedBy });
    expect(events.at(-1)!.etaMaxSeconds).toBeUndefined();
  });

  it('gives the same genotype and alphas for the same seed', async () => {
    const a = await search(tmp(), config({ search: { maxEpochs: 5 } }));
    const b = await search(tmp(), config({ search: { maxEpochs: 5 } }));
    expect(b.genotype).toEqual(a.genotype);
    expect(b.arch).toEqual(a.arch);
    const c = await search(tmp(), config({ seed: 4, search: { maxEpochs: 5 } }));
    expect(c.arch.alphas).not.toEqual(a.arch.alphas);
  });

  it('leaks no tensors from epoch to epoch', async () => {
    const counts = new Map<number, number>();
    await search(tmp(), config({ search: { maxEpochs: 6, stability: { enabled: false } } }), (epoch) => counts.set(epoch, tf.memory().numTensors));
    expect(counts.get(5)).toBe(counts.get(2));
    expect(counts.get(6)).toBe(counts.get(2));
  });

  it('resumes an interrupted search exactly where it stopped', async () => {
    const cfg = config({ search: { maxEpochs: 7, stability: { enabled: false } } });
    const whole = await search(tmp(), cfg);
    const dir = tmp();
    await expect(
      search(dir, cfg, (epoch) => {
        if (epoch === 3) throw new Error('killed');
      }),
    ).rejects.toThrow('killed');
    const seen: number[] = [];
    const resumed = await search(dir, cfg, (epoch) => seen.push(epoch));
    expect(seen).toEqual([4, 5, 6, 7]);
    expect(resumed.arch).toEqual(whole.arch);
    expect(readHistory(join(dir, 'search', 'history.jsonl')).map((h) => h.epoch)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // Started again after it finished: nothing is redone.
    const again: number[] = [];
    const done = await search(dir, cfg, (epoch) => again.push(epoch));
    expect(again).toEqual([]);
    expect(done.epochs).toBe(7);
  });

  it('runs the full length with stability disabled and prunes nothing', async () => {
    const r = await search(tmp(), config({ search: { maxEpochs: 8, stability: { enabled: false } } }));
    expect(r.epochs).toBe(8);
    expect(r.stoppedBy).toBe('max-epochs');
    expect(r.activeOperations).toBe(r.totalOperations);
  });

  it('keeps the backbone frozen unless freezeBackbone is false', async () => {
    const backboneAfter = async (freezeBackbone: boolean) => {
      const dir = tmp();
      await search(dir, config({ search: { maxEpochs: 2, freezeBackbone } }));
      const before = readCheckpoint(join(dir, 'backbone'))!.tensors.get('enc/w')!.values;
      const after = readCheckpoint(join(dir, 'search', 'checkpoint'))!.tensors.get('w/enc/w')!.values;
      return { before: Array.from(before), after: Array.from(after) };
    };
    const frozen = await backboneAfter(true);
    expect(frozen.after).toEqual(frozen.before);
    const free = await backboneAfter(false);
    expect(free.after).not.toEqual(free.before);
  });

  it('refuses a work directory whose backbone was made with another configuration', async () => {
    const dir = tmp();
    await search(dir, config({ search: { maxEpochs: 1 } }));
    const other = parseTrainerConfig({ ...config(), seed: 99 });
    const data = fakeDataset();
    const reporter = new ProgressReporter({ phase: 'search', stdout: quiet, stderr: quiet, env: {} });
    await expect(ensureBackbone({ config: other, workdir: dir, data, kit: fakeModelKit, reporter })).rejects.toThrow(/backbone trained with another seed/);
  });

  it('takes the backbone from backbone.pretrained without training it', async () => {
    const first = tmp();
    await search(first, config({ search: { maxEpochs: 1 } }));
    const data = fakeDataset();
    const reporter = new ProgressReporter({ phase: 'search', stdout: quiet, stderr: quiet, env: {} });
    const given = parseTrainerConfig({ ...config(), backbone: { ...config().backbone, pretrained: join(first, 'backbone') } });
    const second = tmp();
    const info = await ensureBackbone({ config: given, workdir: second, data, kit: fakeModelKit, reporter });
    expect(info).toMatchObject({ source: 'pretrained', seconds: 0, epochs: 0 });
    expect(Array.from(readCheckpoint(join(second, 'backbone'))!.tensors.get('enc/w')!.values)).toEqual(
      Array.from(readCheckpoint(join(first, 'backbone'))!.tensors.get('enc/w')!.values),
    );
    const missing = parseTrainerConfig({ ...config(), backbone: { ...config().backbone, pretrained: join(first, 'nowhere') } });
    await expect(ensureBackbone({ config: missing, workdir: tmp(), data, kit: fakeModelKit, reporter })).rejects.toThrow(
      /backbone.pretrained: .* does not exist/,
    );
  });
});
