// Minimal SVG charts for the run report: line charts (linear or log y axis) and a
// heat map. Plain strings, no dependencies, so report.html opens without a network.

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A categorical palette that stays distinguishable for up to ~14 series. */
export const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2',
  '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#ad494a', '#637939', '#7b4173',
];

export interface Series {
  name: string;
  points: [number, number][];
  color?: string;
  dashed?: boolean;
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
}

function niceTicks(lo: number, hi: number, count = 5, integer = false): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
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

/** A line chart with axes, ticks and a legend on the right. */
export function lineChart(series: Series[], o: LineChartOptions): string {
  const width = o.width ?? 640;
  const height = o.height ?? 300;
  const legendWidth = 150;
  const m = { left: 58, right: legendWidth + 10, top: 28, bottom: 42 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
  if (all.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="60" role="img"><text x="10" y="35" font-size="13" fill="#666">${escapeXml(o.title)}: no data</text></svg>`;
  }
  let x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  if (x1 === x0) x1 = x0 + 1;
  const ys = all.map((p) => p[1]);
  const tr = (y: number) => (o.logY ? Math.log10(y) : y);
  let y0 = o.yMin !== undefined ? tr(o.yMin) : Math.min(...ys.map(tr));
  let y1 = o.yMax !== undefined ? tr(o.yMax) : Math.max(...ys.map(tr));
  for (const h of o.hlines ?? []) {
    if (!o.logY || h.y > 0) {
      y0 = Math.min(y0, tr(h.y));
      y1 = Math.max(y1, tr(h.y));
    }
  }
  if (o.logY) {
    y0 = Math.floor(y0);
    y1 = Math.ceil(y1);
  }
  if (y1 === y0) {
    y1 = y0 + 1;
    if (!o.logY) y0 -= 1;
  }
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.top + ph - ((tr(y) - y0) / (y1 - y0)) * ph;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif">`);
  parts.push(`<title>${escapeXml(o.title)}</title>`);
  parts.push(`<text x="${m.left}" y="18" font-size="14" font-weight="bold">${escapeXml(o.title)}</text>`);
  const yTicks = o.logY ? Array.from({ length: y1 - y0 + 1 }, (_, i) => 10 ** (y0 + i)) : niceTicks(y0, y1);
  for (const t of yTicks) {
    const y = sy(t);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.left - 6}" y="${(y + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#444">${fmtTick(t, !!o.logY)}</text>`);
  }
  // Epochs are whole numbers: no ticks between them.
  const integerX = all.every(([x]) => Number.isInteger(x));
  for (const t of niceTicks(x0, x1, 8, integerX)) {
    const x = sx(t);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#444"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${m.top + ph + 16}" font-size="11" text-anchor="middle" fill="#444">${fmtTick(t, false)}</text>`);
  }
  parts.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${m.left + pw / 2}" y="${height - 6}" font-size="12" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" font-size="12" text-anchor="middle">${escapeXml(o.yLabel)}</text>`);
  for (const h of o.hlines ?? []) {
    if (o.logY && h.y <= 0) continue;
    const y = sy(h.y);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#c00" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${m.left + pw - 4}" y="${(y - 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#c00">${escapeXml(h.label)}</text>`);
  }
  for (const v of o.vlines ?? []) {
    if (v.x < x0 || v.x > x1) continue;
    const x = sx(v.x);
    parts.push(`<line x1="${x.toFixed(1)}" x2="${x.toFixed(1)}" y1="${m.top}" y2="${m.top + ph}" stroke="#888" stroke-dasharray="3 3"/>`);
    parts.push(`<text x="${(x + 3).toFixed(1)}" y="${m.top + 12}" font-size="11" fill="#666">${escapeXml(v.label)}</text>`);
  }
  series.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
    if (pts.length === 0) return;
    const d = pts.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ');
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6"${s.dashed ? ' stroke-dasharray="5 3"' : ''}><title>${escapeXml(s.name)}</title></path>`);
    if (pts.length === 1) parts.push(`<circle cx="${sx(pts[0][0]).toFixed(1)}" cy="${sy(pts[0][1]).toFixed(1)}" r="3" fill="${color}"/>`);
    const ly = m.top + 10 + i * 15;
    if (ly < height - 10) {
      parts.push(`<line x1="${width - legendWidth}" x2="${width - legendWidth + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
      parts.push(`<text x="${width - legendWidth + 23}" y="${ly}" font-size="11">${escapeXml(s.name)}</text>`);
    }
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** A heat map of values in [0, 1]; null cells (pruned) are drawn hatched grey. */
export function heatMap(
  values: (number | null)[][],
  o: { title: string; rowLabels: string[]; colLabels: string[]; cellSize?: number; marks?: boolean[][] },
): string {
  const cs = o.cellSize ?? 22;
  const left = 70;
  const top = 110;
  const width = Math.max(left + o.colLabels.length * cs + 90, 12 + 7.5 * o.title.length);
  const height = top + o.rowLabels.length * cs + 20;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif">`);
  parts.push(`<title>${escapeXml(o.title)}</title>`);
  parts.push(`<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#f2f2f2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#bbb" stroke-width="2"/></pattern></defs>`);
  parts.push(`<text x="4" y="16" font-size="14" font-weight="bold">${escapeXml(o.title)}</text>`);
  o.colLabels.forEach((c, j) => {
    const x = left + j * cs + cs / 2;
    parts.push(`<text transform="translate(${x + 4} ${top - 6}) rotate(-60)" font-size="11">${escapeXml(c)}</text>`);
  });
  o.rowLabels.forEach((r, i) => {
    parts.push(`<text x="${left - 6}" y="${top + i * cs + cs / 2 + 4}" font-size="11" text-anchor="end">${escapeXml(r)}</text>`);
    values[i]?.forEach((v, j) => {
      const x = left + j * cs;
      const y = top + i * cs;
      const fill = v === null ? 'url(#hatch)' : `rgb(${Math.round(255 - 225 * v)},${Math.round(255 - 150 * v)},${Math.round(255 - 40 * v)})`;
      const label = v === null ? 'pruned' : v.toFixed(3);
      parts.push(`<rect x="${x}" y="${y}" width="${cs}" height="${cs}" fill="${fill}" stroke="#fff"><title>${escapeXml(`${r} ${o.colLabels[j]}: ${label}`)}</title></rect>`);
      if (o.marks?.[i]?.[j]) parts.push(`<rect x="${x + 2}" y="${y + 2}" width="${cs - 4}" height="${cs - 4}" fill="none" stroke="#d62728" stroke-width="2"/>`);
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}
