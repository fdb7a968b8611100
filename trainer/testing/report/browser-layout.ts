// Checks the layout of report.html's SVG figures in a real browser: headless Chromium
// (Debian's `chromium` package) opens a copy of the page with a measuring script added,
// which takes the rendered box of every <text> (rotations included) and reports
//   - 'outside': a text that reaches beyond the box of its <svg>,
//   - 'overlap': two texts of one <svg> that overlap,
//   - 'on-node': a text that overlaps a node shape (<g class="node"> circle or rect)
//     other than its own node, as in the cell diagrams,
// once with the page as it is and once per extra font family forced on the SVGs (the
// widths a reader's "sans-serif" may have). The findings come back base64-encoded in
// the DOM that --dump-dom prints. --screenshot renders the page to a PNG.
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The chromium binary on PATH; an error saying how to install it when there is none. */
export function findChromium(env: Record<string, string | undefined> = process.env): string {
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const file = join(dir, 'chromium');
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    'chromium is not on PATH: the report layout check renders report.html in headless Chromium. Install it with `apt-get install chromium` (Debian; .ci/run installs it when missing).',
  );
}

export interface LayoutFinding {
  kind: 'outside' | 'overlap' | 'on-node';
  /** The font family forced on the SVGs, or 'page' for the page's own fonts. */
  font: string;
  /** The <title> of the SVG (its figure title). */
  svg: string;
  text: string;
  /** The other text, or the node's text, for 'overlap' and 'on-node'. */
  other?: string;
  /** By how many pixels (largest overshoot or smallest separating depth). */
  by: number;
}

export interface LayoutReport {
  findings: LayoutFinding[];
  /** Per font: SVGs and texts measured, node shapes found. */
  measured: { font: string; svgs: number; texts: number; nodes: number }[];
  /** Forced fonts that are not installed (measuring them would measure the fallback). */
  missingFonts: string[];
  /** Height of the page in CSS pixels at the window width. */
  pageHeight: number;
}

export interface LayoutCheckOptions {
  /** Font families forced on the SVGs in addition to the page as it is. */
  fonts?: string[];
  /** Window width in CSS pixels. */
  width?: number;
  /** Writes a full-page screenshot (PNG) to this path. */
  screenshot?: string;
  chromium?: string;
}

// Runs in the page. Plain JavaScript in a string: it must not depend on how the test
// file is compiled.
const MEASURE = `
(function () {
  var EPS = 0.5;
  var fonts = __FONTS__;
  var style = document.createElement('style');
  document.head.appendChild(style);
  function corners(el) {
    var b = el.getBBox();
    var m = el.getScreenCTM();
    function pt(x, y) { return [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f]; }
    return [pt(b.x, b.y), pt(b.x + b.width, b.y), pt(b.x + b.width, b.y + b.height), pt(b.x, b.y + b.height)];
  }
  function axes(p) {
    var out = [];
    for (var i = 0; i < p.length; i++) {
      var a = p[i], b = p[(i + 1) % p.length];
      var nx = -(b[1] - a[1]), ny = b[0] - a[0];
      var len = Math.hypot(nx, ny);
      if (len > 1e-9) out.push([nx / len, ny / len]);
    }
    return out;
  }
  // Depth of overlap of two convex polygons: the smallest overlap of their projections
  // over the separating axes (<= 0 when they are apart).
  function depth(p, q) {
    var all = axes(p).concat(axes(q));
    var d = Infinity;
    for (var i = 0; i < all.length; i++) {
      var ax = all[i];
      var pmin = Infinity, pmax = -Infinity, qmin = Infinity, qmax = -Infinity;
      p.forEach(function (v) { var s = v[0] * ax[0] + v[1] * ax[1]; pmin = Math.min(pmin, s); pmax = Math.max(pmax, s); });
      q.forEach(function (v) { var s = v[0] * ax[0] + v[1] * ax[1]; qmin = Math.min(qmin, s); qmax = Math.max(qmax, s); });
      d = Math.min(d, Math.min(pmax, qmax) - Math.max(pmin, qmin));
    }
    return d;
  }
  function inside(pt, poly) {
    for (var i = 0; i < poly.length; i++) {
      var a = poly[i], b = poly[(i + 1) % poly.length];
      if ((b[0] - a[0]) * (pt[1] - a[1]) - (b[1] - a[1]) * (pt[0] - a[0]) < 0) return false;
    }
    return true;
  }
  function segDist(pt, a, b) {
    var dx = b[0] - a[0], dy = b[1] - a[1];
    var t = Math.max(0, Math.min(1, ((pt[0] - a[0]) * dx + (pt[1] - a[1]) * dy) / (dx * dx + dy * dy || 1)));
    return Math.hypot(pt[0] - a[0] - t * dx, pt[1] - a[1] - t * dy);
  }
  // How far a circle reaches into a polygon (corners in clockwise screen order).
  function circleDepth(c, r, poly) {
    if (inside(c, poly)) return r;
    var d = Infinity;
    for (var i = 0; i < poly.length; i++) d = Math.min(d, segDist(c, poly[i], poly[(i + 1) % poly.length]));
    return r - d;
  }
  function label(el) { return (el.textContent || '').trim(); }
  var findings = [], measured = [], missing = [];
  var ctx = document.createElement('canvas').getContext('2d');
  function installed(font) {
    ctx.font = '40px monospace';
    var mono = ctx.measureText('mmmmiiiiWWWW').width;
    ctx.font = '40px "' + font + '", monospace';
    return ctx.measureText('mmmmiiiiWWWW').width !== mono;
  }
  [null].concat(fonts).forEach(function (font) {
    if (font && !installed(font)) { missing.push(font); return; }
    style.textContent = font ? 'svg, svg * { font-family: "' + font + '" !important; }' : '';
    var name = font || 'page';
    var stats = { font: name, svgs: 0, texts: 0, nodes: 0 };
    document.querySelectorAll('svg').forEach(function (svg) {
      stats.svgs++;
      var titleEl = svg.querySelector(':scope > title');
      var title = titleEl ? titleEl.textContent : '(untitled svg)';
      var box = svg.getBoundingClientRect();
      var texts = Array.prototype.filter.call(svg.querySelectorAll('text'), function (t) { return label(t) !== '' && t.getBBox().width > 0; });
      var quads = texts.map(corners);
      stats.texts += texts.length;
      texts.forEach(function (t, i) {
        var over = 0;
        quads[i].forEach(function (p) {
          over = Math.max(over, box.left - p[0], p[0] - box.right, box.top - p[1], p[1] - box.bottom);
        });
        if (over > EPS) findings.push({ kind: 'outside', font: name, svg: title, text: label(t), by: over });
      });
      for (var i = 0; i < texts.length; i++) {
        for (var j = i + 1; j < texts.length; j++) {
          var d = depth(quads[i], quads[j]);
          if (d > EPS) findings.push({ kind: 'overlap', font: name, svg: title, text: label(texts[i]), other: label(texts[j]), by: d });
        }
      }
      svg.querySelectorAll('g.node').forEach(function (g) {
        stats.nodes++;
        var shape = g.querySelector('circle, rect');
        if (!shape) return;
        var nodeText = label(g);
        var circle = null, poly = null;
        if (shape.tagName === 'circle') {
          var m = shape.getScreenCTM();
          var cx = shape.cx.baseVal.value, cy = shape.cy.baseVal.value;
          circle = { c: [m.a * cx + m.c * cy + m.e, m.b * cx + m.d * cy + m.f], r: shape.r.baseVal.value * Math.sqrt(Math.abs(m.a * m.d - m.b * m.c)) };
        } else poly = corners(shape);
        texts.forEach(function (t, k) {
          if (g.contains(t)) return;
          var d = circle ? circleDepth(circle.c, circle.r, quads[k]) : depth(poly, quads[k]);
          if (d > EPS) findings.push({ kind: 'on-node', font: name, svg: title, text: label(t), other: nodeText, by: d });
        });
      });
    });
    measured.push(stats);
  });
  style.textContent = '';
  var result = { findings: findings, measured: measured, missingFonts: missing, pageHeight: Math.ceil(document.documentElement.scrollHeight) };
  var out = document.createElement('pre');
  out.id = 'layout-check-result';
  out.textContent = btoa(unescape(encodeURIComponent(JSON.stringify(result))));
  document.body.appendChild(out);
})();
`;

function chromiumArgs(profile: string, width: number, height: number): string[] {
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--hide-scrollbars',
    `--user-data-dir=${profile}`,
    `--window-size=${width},${height}`,
  ];
}

/** Opens `html` in headless Chromium and measures its SVG texts; optionally writes a screenshot. */
export async function checkLayout(html: string, o: LayoutCheckOptions = {}): Promise<LayoutReport> {
  const chromium = o.chromium ?? findChromium();
  const width = o.width ?? 1200;
  const dir = mkdtempSync(join(tmpdir(), 'report-layout-'));
  try {
    const script = `<script>${MEASURE.replace('__FONTS__', () => JSON.stringify(o.fonts ?? []))}</script>`;
    const page = join(dir, 'page.html');
    writeFileSync(page, html.includes('</body>') ? html.replace(/<\/body>(?![\s\S]*<\/body>)/, () => `${script}</body>`) : `${html}${script}`);
    const { stdout } = await run(chromium, [...chromiumArgs(join(dir, 'profile'), width, 900), '--dump-dom', `file://${page}`], {
      maxBuffer: 256 * 1024 * 1024,
    });
    const encoded = /<pre id="layout-check-result">([A-Za-z0-9+/=]*)<\/pre>/.exec(stdout)?.[1];
    if (!encoded) throw new Error(`the layout check found no result in the DOM Chromium printed (${stdout.length} characters); did the page's script run?`);
    const report = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8')) as LayoutReport;
    if (o.screenshot) {
      // The page without the measuring script, in a window as tall as the page.
      const plain = join(dir, 'plain.html');
      writeFileSync(plain, html);
      await run(
        chromium,
        [...chromiumArgs(join(dir, 'profile-shot'), width, Math.max(600, report.pageHeight)), `--screenshot=${o.screenshot}`, `file://${plain}`],
        {
          maxBuffer: 64 * 1024 * 1024,
        },
      );
    }
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One line per finding, for assertion messages. */
export function describeFindings(findings: LayoutFinding[]): string {
  return findings
    .map((f) => `${f.kind} [${f.font}] in "${f.svg}": "${f.text}"${f.other !== undefined ? ` / "${f.other}"` : ''} by ${f.by.toFixed(1)} px`)
    .join('\n');
}
