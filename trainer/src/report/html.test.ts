import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cellDiagram } from './cell-diagram.ts';
import { heatMap, lineChart, textWidth, wrapText } from './charts.ts';
import { decisionEpochs, operationImportance, readReportInputs, writeReport } from './html.ts';
import { GALLERY_GENOTYPES } from '../../testing/report/figure-gallery.ts';
import { writeSampleWorkdir } from '../../testing/report/sample-workdir.ts';

describe('report.html', () => {
  it('holds the JSD curves, importance evolution, cell diagrams, training curves and results, self-contained', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-'));
    writeSampleWorkdir(dir, { cells: 2 });
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
    // Results table with the same-budget baseline and the gain.
    expect(html).toMatch(/U-Net \+ IAC cells<\/th><td>0\.890<\/td><td>0\.800<\/td><td>0\.770<\/td><td><b>0\.820<\/b>/);
    expect(html).toContain('U-Net, same budget (baseline)');
    expect(html).toContain('Dice gain of the cells over the U-Net trained with the same budget: <b>+4.00</b> points');
    // Every <svg> is closed.
    expect(html.match(/<svg /g)?.length).toBe(html.match(/<\/svg>/g)?.length);
  });

  it('shows the decision epochs of every edge and, for the automatic test, the drift ratio it judged by', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-auto-'));
    writeSampleWorkdir(dir, { cells: 2 });
    const file = join(dir, 'search', 'history.jsonl');
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    for (const l of lines) l.drift = l.jsd.map((cell: number[]) => cell.map((_, e) => (l.archUpdates ? (e % 3) / 2 : null)));
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    const expected = decisionEpochs(lines);
    const pruned = lines.flatMap((l) => l.prunes.map((p: { cell: number; edge: number }) => ({ ...p, epoch: l.epoch })));
    expect(pruned.length).toBeGreaterThan(0);
    for (const p of pruned) expect(expected[p.cell][p.edge]).toContain(p.epoch);

    const html = readFileSync(writeReport(dir, { autoScale: 1 }), 'utf8');
    expect(html).toContain('cell 0: drift ratio per edge');
    expect(html).toContain('stable at or below 1');
    expect(html).toContain('The automatic test');
    expect(html).not.toContain('stability threshold');
    const table = html.slice(html.indexOf('<h3>Decision epochs'), html.indexOf('</table>', html.indexOf('<h3>Decision epochs')));
    const first = pruned.filter((p, i) => pruned.findIndex((q) => q.cell === p.cell && q.edge === p.edge) === i).map((p) => p.epoch);
    expect(table).toContain(`First decisions: epochs ${Math.min(...first)} to ${Math.max(...first)}`);
    expect(table.match(/<tr><td>\d<\/td>/g)).toHaveLength(2);
    // With an absolute threshold the chart draws it and there is no drift ratio.
    const fixed = readFileSync(writeReport(dir, { threshold: 1e-3 }), 'utf8');
    expect(fixed).toContain('stability threshold 0.001');
    expect(fixed).not.toContain('drift ratio');
  });

  it('shows the baseline training, native-grid and slice-grid Dice and each external dataset', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-current-'));
    writeSampleWorkdir(dir, { cells: 2, results: 'current' });
    const html = readFileSync(writeReport(dir), 'utf8');
    const results = html.slice(html.indexOf('<h2>Results on the test split'), html.indexOf('<h2>Found cells'));
    expect(results).toContain('Dice, native grid');
    expect(results).toContain('HD95 (mm, native grid)');
    expect(results).toContain("on each scan's own voxel grid");
    // The slice-grid mean Dice is the last column of each row.
    expect(results).toMatch(/U-Net \+ IAC cells<\/th>(<td>[^<]*<\/td>|<td><b>[^<]*<\/b><\/td>){8}<td>0\.835<\/td><\/tr>/);
    expect(results).toMatch(/U-Net, same budget \(baseline\)<\/th>.*?<td>0\.790<\/td><\/tr>/);
    expect(results).toContain('mean Dice, slice grid');
    // How the baseline was trained, from results.json's baselineTraining.
    expect(results).toMatch(
      /trained from the trained backbone with the retraining budget.*15 of at most 20 epochs, 24 steps per epoch, batch size 8, learning rate 0\.001, seed 7; best validation Dice 0\.840/,
    );
    expect(results).toContain('+4.00</b> points (mean Dice 0.820 against 0.780)');
    // One section per external dataset, with its own table and the gain there.
    const external = html.slice(html.indexOf('<h2>External dataset: phantom-external'), html.indexOf('<h2>Found cells'));
    expect(external.length).toBeGreaterThan(0);
    expect(external).toContain('4 cases from <code>/data/phantom-external</code>');
    expect(external).toContain('Mean Dice <b>0.723</b>, mean HD95 <b>5.57</b> mm over 4 cases');
    expect(external).toMatch(/U-Net \+ IAC cells<\/th><td>0\.810<\/td><td>0\.700<\/td><td>0\.660<\/td><td><b>0\.723<\/b>/);
    expect(external).toContain('+3.66</b> points');
    expect(external).toContain('<summary>per case</summary>');
    expect(html).toContain('external dataset phantom-external: mean Dice <b>0.723</b> over 4 cases');
    // The baseline's training curve beside the others.
    expect(html).toContain('<title>U-Net without cells trained with the same budget (baseline)</title>');
  });

  it('reads results.json of older runs: no gain line, the baseline named as the backbone before the search, slice-grid figures', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-legacy-'));
    writeSampleWorkdir(dir, { cells: 2, results: 'legacy' });
    const html = readFileSync(writeReport(dir), 'utf8');
    expect(html).toContain('Results on the test split');
    expect(html).toContain('U-Net backbone before the search');
    expect(html).not.toContain('same budget');
    expect(html).not.toContain('points');
    expect(html).not.toContain('native grid');
    expect(html).not.toContain('External dataset');
    expect(html).not.toContain('trained with the same budget (baseline)');
    expect(html).toContain('at the slice resolution');
  });

  it('says in the plot and under it where and why an edge or a cell stops being tracked', () => {
    const dir = mkdtempSync(join(tmpdir(), 'report-tracking-'));
    writeSampleWorkdir(dir, { cells: 2 });
    const html = readFileSync(writeReport(dir, { threshold: 1e-3 }), 'utf8');
    const history = readFileSync(join(dir, 'search', 'history.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const lastPositive = (c: number) => Math.max(...history.filter((h) => h.jsd[c].some((v: number) => v > 0)).map((h) => h.epoch));
    const last = history.at(-1).epoch;
    // The fixture's first cell is all pruned to one operation well before the search ends.
    expect(lastPositive(0)).toBeLessThan(last - 5);
    const jsd = html.slice(html.indexOf('Jensen'), html.indexOf('Operation importance'));
    const split = jsd.indexOf('<title>cell 1: JS divergence');
    const cell0 = jsd.slice(0, split);
    const cell1 = jsd.slice(split);
    expect(cell0).toContain(
      `The plot of cell 0 ends at epoch ${lastPositive(0)}: by then every one of its edges was pruned to a single operation, while the search ran until epoch ${last}.`,
    );
    expect(cell0).toContain('all edges pruned to one operation');
    expect(cell0).toContain('no longer tracked');
    // Both plots span the whole search, so the shorter curves visibly end early.
    for (const part of [cell0, cell1]) expect(part).toMatch(new RegExp(`text-anchor="middle" fill="#444">${Math.floor(last / 5) * 5}<`));
    expect(cell1).not.toContain('The plot of cell 1 ends');
    expect(cell1).toContain('Cell 1: ');
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
    const svg = lineChart(
      [
        {
          name: 'a',
          points: [
            [4, 1],
            [5, 2],
            [6, 1],
            [7, 3],
          ],
        },
      ],
      { title: 't', xLabel: 'epoch', yLabel: 'y' },
    );
    const xTicks = [...svg.matchAll(/text-anchor="middle" fill="#444">([^<]+)</g)].map((m) => m[1]);
    expect(xTicks).toEqual(['4', '5', '6', '7']);
  });

  it('breaks a line over epochs without a value when asked, and dots a point left alone', () => {
    const points: [number, number][] = [
      [4, 1],
      [5, 2],
      [8, 1],
      [9, 3],
      [12, 2],
    ];
    const line = (gapX?: number) => lineChart([{ name: 'a', points, gapX }], { title: 't', xLabel: 'epoch', yLabel: 'y' });
    const path = (svg: string) => svg.match(/<path d="([^"]+)" fill="none" stroke="[^"]+" stroke-width="1.6"><title>a</)![1];
    expect(path(line()).match(/M/g)).toHaveLength(1);
    expect(path(line(1)).match(/M/g)).toHaveLength(3);
    expect(path(line(1)).match(/L/g)).toHaveLength(2);
    expect(line(1).match(/<circle /g)).toHaveLength(1); // epoch 12
    expect(line().match(/<circle /g)).toBeNull();
  });

  it('leaves headroom between the highest curve and the plot frame, on linear and log axes', () => {
    for (const [points, logY] of [
      [
        [
          [1, 0.2],
          [2, 1],
          [3, 0.6],
        ],
        false,
      ],
      [
        [
          [1, 0.2],
          [2, 0.5],
          [3, 0.6],
        ],
        false,
      ],
      [
        [
          [1, 1e-4],
          [2, 0.1],
          [3, 1e-3],
        ],
        true,
      ],
    ] as [[number, number][], boolean][]) {
      const svg = lineChart([{ name: 'a', points }], { title: 't', xLabel: 'epoch', yLabel: 'y', yMin: logY ? undefined : 0, logY });
      const frame = /<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" fill="none" stroke="#888"\/>/.exec(svg)!;
      const top = Number(frame[1]);
      const height = Number(frame[2]);
      const d = /<path d="([^"]+)" fill="none"/.exec(svg)![1];
      const highest = Math.min(...[...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1])));
      expect(highest - top, `${logY ? 'log' : 'linear'} axis, top at ${top}, curve at ${highest}`).toBeGreaterThanOrEqual(0.05 * height);
    }
  });

  it('wraps a title of any length inside the SVG box and grows the box for long labels', () => {
    const title = `cell 0: ${'a very long figure title '.repeat(8)}with an unbreakable_${'x'.repeat(90)}`;
    for (const svg of [
      lineChart(
        [
          {
            name: 'a series name that is long',
            points: [
              [1, 1],
              [2, 2],
            ],
          },
        ],
        { title, xLabel: 'epoch', yLabel: 'a y axis label', width: 400 },
      ),
      heatMap([[0.5, null]], { title, subtitle: title, rowLabels: ['edge 0'], colLabels: ['an_operation_with_a_long_name', 'b'] }),
    ]) {
      const width = Number(/<svg [^>]*width="(\d+)"/.exec(svg)![1]);
      const lines = [...svg.matchAll(/<text x="([\d.]+)" y="[\d.]+" font-size="14" font-weight="bold">([^<]*)</g)];
      expect(lines.length).toBeGreaterThan(2);
      expect(
        lines
          .map((m) => m[2])
          .join(' ')
          .replace(/\s+/g, ''),
      ).toBe(title.replace(/\s+/g, ''));
      for (const m of lines) expect(Number(m[1]) + textWidth(m[2], 14, true)).toBeLessThanOrEqual(width);
    }
  });

  it('wraps text at spaces and cuts words wider than a line', () => {
    expect(wrapText('one two three four', textWidth('three four', 12), 12)).toEqual(['one two', 'three four']);
    const pieces = wrapText('x'.repeat(40), textWidth('x'.repeat(15), 12), 12);
    expect(pieces).toEqual(['x'.repeat(15), 'x'.repeat(15), 'x'.repeat(10)]);
  });
});

interface Circle {
  cx: number;
  cy: number;
  r: number;
}

/** Nodes, edges and label boxes of a cell diagram, read back from its SVG. */
function readDiagram(svg: string) {
  const num = (s: string) => Number(s);
  const circles: Circle[] = [...svg.matchAll(/<g class="node"><circle cx="([-\d.]+)" cy="([-\d.]+)" r="([\d.]+)"/g)].map((m) => ({
    cx: num(m[1]),
    cy: num(m[2]),
    r: num(m[3]),
  }));
  const rects = [...svg.matchAll(/<g class="node"><rect x="([-\d.]+)" y="([-\d.]+)" width="([\d.]+)" height="([\d.]+)"/g)].map((m) => ({
    x: num(m[1]),
    y: num(m[2]),
    w: num(m[3]),
    h: num(m[4]),
  }));
  const paths = [...svg.matchAll(/<path d="M([-\d.]+),([-\d.]+) Q([-\d.]+),([-\d.]+) ([-\d.]+),([-\d.]+)"([^>]*)>/g)].map((m) => ({
    p: [m.slice(1, 7).map(num)].map(
      ([a, b, c, d, e, f]) =>
        [
          [a, b],
          [c, d],
          [e, f],
        ] as [number, number][],
    )[0],
    labelled: m[7].includes('stroke-width="2.2"'),
  }));
  const labels = [...svg.matchAll(/<g class="op-label"><rect x="([-\d.]+)" y="([-\d.]+)" width="([\d.]+)" height="([\d.]+)"/g)].map((m) => ({
    x: num(m[1]),
    y: num(m[2]),
    w: num(m[3]),
    h: num(m[4]),
  }));
  const [, width, height] = /<svg [^>]*width="(\d+)" height="(\d+)"/.exec(svg)!.map(Number);
  return { circles, rects, paths, labels, width, height };
}

function bezierPoint([a, c, b]: [number, number][], t: number): [number, number] {
  const u = 1 - t;
  return [u * u * a[0] + 2 * u * t * c[0] + t * t * b[0], u * u * a[1] + 2 * u * t * c[1] + t * t * b[1]];
}

function rectCircleDistance(r: { x: number; y: number; w: number; h: number }, c: Circle): number {
  const dx = Math.max(r.x - c.cx, 0, c.cx - (r.x + r.w));
  const dy = Math.max(r.y - c.cy, 0, c.cy - (r.y + r.h));
  return Math.hypot(dx, dy) - c.r;
}

describe('cell diagram', () => {
  it.each(GALLERY_GENOTYPES)('%s: edges keep clear of the nodes they pass, labels sit on their edges and cover no node and no other label', (_, g) => {
    const d = readDiagram(cellDiagram(g, 'cell 0 (skip level 0)'));
    const edges = g.nodes.flat().length;
    expect(d.circles).toHaveLength(2 + g.nodes.length);
    expect(d.rects).toHaveLength(1);
    expect(d.labels).toHaveLength(edges);
    expect(d.paths.filter((p) => p.labelled)).toHaveLength(edges);
    for (const path of d.paths) {
      // The nodes a path starts or ends on are those whose outline its end points lie on.
      const ends = d.circles.filter((c) => [path.p[0], path.p[2]].some(([x, y]) => Math.abs(Math.hypot(x - c.cx, y - c.cy) - c.r) < 0.5));
      for (const c of d.circles.filter((c) => !ends.includes(c))) {
        for (let i = 0; i <= 50; i++) {
          const [x, y] = bezierPoint(path.p, i / 50);
          expect(Math.hypot(x - c.cx, y - c.cy) - c.r, `path ${JSON.stringify(path.p)} passes node at ${c.cx},${c.cy}`).toBeGreaterThan(4);
        }
      }
    }
    d.labels.forEach((l, i) => {
      for (const c of d.circles) expect(rectCircleDistance(l, c)).toBeGreaterThan(0);
      for (const r of d.rects) expect(l.x + l.w <= r.x || r.x + r.w <= l.x || l.y + l.h <= r.y || r.y + r.h <= l.y).toBe(true);
      d.labels.forEach((m, j) => {
        if (j > i) expect(l.x + l.w <= m.x || m.x + m.w <= l.x || l.y + l.h <= m.y || m.y + m.h <= l.y, `labels ${i} and ${j}`).toBe(true);
      });
      expect(l.x >= 0 && l.y >= 0 && l.x + l.w <= d.width && l.y + l.h <= d.height).toBe(true);
    });
    // Each label is centred on one of the labelled edges.
    for (const l of d.labels) {
      const [cx, cy] = [l.x + l.w / 2, l.y + l.h / 2];
      const near = d.paths
        .filter((p) => p.labelled)
        .some((p) => Array.from({ length: 201 }, (_, i) => bezierPoint(p.p, i / 200)).some(([x, y]) => Math.hypot(x - cx, y - cy) < 27));
      expect(near).toBe(true);
    }
  });
});
