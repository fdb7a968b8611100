// The found cell drawn as an SVG graph: the two inputs (encoder skip feature s0 and
// upsampled decoder feature s1), the intermediate nodes with their two kept incoming
// edges labelled by operation, and the output that concatenates the nodes.
//
// The layout is computed: every edge is a curve bent just as far as it takes to keep
// clear of the nodes it passes; each operation label sits on its edge, on a white
// background, at the first point along the edge where it overlaps no node, no other
// label and no annotation. When some label finds no such point, the columns and rows
// are spread further apart and the layout is done again. Edges are drawn first, then
// the nodes, then the labels, so nothing is hidden under a node.
import type { GenotypeCell } from '../model/api.ts';
import { type Box, HALO, boxesOverlap, escapeXml, textBox, textWidth, titleText } from './charts.ts';

const OP_COLORS: Record<string, string> = {
  skip_connect: '#7f7f7f',
  conv_3x3: '#1f77b4',
  conv_5x5: '#17becf',
  dil_conv_3x3: '#2ca02c',
  dil_conv_5x5: '#bcbd22',
  sep_conv_3x3: '#9467bd',
  sep_conv_5x5: '#e377c2',
  avg_pool_3x3: '#ff7f0e',
  max_pool_3x3: '#d62728',
  none: '#cccccc',
};

type Pt = [number, number];

interface Shape {
  center: Pt;
  /** Circle radius, or half width and half height of a rectangle. */
  r?: number;
  half?: Pt;
}

const R = 22;
const LABEL_SIZE = 11;
const LABEL_H = 16;
const NOTE_SIZE = 11;
const CLEARANCE = 8;

function shapeBox(s: Shape, pad = 0): Box {
  const [hx, hy] = s.half ?? [s.r!, s.r!];
  return { x: s.center[0] - hx - pad, y: s.center[1] - hy - pad, w: 2 * (hx + pad), h: 2 * (hy + pad) };
}

/** Distance from `p` to the outline of `s` (negative inside). */
function distanceTo(s: Shape, p: Pt): number {
  const dx = p[0] - s.center[0];
  const dy = p[1] - s.center[1];
  if (s.r !== undefined) return Math.hypot(dx, dy) - s.r;
  const [hx, hy] = s.half!;
  const ox = Math.abs(dx) - hx;
  const oy = Math.abs(dy) - hy;
  return ox > 0 || oy > 0 ? Math.hypot(Math.max(ox, 0), Math.max(oy, 0)) : Math.max(ox, oy);
}

/** Where the ray from the centre of `s` towards `toward` leaves its outline. */
function boundaryPoint(s: Shape, toward: Pt): Pt {
  const dx = toward[0] - s.center[0];
  const dy = toward[1] - s.center[1];
  const len = Math.hypot(dx, dy) || 1;
  const ux = dx / len;
  const uy = dy / len;
  let t: number;
  if (s.r !== undefined) t = s.r;
  else t = Math.min(ux ? s.half![0] / Math.abs(ux) : Infinity, uy ? s.half![1] / Math.abs(uy) : Infinity);
  return [s.center[0] + ux * t, s.center[1] + uy * t];
}

function bezier(a: Pt, c: Pt, b: Pt, t: number): Pt {
  const u = 1 - t;
  return [u * u * a[0] + 2 * u * t * c[0] + t * t * b[0], u * u * a[1] + 2 * u * t * c[1] + t * t * b[1]];
}

interface Route {
  start: Pt;
  control: Pt;
  end: Pt;
}

/**
 * The curve from shape `a` to shape `b` that keeps clear of `others`: a quadratic curve
 * whose middle lies `bend` off the straight line, the smallest bend that clears every
 * other shape (trying the preferred side first at each size), else the clearest one.
 */
function route(a: Shape, b: Shape, others: Shape[], preferredSide: 1 | -1): Route {
  const [ax, ay] = a.center;
  const [bx, by] = b.center;
  const len = Math.hypot(bx - ax, by - ay) || 1;
  const n: Pt = [-(by - ay) / len, (bx - ax) / len];
  const mid: Pt = [(ax + bx) / 2, (ay + by) / 2];
  let best: { r: Route; clearance: number } | undefined;
  for (let k = 0; k <= 14; k++) {
    for (const side of k === 0 ? [1] : [preferredSide, -preferredSide]) {
      const bend = side * k * 22;
      // The curve's midpoint is mid + n * bend when the control point is twice as far.
      const control: Pt = [mid[0] + 2 * n[0] * bend, mid[1] + 2 * n[1] * bend];
      const start = boundaryPoint(a, control);
      const end = boundaryPoint(b, control);
      let clearance = Infinity;
      for (let i = 0; i <= 48; i++) {
        const p = bezier(start, control, end, i / 48);
        for (const s of others) clearance = Math.min(clearance, distanceTo(s, p));
      }
      const r = { start, control, end };
      if (clearance >= CLEARANCE) return r;
      if (!best || clearance > best.clearance) best = { r, clearance };
    }
  }
  return best!.r;
}

interface Layout {
  shapes: Shape[];
  edges: { from: number; to: number; op: string; color: string; route: Route; label?: { x: number; y: number; box: Box } }[];
  outputs: Route[];
  notes: { text: string; x: number; y: number; box: Box }[];
  complete: boolean;
}

const INPUT_NOTES = ['encoder skip', 'decoder (upsampled)'];

function layout(cell: GenotypeCell, spread: number, loose: boolean): Layout {
  const nodes = cell.nodes.length;
  const widest = Math.max(60, ...cell.nodes.flat().map((e) => textWidth(e.op, LABEL_SIZE) + 10));
  const colGap = Math.max(150, widest + 2 * R + 50) * spread;
  const rowGap = 120 * (1 + (spread - 1) / 2);
  const shapes: Shape[] = [
    { center: [0, -rowGap], r: R },
    { center: [0, rowGap], r: R },
  ];
  for (let i = 0; i < nodes; i++) shapes.push({ center: [(i + 1) * colGap, (i % 2 === 0 ? -0.6 : 0.6) * rowGap], r: R });
  const output: Shape = { center: [(nodes + 1) * colGap, 0], half: [30, 22] };
  shapes.push(output);
  const outputIndex = shapes.length - 1;

  const notes = INPUT_NOTES.map((text, n) => {
    const [x, y] = shapes[n].center;
    const baseline = n === 0 ? y - R - 8 : y + R + 8 + NOTE_SIZE * 0.93;
    return { text, x, y: baseline, box: textBox(text, x, baseline, NOTE_SIZE, 'middle') };
  });

  const edges: Layout['edges'] = [];
  cell.nodes.forEach((inputs, i) => {
    inputs.forEach((e, k) => {
      const from = e.input;
      const to = 2 + i;
      if (!shapes[from] || from >= to) return;
      const others = shapes.filter((_, j) => j !== from && j !== to);
      // Edges from s0 bend upwards, from s1 downwards, between nodes alternately.
      const side = from === 0 ? -1 : from === 1 ? 1 : k === 0 ? -1 : 1;
      edges.push({ from, to, op: e.op, color: OP_COLORS[e.op] ?? '#333', route: route(shapes[from], shapes[to], others, side) });
    });
  });
  const outputs = cell.nodes.map((_, i) =>
    route(
      shapes[2 + i],
      output,
      shapes.filter((_, j) => j !== 2 + i && j !== outputIndex),
      i % 2 === 0 ? -1 : 1,
    ),
  );

  // Labels: the longest edges first (they have the most room to move along).
  const obstacles: Box[] = [...shapes.map((s) => shapeBox(s, 3)), ...notes.map((n) => n.box)];
  const order = edges.map((_, i) => i).sort((a, b) => edges[b].to - edges[b].from - (edges[a].to - edges[a].from) || a - b);
  const ts = [0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8];
  const offsets = loose ? [0, -14, 14, -26, 26] : [0];
  let complete = true;
  for (const idx of order) {
    const e = edges[idx];
    const w = textWidth(e.op, LABEL_SIZE) + 10;
    let chosen: { x: number; y: number; box: Box } | undefined;
    let first: { x: number; y: number; box: Box } | undefined;
    for (const off of offsets) {
      for (const t of ts) {
        const [px, py] = bezier(e.route.start, e.route.control, e.route.end, t);
        const box: Box = { x: px - w / 2, y: py + off - LABEL_H / 2, w, h: LABEL_H };
        first ??= { x: px, y: py + off, box };
        if (!obstacles.some((o) => boxesOverlap(box, o, 2))) {
          chosen = { x: px, y: py + off, box };
          break;
        }
      }
      if (chosen) break;
    }
    if (!chosen) complete = false;
    e.label = chosen ?? first!;
    obstacles.push(e.label.box);
  }
  return { shapes, edges, outputs, notes, complete };
}

export function cellDiagram(cell: GenotypeCell, title: string): string {
  let l = layout(cell, 1, false);
  for (let attempt = 1; !l.complete && attempt <= 6; attempt++) l = layout(cell, 1 + 0.25 * attempt, attempt >= 3);

  // Extent of everything drawn, then one translation puts it below the title.
  const boxes: Box[] = [...l.shapes.map((s) => shapeBox(s, 2)), ...l.notes.map((n) => n.box), ...l.edges.map((e) => e.label!.box)];
  for (const r of [...l.edges.map((e) => e.route), ...l.outputs]) {
    for (let i = 0; i <= 32; i++) {
      const [x, y] = bezier(r.start, r.control, r.end, i / 32);
      boxes.push({ x: x - 4, y: y - 4, w: 8, h: 8 });
    }
  }
  const minX = Math.min(...boxes.map((b) => b.x));
  const maxX = Math.max(...boxes.map((b) => b.x + b.w));
  const minY = Math.min(...boxes.map((b) => b.y));
  const maxY = Math.max(...boxes.map((b) => b.y + b.h));
  const margin = 12;
  const width = Math.ceil(Math.max(maxX - minX + 2 * margin, 360));
  const head = titleText(title, width);
  const dx = margin - minX + (width - 2 * margin - (maxX - minX)) / 2;
  const dy = Math.ceil(head.bottom) + margin - minY;
  const height = Math.ceil(maxY - minY + head.bottom + 2 * margin);
  const f = (v: number) => v.toFixed(1);
  const X = (x: number) => f(x + dx);
  const Y = (y: number) => f(y + dy);
  const path = (r: Route) => `M${X(r.start[0])},${Y(r.start[1])} Q${X(r.control[0])},${Y(r.control[1])} ${X(r.end[0])},${Y(r.end[1])}`;
  const names = ['s0 (encoder)', 's1 (decoder)', ...Array.from({ length: l.shapes.length - 3 }, (_, i) => `node ${i}`)];

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif">`,
  );
  parts.push(`<title>${escapeXml(title)}</title>`);
  parts.push(
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
  );
  parts.push(head.svg);
  for (const r of l.outputs) parts.push(`<path d="${path(r)}" stroke="#aaa" stroke-dasharray="4 3" fill="none" marker-end="url(#arrow)"/>`);
  for (const e of l.edges) {
    parts.push(
      `<path d="${path(e.route)}" fill="none" stroke="${e.color}" stroke-width="2.2" marker-end="url(#arrow)"><title>${escapeXml(`${names[e.from]} -> ${names[e.to]}: ${e.op}`)}</title></path>`,
    );
  }
  l.shapes.forEach((s, n) => {
    const [x, y] = s.center;
    if (s.half) {
      parts.push(
        `<g class="node"><rect x="${X(x - s.half[0])}" y="${Y(y - s.half[1])}" width="${2 * s.half[0]}" height="${2 * s.half[1]}" rx="6" fill="#e3f3e3" stroke="#555"/><text x="${X(x)}" y="${Y(y - 2)}" font-size="11" text-anchor="middle">concat</text><text x="${X(x)}" y="${Y(y + 12)}" font-size="11" text-anchor="middle">output</text></g>`,
      );
      return;
    }
    const input = n < 2;
    parts.push(
      `<g class="node"><circle cx="${X(x)}" cy="${Y(y)}" r="${R}" fill="${input ? '#fde9c9' : '#dbe9f6'}" stroke="#555"/><text x="${X(x)}" y="${Y(y + 4)}" font-size="12" text-anchor="middle">${input ? `s${n}` : `n${n - 2}`}</text></g>`,
    );
  });
  for (const n of l.notes)
    parts.push(`<text x="${X(n.x)}" y="${Y(n.y)}" font-size="${NOTE_SIZE}" text-anchor="middle" fill="#666" ${HALO}>${escapeXml(n.text)}</text>`);
  for (const e of l.edges) {
    const b = e.label!.box;
    parts.push(
      `<g class="op-label"><rect x="${X(b.x)}" y="${Y(b.y)}" width="${f(b.w)}" height="${b.h}" rx="3" fill="#fff" stroke="${e.color}"/><text x="${X(e.label!.x)}" y="${Y(e.label!.y + 4)}" font-size="${LABEL_SIZE}" text-anchor="middle" fill="${e.color}">${escapeXml(e.op)}</text></g>`,
    );
  }
  parts.push('</svg>');
  return parts.join('\n');
}
