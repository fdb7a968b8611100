// Edge numbering of a cell: node j reads inputs 0 .. j+1 (0 = s0, 1 = s1, 2 + i =
// node i); its edges are numbered consecutively from j*(j+3)/2.

/** Number of edges of a cell with `nodes` intermediate nodes. */
export function edgeCount(nodes: number): number {
  return (nodes * (nodes + 3)) / 2;
}

/** Index of the first incoming edge of intermediate node `node`. */
export function edgeOffset(node: number): number {
  return (node * (node + 3)) / 2;
}

/** Edge index of input `input` of intermediate node `node` (node j has inputs 0 .. j+1). */
export function edgeIndex(node: number, input: number): number {
  return edgeOffset(node) + input;
}

/** [node, input] of every edge, in edge order. */
export function edgeList(nodes: number): { node: number; input: number }[] {
  const out: { node: number; input: number }[] = [];
  for (let j = 0; j < nodes; j++) for (let i = 0; i < j + 2; i++) out.push({ node: j, input: i });
  return out;
}
