// The found cell drawn as an SVG graph: the two inputs (encoder skip feature s0 and
// upsampled decoder feature s1), the intermediate nodes with their two kept incoming
// edges labelled by operation, and the output that concatenates the nodes.
import type { GenotypeCell } from '../model/api.ts';
import { escapeXml } from './charts.ts';

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

export function cellDiagram(cell: GenotypeCell, title: string): string {
  const nodes = cell.nodes.length;
  const width = 300 + nodes * 190;
  const height = 380;
  const pos: [number, number][] = [
    [60, 70], // s0
    [60, height - 70], // s1
  ];
  for (let i = 0; i < nodes; i++) pos.push([230 + i * 190, height / 2 + (i % 2 === 0 ? -75 : 75)]);
  const out: [number, number] = [width - 50, height / 2];
  const names = ['s0 (encoder)', 's1 (decoder)', ...Array.from({ length: nodes }, (_, i) => `node ${i}`)];
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" font-family="sans-serif">`);
  parts.push(`<title>${escapeXml(title)}</title>`);
  parts.push('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>');
  parts.push(`<text x="8" y="18" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  const labels: string[] = [];
  cell.nodes.forEach((edges, i) => {
    const [tx, ty] = pos[2 + i];
    edges.forEach((e, k) => {
      const from = pos[e.input];
      if (!from) return;
      const [fx, fy] = from;
      const color = OP_COLORS[e.op] ?? '#333';
      // Edges from s0 arc over the nodes and edges from s1 under them, the longer the
      // higher, so long edges do not run through the nodes in between.
      const span = Math.max(0, i + 1 - e.input);
      const sign = e.input === 0 ? -1 : e.input === 1 ? 1 : k === 0 ? -1 : 1;
      const bend = sign * (10 + 14 * span);
      const mx = (fx + tx) / 2;
      const my = (fy + ty) / 2 + bend;
      const dx = tx - fx;
      const dy = ty - fy;
      const len = Math.hypot(dx, dy) || 1;
      const ex = tx - (dx / len) * 26;
      const ey = ty - (dy / len) * 26;
      const sx = fx + (dx / len) * 26;
      const sy = fy + (dy / len) * 26;
      parts.push(`<path d="M${sx.toFixed(1)},${sy.toFixed(1)} Q${mx.toFixed(1)},${(my + bend).toFixed(1)} ${ex.toFixed(1)},${ey.toFixed(1)}" fill="none" stroke="${color}" stroke-width="2.2" marker-end="url(#arrow)"><title>${escapeXml(`${names[e.input]} -> node ${i}: ${e.op}`)}</title></path>`);
      const lw = e.op.length * 6.4 + 8;
      labels.push(`<rect x="${(mx - lw / 2).toFixed(1)}" y="${(my - 9).toFixed(1)}" width="${lw.toFixed(1)}" height="16" rx="3" fill="#fff" fill-opacity="0.9" stroke="${color}"/>`);
      labels.push(`<text x="${mx.toFixed(1)}" y="${(my + 3).toFixed(1)}" font-size="11" text-anchor="middle" fill="${color}">${escapeXml(e.op)}</text>`);
    });
    parts.push(`<path d="M${tx + 24},${ty} L${out[0] - 30},${out[1]}" stroke="#aaa" stroke-dasharray="4 3" fill="none" marker-end="url(#arrow)"/>`);
  });
  parts.push(...labels);
  pos.forEach(([x, y], n) => {
    const input = n < 2;
    parts.push(`<circle cx="${x}" cy="${y}" r="24" fill="${input ? '#fde9c9' : '#dbe9f6'}" stroke="#555"/>`);
    parts.push(`<text x="${x}" y="${y + 4}" font-size="12" text-anchor="middle">${input ? `s${n}` : `n${n - 2}`}</text>`);
    if (input) parts.push(`<text x="${x}" y="${y + (n === 0 ? -32 : 42)}" font-size="11" text-anchor="middle" fill="#666">${n === 0 ? 'encoder skip' : 'decoder (upsampled)'}</text>`);
  });
  parts.push(`<rect x="${out[0] - 30}" y="${out[1] - 22}" width="60" height="44" rx="6" fill="#e3f3e3" stroke="#555"/>`);
  parts.push(`<text x="${out[0]}" y="${out[1] - 2}" font-size="11" text-anchor="middle">concat</text>`);
  parts.push(`<text x="${out[0]}" y="${out[1] + 12}" font-size="11" text-anchor="middle">output</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
