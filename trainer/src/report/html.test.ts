import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { operationImportance, readReportInputs, writeReport } from './html.ts';
import { writeSampleWorkdir } from './testing/sample-workdir.ts';

describe('report.html', () => {
  it('holds the JSD curves, importance evolution, cell diagrams, training curves and results, self-contained', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-'));
    writeSampleWorkdir(dir, { epochs: 20, cells: 2 });
    const html = readFileSync(writeReport(dir, { threshold: 1e-3, title: 'demo' }), 'utf8');
    expect(html).toMatch(/^<!DOCTYPE html>/);
    // No external resources: the only URL is the SVG namespace.
    const urls = html.match(/(?:src|href)=["'](?!#)[^"']+/g) ?? [];
    expect(urls).toEqual([]);
    expect(html.match(/https?:\/\/[^"'\s<]+/g)?.every((u) => u === 'http://www.w3.org/2000/svg')).toBe(true);
    expect(html).not.toMatch(/<script/);
    expect(html).toContain('cell 0: JS divergence per edge');
    expect(html).toContain('cell 1: JS divergence per edge');
    expect(html).toContain('stability threshold 0.001');
    expect(html).toContain('cell 0: mean operation importance');
    expect(html).toContain('cell 1 (skip level 1)');
    expect(html).toContain('retraining with the found cells');
    expect(html).toContain('backbone U-Net training');
    // The found cell's operations appear in its diagram and caption.
    const genotype = JSON.parse(readFileSync(join(dir, 'genotype.json'), 'utf8'));
    for (const e of genotype.cells[0].nodes[0]) expect(html).toContain(`${e.op}(s${e.input}`);
    // 14 edges of JSD curves per cell, each one path with a title.
    const jsdSection = html.slice(html.indexOf('Jensen'), html.indexOf('Operation importance'));
    expect(jsdSection.match(/<path [^>]*><title>edge \d+<\/title>/g)).toHaveLength(28);
    // Results table with baseline and the gain.
    expect(html).toMatch(/U-Net \+ IAC cells<\/th><td>0\.890<\/td><td>0\.800<\/td><td>0\.770<\/td><td><b>0\.820<\/b>/);
    expect(html).toContain('+4.00</b> points');
    // Every <svg> is closed.
    expect(html.match(/<svg /g)?.length).toBe(html.match(/<\/svg>/g)?.length);
  });

  it('is written for a partial work directory (search only) and tolerates a torn history line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-partial-'));
    mkdirSync(join(dir, 'search'));
    writeFileSync(
      join(dir, 'search', 'history.jsonl'),
      `${JSON.stringify({ epoch: 1, jsd: [[0.01, 0.02]], trainLoss: 1 })}\n${JSON.stringify({ epoch: 2, jsd: [[0.005, 0.001]], trainLoss: 0.8 })}\n{"epoch": 3, "js`,
    );
    const html = readFileSync(writeReport(dir), 'utf8');
    expect(html).toContain('cell search: <b>2</b> epochs');
    expect(html).not.toContain('Results on the test split');
    expect(html).toContain('cell 0: JS divergence per edge');
  });

  it('computes operation importance over active operations only', () => {
    // One edge, three operations, the middle one pruned: softmax over {0, 2}.
    const m = operationImportance({ epoch: 1, alphas: [[[0, 5, Math.log(3)]]], active: [[[0, 2]]] }, 0, 3)!;
    expect(m[0]).toBeCloseTo(0.25, 12);
    expect(m[1]).toBe(0);
    expect(m[2]).toBeCloseTo(0.75, 12);
  });

  it('takes the operation names from the search checkpoint when not given', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-ops-'));
    mkdirSync(join(dir, 'search', 'checkpoint'), { recursive: true });
    writeFileSync(join(dir, 'search', 'history.jsonl'), `${JSON.stringify({ epoch: 1, alphas: [[[0, 0]]] })}\n`);
    writeFileSync(join(dir, 'search', 'checkpoint', 'state.json'), JSON.stringify({ state: { operations: ['conv_3x3', 'skip_connect'] } }));
    expect(readReportInputs(dir).operations).toEqual(['conv_3x3', 'skip_connect']);
  });
});

describe('charts', () => {
  it('puts epoch ticks on whole numbers only', async () => {
    const { lineChart } = await import('./charts.ts');
    const svg = lineChart([{ name: 'a', points: [[4, 1], [5, 2], [6, 1], [7, 3]] }], { title: 't', xLabel: 'epoch', yLabel: 'y' });
    const xTicks = [...svg.matchAll(/text-anchor="middle" fill="#444">([^<]+)</g)].map((m) => m[1]);
    expect(xTicks).toEqual(['4', '5', '6', '7']);
  });
});
