// A page of report figures drawn from inputs that push the layout: titles far longer
// than a figure is wide, long series and operation names, many series, a log axis over
// many decades, reference lines close together, and cell diagrams of every shape (all
// nodes fed by both inputs, a chain, eight nodes, long operation names). The browser
// layout check runs on it beside the report itself.
import type { GenotypeCell } from '../../src/model/api.ts';
import { cellDiagram } from '../../src/report/cell-diagram.ts';
import { type Series, heatMap, lineChart } from '../../src/report/charts.ts';

const LONG_TITLE =
  'cell 3 of the search named cardiac-left-ventricle-segmentation-with-a-long-name: JS divergence per edge between consecutive epochs, log scale, with the stability threshold and the epoch architecture updates start';

const OPS = ['sep_conv_3x3', 'dil_conv_5x5', 'max_pool_3x3', 'skip_connect', 'conv_5x5', 'avg_pool_3x3', 'dil_conv_3x3', 'sep_conv_5x5', 'conv_3x3'];

function cell(nodes: [number, string][][]): GenotypeCell {
  return { nodes: nodes.map((n) => n.map(([input, op]) => ({ input, op }))) } as unknown as GenotypeCell;
}

/** Genotypes of every shape the layout has to handle. */
export const GALLERY_GENOTYPES: [string, GenotypeCell][] = [
  [
    'every node from both inputs',
    cell(
      Array.from({ length: 4 }, (_, i) => [
        [0, OPS[i]],
        [1, OPS[i + 1]],
      ]),
    ),
  ],
  [
    'a chain',
    cell(
      Array.from({ length: 4 }, (_, i) => [
        [i, OPS[i]],
        [i + 1, OPS[i + 2]],
      ]),
    ),
  ],
  [
    'each node from s0 and the first node',
    cell([
      [
        [0, 'conv_3x3'],
        [1, 'conv_5x5'],
      ],
      ...Array.from(
        { length: 3 },
        (_, i) =>
          [
            [0, OPS[i]],
            [2, OPS[i + 3]],
          ] as [number, string][],
      ),
    ]),
  ],
  [
    'eight nodes with long edges',
    cell(
      Array.from(
        { length: 8 },
        (_, i) =>
          [
            [i % 2, OPS[i % 9]],
            [Math.min(i + 1, Math.max(2, i - 1)), OPS[(i + 4) % 9]],
          ] as [number, string][],
      ),
    ),
  ],
  [
    'long operation names',
    cell(
      Array.from({ length: 4 }, (_, i) => [
        [0, `operation_with_a_much_longer_name_${i}`],
        [i + 1, `another_long_operation_${i}`],
      ]),
    ),
  ],
  [
    'one node',
    cell([
      [
        [0, 'skip_connect'],
        [1, 'sep_conv_5x5'],
      ],
    ]),
  ],
];

export function figureGallery(): string {
  const figures: string[] = [];
  const edges = 14;
  const jsd: Series[] = Array.from({ length: edges }, (_, e) => ({
    name: `edge ${e}`,
    points: Array.from({ length: 30 + e }, (_, t) => [t + 1, 0.3 * Math.exp(-(t + 1) / (1 + e / 3))] as [number, number]).filter(([, y]) => y > 1e-19),
    endMark: e % 3 === 0,
  }));
  figures.push(
    lineChart(jsd, {
      title: LONG_TITLE,
      xLabel: 'epoch',
      yLabel: 'JSD (bits, log scale)',
      logY: true,
      xMin: 1,
      xMax: 60,
      hlines: [
        { y: 1e-3, label: 'stability threshold 0.001' },
        { y: 2e-3, label: 'a second reference line close to the first' },
      ],
      vlines: [
        { x: 3, label: 'architecture updates start' },
        { x: 4, label: 'a second marker one epoch later' },
        { x: 58, label: 'all edges pruned to one operation' },
      ],
      endMarkLabel: 'no longer tracked',
    }),
  );
  const importance: Series[] = OPS.concat(['none']).map((op, k) => ({
    name: k === 0 ? `${op} with a legend entry that is far too long to fit` : op,
    points: Array.from({ length: 40 }, (_, t) => [t + 1, k === 0 ? Math.min(1, 0.1 + t * 0.05) : 0.1 * Math.exp(-t / (5 + k))] as [number, number]),
  }));
  figures.push(lineChart(importance, { title: `${LONG_TITLE} (importance)`, xLabel: 'epoch', yLabel: 'softmax(alpha)', yMin: 0, width: 420, height: 200 }));
  figures.push(
    lineChart(
      [
        {
          name: 'val Dice',
          points: [
            [1, 0.5],
            [2, 1],
          ],
        },
      ],
      { title: 'x'.repeat(150), xLabel: 'epoch', yLabel: 'a y axis label longer than the plot is high', height: 120 },
    ),
  );
  figures.push(lineChart([{ name: 'empty', points: [] }], { title: `${LONG_TITLE} without data`, xLabel: 'epoch', yLabel: 'y', width: 300 }));
  figures.push(
    heatMap(
      Array.from({ length: edges }, (_, e) =>
        OPS.concat(['none', 'an_operation_with_an_unusually_long_name']).map((_, k) => (k % 3 === e % 3 ? null : ((e + k) % 7) / 7)),
      ),
      {
        title: `${LONG_TITLE} (final importance per edge)`,
        subtitle: 'hatched: pruned; red frame: in the found cell',
        rowLabels: Array.from({ length: edges }, (_, e) => `edge ${e}`),
        colLabels: OPS.concat(['none', 'an_operation_with_an_unusually_long_name']),
      },
    ),
  );
  for (const [name, g] of GALLERY_GENOTYPES) figures.push(cellDiagram(g, `${name}: ${LONG_TITLE}`));
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>report figure gallery</title>
<style>body{font-family:sans-serif;margin:24px auto;max-width:1100px;padding:0 12px}svg{display:block;margin:6px 0;max-width:100%;height:auto}</style></head>
<body>${figures.join('\n')}</body></html>
`;
}
