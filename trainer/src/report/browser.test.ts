// report.html in a real browser: headless Chromium renders the report of a realistic
// run (three cells that settle at different epochs, 10 operations, the same-budget
// baseline, an external dataset) and a gallery of figures drawn from extreme inputs,
// and no text may leave its SVG, overlap another text or lie on a cell-diagram node,
// with the page's own sans-serif font and with DejaVu Sans and Liberation Sans forced.
// Needs the `chromium` binary on PATH (Debian: apt-get install chromium); without it
// these tests fail and say so. The report's screenshot goes to test-artifacts/.
import { mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { writeReport } from './html.ts';
import { checkLayout, describeFindings, findChromium } from '../../testing/report/browser-layout.ts';
import { figureGallery } from '../../testing/report/figure-gallery.ts';
import { SAMPLE_THRESHOLD, writeSampleWorkdir } from '../../testing/report/sample-workdir.ts';

const ARTIFACTS = fileURLToPath(new URL('../../../test-artifacts/', import.meta.url));
const FONTS = ['DejaVu Sans', 'Liberation Sans'];

describe('report.html in headless Chromium', () => {
  it('lays out every figure of a realistic report: no text outside its SVG, no overlapping labels, no label on a node', async () => {
    const chromium = findChromium();
    const dir = mkdtempSync(join(tmpdir(), 'report-browser-'));
    writeSampleWorkdir(dir, { cells: 3, results: 'current' });
    const html = readFileSync(writeReport(dir, { threshold: SAMPLE_THRESHOLD, title: 'cardiac-left-ventricle-iac-lth-search-with-a-long-run-name' }), 'utf8');
    mkdirSync(ARTIFACTS, { recursive: true });
    const screenshot = join(ARTIFACTS, 'report.png');
    const report = await checkLayout(html, { chromium, fonts: FONTS, screenshot });
    expect(report.findings, describeFindings(report.findings)).toEqual([]);
    // Everything was measured: 3 cell diagrams, 3 JSD charts, 3 importance charts and
    // 3 heat maps, the pruning chart and 4 training charts; 7 nodes per diagram.
    const page = report.measured.find((m) => m.font === 'page')!;
    expect(page.svgs).toBe(17);
    expect(page.nodes).toBe(21);
    expect(page.texts).toBeGreaterThan(300);
    expect(report.measured.map((m) => m.font)).toEqual(['page', ...FONTS.filter((f) => !report.missingFonts.includes(f))]);
    // The screenshot is a PNG of the whole page.
    const png = readFileSync(screenshot);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(png.readUInt32BE(16)).toBe(1200);
    expect(png.readUInt32BE(20)).toBeGreaterThanOrEqual(report.pageHeight);
    expect(statSync(screenshot).size).toBeGreaterThan(50_000);
  });

  it('lays out figures drawn from extreme inputs: long titles and names, many series, eight-node cells', async () => {
    const report = await checkLayout(figureGallery(), { chromium: findChromium(), fonts: FONTS, screenshot: join(ARTIFACTS, 'report-figures.png') });
    expect(report.findings, describeFindings(report.findings)).toEqual([]);
    const page = report.measured.find((m) => m.font === 'page')!;
    expect(page.svgs).toBe(11);
    expect(page.nodes).toBeGreaterThan(40);
  });

  it('finds text outside its SVG, overlapping texts and a label on a node in a deliberately broken figure', async () => {
    const html = `<!DOCTYPE html><html><body>
<svg xmlns="http://www.w3.org/2000/svg" width="240" height="120" viewBox="0 0 240 120" font-family="sans-serif"><title>broken</title>
<text x="10" y="30" font-size="14">first label</text>
<text x="24" y="36" font-size="14">second label</text>
<text x="170" y="60" font-size="14">runs past the right edge</text>
<g class="node"><circle cx="60" cy="90" r="18" fill="#dbe9f6"/><text x="60" y="94" font-size="12" text-anchor="middle">n0</text></g>
<text x="70" y="100" font-size="11">sep_conv_3x3</text>
</svg>
<svg xmlns="http://www.w3.org/2000/svg" width="240" height="160" viewBox="0 0 240 160" font-family="sans-serif"><title>fine</title>
<text x="10" y="20" font-size="14">a title that fits</text>
<text transform="translate(40 150) rotate(-60)" font-size="11">dil_conv_3x3</text>
<text transform="translate(62 150) rotate(-60)" font-size="11">sep_conv_5x5</text>
<g class="node"><circle cx="200" cy="120" r="18"/><text x="200" y="124" font-size="12" text-anchor="middle">n1</text></g>
<text x="200" y="95" font-size="11" text-anchor="middle">above n1</text>
</svg>
</body></html>`;
    const report = await checkLayout(html, { chromium: findChromium(), fonts: FONTS });
    const page = report.findings.filter((f) => f.font === 'page');
    const kinds = (svg: string) => page.filter((f) => f.svg === svg).map((f) => `${f.kind}: ${f.text}${f.other ? ` / ${f.other}` : ''}`);
    expect(kinds('broken')).toEqual(
      expect.arrayContaining(['overlap: first label / second label', 'outside: runs past the right edge', 'on-node: sep_conv_3x3 / n0']),
    );
    // Close, rotated and beside-the-node labels that do not touch are not findings.
    expect(kinds('fine'), describeFindings(page)).toEqual([]);
    // Every forced font finds the same defects.
    for (const font of report.measured.map((m) => m.font)) {
      expect(report.findings.filter((f) => f.font === font && f.svg === 'broken').length, font).toBeGreaterThanOrEqual(3);
    }
  });

  it('says how to install chromium when it is not on PATH', () => {
    expect(() => findChromium({ PATH: '/nonexistent:/also/missing' })).toThrow(/chromium is not on PATH.*apt-get install chromium/);
  });
});
