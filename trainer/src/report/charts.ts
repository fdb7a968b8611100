// Minimal SVG charts for the run report: line charts (linear or log y axis) and a
// heat map. Plain strings, no dependencies, so report.html opens without a network.
//
// Layout is computed from estimated text extents (textWidth: the wider of DejaVu Sans
// and Liberation Sans/Arial per character, so the estimate holds for the fonts that
// "sans-serif" resolves to on common systems): titles wrap inside the SVG box, margins
// and the legend grow with their labels, tick counts follow the space they have, and
// reference-line labels are placed where they overlap no other label.

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A categorical palette that stays distinguishable for up to ~14 series. */
export const PALETTE = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#ad494a',
  '#637939',
  '#7b4173',
];

// Advance widths (1/1000 em) of the printable ASCII characters 32..126: per character
// the larger of DejaVu Sans and Liberation Sans (metric-compatible with Arial).
const WIDTHS_REGULAR = [
  318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838,
  556, 1015, 684, 686, 722, 770, 667, 611, 778, 752, 295, 500, 667, 557, 863, 748, 787, 667, 787, 722, 667, 611, 732, 684, 989, 685, 667, 685, 390, 337, 390,
  838, 556, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337,
  636, 838,
];
const WIDTHS_BOLD = [
  348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696, 696, 696, 696, 696, 696, 696, 696, 400, 400, 838, 838, 838,
  611, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 556, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457, 365, 457,
  838, 556, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343, 665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712, 365,
  712, 838,
];
/** Ascent and descent of a text line as a fraction of the font size (DejaVu Sans, the taller one). */
const ASCENT = 0.93;
const DESCENT = 0.24;

/** Estimated rendered width in px of `text` at `size` px in a sans-serif font (an upper bound for common fonts). */
export function textWidth(text: string, size: number, bold = false): number {
  const table = bold ? WIDTHS_BOLD : WIDTHS_REGULAR;
  let w = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    w += c >= 32 && c <= 126 ? table[c - 32] : 1000;
  }
  return (w * size) / 1000;
}

/** Splits `text` into lines no wider than `maxWidth`, at spaces, breaking words that are wider on their own. */
export function wrapText(text: string, maxWidth: number, size: number, bold = false): string[] {
  const lines: string[] = [];
  let line = '';
  const push = (word: string) => {
    const candidate = line ? `${line} ${word}` : word;
    if (textWidth(candidate, size, bold) <= maxWidth) {
      line = candidate;
      return;
    }
    if (line) lines.push(line);
    line = '';
    // A word wider than a line on its own is cut into pieces that fit.
    let piece = '';
    for (const ch of word) {
      if (piece && textWidth(piece + ch, size, bold) > maxWidth) {
        lines.push(piece);
        piece = '';
      }
      piece += ch;
    }
    line = piece;
  };
  for (const word of text.split(/\s+/).filter(Boolean)) push(word);
  if (line || lines.length === 0) lines.push(line);
  return lines;
}

/** Shortens `text` with an ellipsis to at most `maxWidth`. */
export function fitText(text: string, maxWidth: number, size: number): string {
  if (textWidth(text, size) <= maxWidth) return text;
  let s = text;
  while (s.length > 1 && textWidth(`${s}…`, size) > maxWidth) s = s.slice(0, -1);
  return `${s}…`;
}

/** An axis-aligned box in SVG user units. */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** The box a text occupies: `x` is the anchor point, `y` the baseline. */
export function textBox(text: string, x: number, y: number, size: number, anchor: 'start' | 'middle' | 'end' = 'start', bold = false): Box {
  const w = textWidth(text, size, bold);
  const left = anchor === 'start' ? x : anchor === 'middle' ? x - w / 2 : x - w;
  return { x: left, y: y - ASCENT * size, w, h: (ASCENT + DESCENT) * size };
}

/** Whether two boxes overlap after growing each by `pad` on every side. */
export function boxesOverlap(a: Box, b: Box, pad = 0): boolean {
  return a.x - pad < b.x + b.w + pad && b.x - pad < a.x + a.w + pad && a.y - pad < b.y + b.h + pad && b.y - pad < a.y + a.h + pad;
}

/** Whether `inner` lies inside `outer`. */
export function boxInside(inner: Box, outer: Box): boolean {
  return inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.w <= outer.x + outer.w && inner.y + inner.h <= outer.y + outer.h;
}

const TITLE_SIZE = 14;
const TITLE_LINE = 18;

/** A bold title wrapped to `width`, at the top left of an SVG; returns the markup and the y below it. */
export function titleText(title: string, width: number, x = 8): { svg: string; bottom: number; lines: string[] } {
  const lines = wrapText(title, width - 2 * x, TITLE_SIZE, true);
  const svg = lines
    .map((l, i) => `<text x="${x}" y="${6 + TITLE_SIZE + i * TITLE_LINE}" font-size="${TITLE_SIZE}" font-weight="bold">${escapeXml(l)}</text>`)
    .join('\n');
  return { svg, bottom: 6 + TITLE_SIZE + (lines.length - 1) * TITLE_LINE + DESCENT * TITLE_SIZE, lines };
}

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
  dashed?: boolean;
  /** Marks the last point with a cross (the series is not continued after it, see LineChartOptions.endMarkLabel). */
  endMark?: boolean;
  /** Breaks the line where consecutive points are further apart in x than this (epochs without a value). */
  gapX?: number;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  width?: number;
  height?: number;
  /** Horizontal reference lines, e.g. a threshold. */
  hlines?: { y: number; label: string }[];
  /** Vertical reference lines, e.g. the epoch architecture updates start. */
  vlines?: { x: number; label: string }[];
  yMin?: number;
  yMax?: number;
  /** The x range to show at least (e.g. all epochs of a phase, also where a series has ended). */
  xMin?: number;
  xMax?: number;
  /** Legend entry for the crosses of series with endMark. */
  endMarkLabel?: string;
}

function niceTicks(lo: number, hi: number, count = 5, integer = false): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(step0));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? 10 * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function fmtTick(v: number, log: boolean): string {
  if (log) return `1e${Math.round(Math.log10(v))}`;
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1000 || a < 0.01 ? v.toExponential(0) : String(Number(v.toPrecision(3)));
}

const TICK = 11;
const AXIS_LABEL = 12;
const LEGEND = 11;
const LEGEND_ROW = 15;
const REF = 11;
/** A white outline behind a label drawn over lines, so that it stays readable. */
export const HALO = 'paint-order="stroke" stroke="#fff" stroke-width="3" stroke-linejoin="round"';

/** Picks the first candidate box that lies inside `area` and overlaps none of `taken`; else the first inside, else the first. */
function placeLabel<T extends { box: Box }>(candidates: T[], taken: Box[], area: Box): T {
  const inside = candidates.filter((c) => boxInside(c.box, area));
  return inside.find((c) => !taken.some((t) => boxesOverlap(c.box, t, 1))) ?? inside[0] ?? candidates[0];
}

/** A line chart with axes, ticks and a legend on the right. */
export function lineChart(series: Series[], o: LineChartOptions): string {
  const width0 = o.width ?? 640;
  const height0 = o.height ?? 300;
  const drawable = (s: Series) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
  const all = series.flatMap(drawable);
  if (all.length === 0) {
    const lines = wrapText(`${o.title}: no data`, width0 - 20, 13);
    const h = 20 + lines.length * 17;
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${width0}" height="${h}" viewBox="0 0 ${width0} ${h}" role="img" font-family="sans-serif"><title>${escapeXml(o.title)}</title>${lines
      .map((l, i) => `<text x="10" y="${22 + i * 17}" font-size="13" fill="#666">${escapeXml(l)}</text>`)
      .join('')}</svg>`;
  }

  // x range: the data, widened to xMin/xMax.
  const x0 = Math.min(...all.map((p) => p[0]), o.xMin ?? Infinity);
  let x1 = Math.max(...all.map((p) => p[0]), o.xMax ?? -Infinity);
  if (x1 === x0) x1 = x0 + 1;

  // y range with headroom above the highest curve (and below the lowest without yMin).
  const tr = (y: number) => (o.logY ? Math.log10(y) : y);
  const ys = all.map((p) => tr(p[1]));
  let y0 = o.yMin !== undefined && (!o.logY || o.yMin > 0) ? tr(o.yMin) : Math.min(...ys);
  let y1 = o.yMax !== undefined && (!o.logY || o.yMax > 0) ? tr(o.yMax) : Math.max(...ys);
  for (const h of o.hlines ?? []) {
    if (!o.logY || h.y > 0) {
      y0 = Math.min(y0, tr(h.y));
      y1 = Math.max(y1, tr(h.y));
    }
  }
  if (o.logY) {
    const pad = Math.max(0.1, 0.05 * (y1 - y0));
    y0 = Math.floor(o.yMin !== undefined ? y0 : y0 - pad);
    y1 = Math.ceil(o.yMax !== undefined ? y1 : y1 + pad);
    if (y1 === y0) y1 = y0 + 1;
  } else {
    if (y1 === y0) {
      y1 = y0 + 1;
      if (o.yMin === undefined) y0 -= 1;
    }
    const range = y1 - y0;
    if (o.yMax === undefined) y1 += 0.08 * range;
    if (o.yMin === undefined) y0 -= 0.04 * range;
  }

  // Legend: drawn series, then the end-mark entry; its width follows the longest name.
  const legendEntries: { name: string; color: string; dashed?: boolean; cross?: boolean }[] = [];
  series.forEach((s, i) => {
    if (drawable(s).length) legendEntries.push({ name: s.name, color: s.color ?? PALETTE[i % PALETTE.length], dashed: s.dashed });
  });
  if (o.endMarkLabel && series.some((s) => s.endMark && drawable(s).length)) legendEntries.push({ name: o.endMarkLabel, color: '#333', cross: true });
  const legendText = Math.min(240, Math.max(0, ...legendEntries.map((e) => textWidth(e.name, LEGEND))));
  const legendWidth = 23 + legendText + 8;

  // Vertical layout: title, plot (tall enough for the legend and the y label), x ticks and label.
  const title = titleText(o.title, Math.max(width0, 320));
  const top = Math.ceil(title.bottom + 12);
  const bottom = 44;
  const yLabelWidth = textWidth(o.yLabel, AXIS_LABEL);
  const ph = Math.max(height0 - top - bottom, legendEntries.length * LEGEND_ROW + 4, yLabelWidth + 8, 120);
  const height = top + ph + bottom;

  // y ticks: as many as fit; log axes label whole decades.
  let yTicks: number[];
  if (o.logY) {
    const decades = y1 - y0;
    const step = Math.max(1, Math.ceil(decades / Math.max(1, Math.floor(ph / 22))));
    yTicks = [];
    for (let d = y0; d <= y1; d += step) yTicks.push(10 ** d);
  } else {
    yTicks = niceTicks(y0, y1, Math.max(2, Math.min(6, Math.floor(ph / 40))));
  }
  const yTickLabels = yTicks.map((t) => fmtTick(t, !!o.logY));
  const left = Math.ceil(8 + AXIS_LABEL * (ASCENT + DESCENT) + 8 + Math.max(...yTickLabels.map((l) => textWidth(l, TICK))) + 6);

  // x ticks: whole numbers only when every x is one (epochs); as many as fit side by side.
  const integerX = all.every(([x]) => Number.isInteger(x));
  const plotWidthFor = (gap: number) => Math.max(width0 - left - gap - legendWidth, 200);
  let xTicks: number[] = [];
  let xTickWidth = 0;
  for (let count = 10; count >= 1; count--) {
    xTicks = niceTicks(x0, x1, count, integerX);
    xTickWidth = Math.max(...xTicks.map((t) => textWidth(fmtTick(t, false), TICK)));
    const pw = plotWidthFor(Math.max(16, xTickWidth / 2 + 8));
    const spacing = xTicks.length > 1 ? ((xTicks[1] - xTicks[0]) / (x1 - x0)) * pw : Infinity;
    if (spacing >= xTickWidth + 8) break;
  }
  const gap = Math.max(16, xTickWidth / 2 + 8);
  const pw = plotWidthFor(gap);
  const width = Math.ceil(left + pw + gap + legendWidth);
  const legendX = left + pw + gap;

  const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => top + ph - ((tr(y) - y0) / (y1 - y0)) * ph;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif">`,
  );
  parts.push(`<title>${escapeXml(o.title)}</title>`);
  parts.push(title.svg);
  yTicks.forEach((t, i) => {
    const y = sy(t);
    parts.push(`<line x1="${left}" x2="${left + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${(y + 4).toFixed(1)}" font-size="${TICK}" text-anchor="end" fill="#444">${yTickLabels[i]}</text>`);
  });
  for (const t of xTicks) {
    const x = sx(t);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${top + ph}" y2="${top + ph + 4}" stroke="#444"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${top + ph + 16}" font-size="${TICK}" text-anchor="middle" fill="#444">${fmtTick(t, false)}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  const xLabel = fitText(o.xLabel, pw, AXIS_LABEL);
  parts.push(`<text x="${left + pw / 2}" y="${height - 8}" font-size="${AXIS_LABEL}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  parts.push(
    `<text transform="translate(${8 + AXIS_LABEL * ASCENT} ${top + ph / 2}) rotate(-90)" font-size="${AXIS_LABEL}" text-anchor="middle">${escapeXml(o.yLabel)}</text>`,
  );

  // Reference lines, their labels placed inside the plot where no other label is.
  const plotArea: Box = { x: left + 1, y: top + 1, w: pw - 2, h: ph - 2 };
  const taken: Box[] = [];
  const refLabels: string[] = [];
  for (const h of o.hlines ?? []) {
    if (o.logY && h.y <= 0) continue;
    const y = sy(h.y);
    parts.push(`<line x1="${left}" x2="${left + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#c00" stroke-dasharray="6 4"/>`);
    const label = fitText(h.label, pw - 8, REF);
    const candidates = [
      { x: left + pw - 4, y: y - 4, anchor: 'end' as const },
      { x: left + pw - 4, y: y + 4 + REF * ASCENT, anchor: 'end' as const },
      { x: left + 4, y: y - 4, anchor: 'start' as const },
      { x: left + 4, y: y + 4 + REF * ASCENT, anchor: 'start' as const },
    ].map((c) => ({ ...c, box: textBox(label, c.x, c.y, REF, c.anchor) }));
    const p = placeLabel(candidates, taken, plotArea);
    taken.push(p.box);
    refLabels.push(
      `<text x="${p.x.toFixed(1)}" y="${p.y.toFixed(1)}" font-size="${REF}" text-anchor="${p.anchor}" fill="#c00" ${HALO}>${escapeXml(label)}</text>`,
    );
  }
  for (const v of o.vlines ?? []) {
    if (v.x < x0 || v.x > x1) continue;
    const x = sx(v.x);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${top}" y2="${top + ph}" stroke="#888" stroke-dasharray="3 3"/>`);
    const label = fitText(v.label, pw - 8, REF);
    const candidates: { x: number; y: number; anchor: 'start' | 'end'; box: Box }[] = [];
    for (let row = 0; top + 4 + REF * ASCENT + row * (REF + 3) < top + ph; row++) {
      const y = top + 4 + REF * ASCENT + row * (REF + 3);
      for (const [lx, anchor] of [
        [x + 3, 'start'],
        [x - 3, 'end'],
      ] as const) {
        candidates.push({ x: lx, y, anchor, box: textBox(label, lx, y, REF, anchor) });
      }
    }
    const p = placeLabel(candidates, taken, plotArea);
    taken.push(p.box);
    refLabels.push(
      `<text x="${p.x.toFixed(1)}" y="${p.y.toFixed(1)}" font-size="${REF}" text-anchor="${p.anchor}" fill="#555" ${HALO}>${escapeXml(label)}</text>`,
    );
  }

  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = drawable(s);
    if (pts.length === 0) return;
    const breaks = (k: number) => k === 0 || (s.gapX !== undefined && pts[k][0] - pts[k - 1][0] > s.gapX);
    const d = pts.map(([x, y], k) => `${breaks(k) ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    parts.push(
      `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 3"' : ''}><title>${escapeXml(s.name)}</title></path>`,
    );
    // A point with no neighbour on its line (a one-point series, or one between two breaks) is a dot.
    pts.forEach(([x, y], k) => {
      const alone = breaks(k) && (k === pts.length - 1 || breaks(k + 1));
      if (alone && !(s.endMark && k === pts.length - 1)) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
    });
    if (s.endMark) {
      const [ex, ey] = pts.at(-1)!;
      parts.push(cross(sx(ex), sy(ey), color, `${s.name}: last tracked at ${ex}`));
    }
  });
  parts.push(...refLabels);
  legendEntries.forEach((e, i) => {
    const ly = top + 10 + i * LEGEND_ROW;
    if (e.cross) parts.push(cross(legendX + 9, ly - 4, e.color));
    else
      parts.push(
        `<line x1="${legendX}" x2="${legendX + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${e.color}" stroke-width="2"${e.dashed ? ' stroke-dasharray="5 3"' : ''}/>`,
      );
    parts.push(`<text x="${legendX + 23}" y="${ly}" font-size="${LEGEND}">${escapeXml(fitText(e.name, legendText, LEGEND))}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function cross(x: number, y: number, color: string, title?: string): string {
  const r = 4;
  return `<path d="M${(x - r).toFixed(1)},${(y - r).toFixed(1)} L${(x + r).toFixed(1)},${(y + r).toFixed(1)} M${(x - r).toFixed(1)},${(y + r).toFixed(1)} L${(x + r).toFixed(1)},${(y - r).toFixed(1)}" stroke="${color}" stroke-width="2" fill="none">${title ? `<title>${escapeXml(title)}</title>` : ''}</path>`;
}

/** A heat map of values in [0, 1]; null cells (pruned) are drawn hatched grey. */
export function heatMap(
  values: (number | null)[][],
  o: { title: string; subtitle?: string; rowLabels: string[]; colLabels: string[]; cellSize?: number; marks?: boolean[][]; width?: number },
): string {
  const cs = o.cellSize ?? 22;
  const size = 11;
  const left = Math.ceil(12 + Math.max(0, ...o.rowLabels.map((r) => textWidth(r, size))));
  // Column labels run up and to the right at 60 degrees from their column.
  const sin = Math.sin(Math.PI / 3);
  const cos = Math.cos(Math.PI / 3);
  const colWidths = o.colLabels.map((c) => textWidth(c, size));
  const gridRight = left + o.colLabels.length * cs;
  const labelRight = Math.max(gridRight, ...colWidths.map((w, j) => left + j * cs + cs / 2 + 4 + w * cos + size * sin));
  const width = Math.ceil(Math.max(o.width ?? 0, labelRight + 12, 360));
  const title = titleText(o.title, width);
  const subtitle = o.subtitle ? wrapText(o.subtitle, width - 16, size) : [];
  const subTop = title.bottom + 6;
  const subBottom = subTop + subtitle.length * 15;
  const top = Math.ceil(subBottom + 10 + Math.max(0, ...colWidths) * sin + 10);
  const height = top + o.rowLabels.length * cs + 12;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif">`,
  );
  parts.push(`<title>${escapeXml(o.title)}</title>`);
  parts.push(
    `<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f2f2f2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern></defs>`,
  );
  parts.push(title.svg);
  for (const [i, l] of subtitle.entries()) {
    parts.push(`<text x="8" y="${(subTop + size * ASCENT + i * 15).toFixed(1)}" font-size="${size}" fill="#555">${escapeXml(l)}</text>`);
  }
  o.colLabels.forEach((c, j) => {
    const x = left + j * cs + cs / 2;
    parts.push(`<text transform="translate(${x + 4} ${top - 6}) rotate(-60)" font-size="${size}">${escapeXml(c)}</text>`);
  });
  o.rowLabels.forEach((r, i) => {
    parts.push(`<text x="${left - 6}" y="${top + i * cs + cs / 2 + 4}" font-size="${size}" text-anchor="end">${escapeXml(r)}</text>`);
    values[i]?.forEach((v, j) => {
      const x = left + j * cs;
      const y = top + i * cs;
      const fill = v === null ? 'url(#hatch)' : `rgb(${Math.round(255 - 225 * v)},${Math.round(255 - 150 * v)},${Math.round(255 - 40 * v)})`;
      const label = v === null ? 'pruned' : v.toFixed(3);
      parts.push(
        `<rect x="${x}" y="${y}" width="${cs}" height="${cs}" fill="${fill}" stroke="#fff"><title>${escapeXml(`${r} ${o.colLabels[j]}: ${label}`)}</title></rect>`,
      );
      if (o.marks?.[i]?.[j]) parts.push(`<rect x="${x + 2}" y="${y + 2}" width="${cs - 4}" height="${cs - 4}" fill="none" stroke="#d62728" stroke-width="2"/>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}
