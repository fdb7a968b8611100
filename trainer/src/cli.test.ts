import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PhaseResult } from '../../contract/src/index.ts';
import { parseTrainerArgs, trainerMain } from './cli.ts';

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) }, env: {} } };
}

describe('iacnas trainer command line', () => {
  it('parses flags in both forms', () => {
    expect(parseTrainerArgs(['search', '--workdir', '/w', '--config-json={"seed":1}', '--result-file', '/r'])).toMatchObject({
      command: 'search',
      phase: { name: 'search' },
      workdir: '/w',
      configJson: '{"seed":1}',
      resultFile: '/r',
    });
    expect(parseTrainerArgs(['derive', '--workdir=/w', '--config', 'c.yaml', '--history', 'h.jsonl'])).toMatchObject({
      command: 'derive',
      phase: { name: 'prune' },
      config: 'c.yaml',
      options: { history: 'h.jsonl' },
    });
  });

  it('prints help for the command and every phase', async () => {
    for (const phase of ['search', 'prune', 'derive', 'retrain', 'evaluate']) {
      const t = io();
      expect(await trainerMain([phase, '--help'], t.io)).toBe(0);
      expect(t.out.join('')).toContain(`usage: iacnas trainer ${phase}`);
    }
    const t = io();
    expect(await trainerMain(['--help'], t.io)).toBe(0);
    expect(t.out.join('')).toContain('phases:');
  });

  it('exits 2 on a bad command line', async () => {
    for (const argv of [
      ['fly'],
      ['search'],
      ['search', '--workdir'],
      ['search', '--workdir', '/w', '--config-json', '{}', '--bogus', '1'],
      ['retrain', '--workdir', '/w', '--config-json', '{}', '--history', 'h'],
    ]) {
      const t = io();
      expect(await trainerMain(argv, t.io)).toBe(2);
      // The option parser's own words (node:util parseArgs, as every iacnas command): 'Unknown option', 'argument missing'.
      expect(t.err.join('')).toMatch(/unknown phase|--workdir is required|argument missing|Unknown option/);
    }
  });

  it('requires the configuration, and says how to ask for the built-in defaults', async () => {
    for (const phase of ['search', 'prune', 'retrain', 'evaluate']) {
      const dir = mkdtempSync(join(tmpdir(), 'cli-'));
      const t = io();
      expect(await trainerMain([phase, '--workdir', dir, '--simulate', '0'], t.io)).toBe(2);
      expect(t.err.join('')).toContain('--config <file> or --config-json <json> is required');
      expect(t.err.join('')).toContain("For the built-in defaults (the phantom dataset, a 200-epoch search) say so: --config-json '{}'");
      expect(t.err.join('')).toContain(`usage: iacnas trainer ${phase}`);
      expect(existsSync(join(dir, 'search'))).toBe(false);
    }
    const help = io();
    await trainerMain(['--help'], help.io);
    expect(help.out.join('')).toContain("--config-json '{}' asks for the built-in defaults explicitly");
  });

  it('reads an IACSearch manifest as its spec, saying what it leaves to the cluster', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const file = join(dir, 'search.yaml');
    writeFileSync(file, 'apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata: {name: demo}\nspec:\n  search: {maxEpochs: 5}\n  resources: {gpus: 1}\n');
    const t = io();
    expect(await trainerMain(['retrain', '--workdir', dir, '--config', file, '--simulate', '0'], t.io)).toBe(0);
    expect(t.err.join('')).toContain('config: an IACSearch manifest; spec.resources only say how a cluster runs it and are not used here');
  });

  it('exits 2 on a misspelt key, naming it with its path and the key it most likely meant', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const file = join(dir, 'search.yaml');
    writeFileSync(file, 'apiVersion: nas.iac.dev/v1alpha1\nkind: IACSearch\nmetadata: {name: demo}\nspec:\n  search: {maxEpoch: 5}\n');
    const t = io();
    expect(await trainerMain(['evaluate', '--workdir', dir, '--config', file], t.io)).toBe(2);
    expect(t.err.join('')).toContain('spec.search.maxEpoch: unknown key; did you mean maxEpochs?');
    expect(t.err.join('')).not.toContain('    at '); // a message, not a stack trace
  });

  it('exits 2 on a bad configuration, names the field and writes a failed result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const file = join(dir, 'result.json');
    const t = io();
    const code = await trainerMain(['search', '--workdir', dir, '--config-json', '{"search": {"maxEpochs": 0}}', '--result-file', file], t.io);
    expect(code).toBe(2);
    const result = PhaseResult.parse(JSON.parse(readFileSync(file, 'utf8')));
    expect(result.ok).toBe(false);
    expect(result.message).toContain('search.maxEpochs');
    expect(t.err.join('')).toContain('search.maxEpochs');
  });

  it('exits 2 when a phase is missing what an earlier phase writes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const t = io();
    expect(await trainerMain(['prune', '--workdir', dir, '--config-json', '{}'], t.io)).toBe(2);
    expect(t.err.join('')).toContain('run the search phase first');
  });

  it('exits 2 when IACNAS_BACKEND names no backend', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const t = io();
    const saved = process.env.IACNAS_BACKEND;
    process.env.IACNAS_BACKEND = 'tpu';
    try {
      expect(await trainerMain(['search', '--workdir', dir, '--config-json', '{}'], t.io)).toBe(2);
    } finally {
      if (saved === undefined) delete process.env.IACNAS_BACKEND;
      else process.env.IACNAS_BACKEND = saved;
    }
    expect(t.err.join('')).toContain('IACNAS_BACKEND=tpu is not a backend');
  });

  it('refuses settings that cannot work before any training', async () => {
    const cases: [unknown, string][] = [
      [{ search: { stability: { pruneTo: [1, 3] } } }, 'search.stability.pruneTo: must be strictly decreasing'],
      [{ dataset: { sliceSize: 36 }, backbone: { depth: 3 } }, 'dataset.sliceSize: 36 is not a multiple of 2^backbone.depth = 8; use 40'],
      [{ search: { warmupEpochs: 20, maxEpochs: 20 } }, 'search.warmupEpochs: 20 is not below search.maxEpochs 20'],
      [{ search: { operations: ['none', 'conv_3x3', 'conv_3x3'] } }, 'search.operations: conv_3x3 listed more than once'],
      [{ backbone: { baseFilters: 6 }, search: { partialChannels: 4 } }, 'search.partialChannels: 4 does not divide backbone.baseFilters 6'],
      [
        { search: { stability: { threshold: 1e-3, autoScale: 2 } } },
        'search.stability.autoScale: 2 scales the automatic test, which search.stability.threshold (0.001) turns off; remove one of them',
      ],
    ];
    for (const [config, message] of cases) {
      const dir = mkdtempSync(join(tmpdir(), 'cli-'));
      const t = io();
      expect(await trainerMain(['search', '--workdir', dir, '--config-json', JSON.stringify(config)], t.io)).toBe(2);
      expect(t.err.join('')).toContain(message);
      expect(existsSync(join(dir, 'backbone'))).toBe(false); // nothing was trained
    }
  });
  it('--simulate and IACNAS_SIMULATE_SECONDS pretend a phase: progress, a plausible result, exit 0', async () => {
    const expected = { search: { stoppedBy: 'stable', epochs: 2 }, prune: {}, retrain: { epochs: 2 }, evaluate: { meanDice: 0.7 } } as const;
    for (const [phase, fields] of Object.entries(expected)) {
      const dir = mkdtempSync(join(tmpdir(), 'cli-'));
      const file = join(dir, 'result.json');
      const t = io();
      const argv = [phase, '--workdir', dir, '--config-json', '{}', '--result-file', file];
      const started = performance.now();
      const code =
        phase === 'retrain'
          ? await trainerMain(argv, { ...t.io, env: { IACNAS_SIMULATE_SECONDS: '0.2' } })
          : await trainerMain([...argv, '--simulate', '0.2'], t.io);
      expect(code).toBe(0);
      expect(performance.now() - started).toBeGreaterThanOrEqual(180);
      const result = PhaseResult.parse(JSON.parse(readFileSync(file, 'utf8')));
      expect(result).toMatchObject({ phase, ok: true, ...fields });
      if (phase === 'prune') expect(result.genotype?.cells.length).toBeGreaterThan(0);
      const progress = t.out
        .join('')
        .split('\n')
        .filter((l) => l.includes('"progress"'));
      expect(progress.length).toBe(phase === 'prune' ? 0 : 2);
      expect(existsSync(join(dir, 'search'))).toBe(false); // nothing was trained
    }
  });

  it('exits 2 on a --simulate that is no number of seconds', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cli-'));
    const t = io();
    expect(await trainerMain(['search', '--workdir', dir, '--config-json', '{}', '--simulate', 'soon'], t.io)).toBe(2);
    expect(t.err.join('')).toContain("--simulate: 'soon' is not a number of seconds");
  });
});
