// Derivation of discrete cells from the architecture parameters (DARTS rule with
// PC-DARTS edge normalisation): for each node keep the two incoming edges with the
// largest beta-weighted strength of their best non-'none' operation, and on each
// edge that operation. Only an edge's active (unpruned) operations compete.
import type { Operation } from '../config/index.ts';
import type { ArchitectureParams, CellSearchSpace, Genotype, GenotypeCell, GenotypeEdge } from './api.ts';
import { edgeCount, edgeIndex } from './topology.ts';

type Snapshot = ReturnType<ArchitectureParams['snapshot']>;

export function softmax(values: readonly number[]): number[] {
  if (values.length === 0) return [];
  const m = Math.max(...values);
  const e = values.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

/** Per edge: the softmax weights of its active operations, 0 for pruned ones. */
export function operationWeights(alphas: readonly number[], active: readonly number[]): number[] {
  const w = softmax(active.map((o) => alphas[o]));
  const out = new Array<number>(alphas.length).fill(0);
  for (const [t, o] of active.entries()) out[o] = w[t];
  return out;
}

interface Candidate {
  input: number;
  op: Operation;
  strength: number;
}

export function deriveGenotype(snapshot: Snapshot, space: CellSearchSpace): Genotype {
  const ops = space.operations;
  const edges = edgeCount(space.nodes);
  if (!ops.some((o) => o !== 'none')) throw new Error("search.operations: at least one operation other than 'none' is needed to derive a genotype");
  const cells = snapshot.alphas.map((alphas, c) => {
    const betas = snapshot.betas[c];
    const active = snapshot.active[c];
    if (alphas.length !== edges || betas.length !== edges || active.length !== edges) {
      throw new Error(`architecture snapshot of cell ${c} has ${alphas.length} edges; search.nodes = ${space.nodes} needs ${edges}`);
    }
    const nodes: GenotypeEdge[][] = [];
    for (let j = 0; j < space.nodes; j++) {
      const edgeW = softmax(Array.from({ length: j + 2 }, (_, i) => betas[edgeIndex(j, i)]));
      const candidates: Candidate[] = [];
      for (let i = 0; i < j + 2; i++) {
        const e = edgeIndex(j, i);
        if (alphas[e].length !== ops.length)
          throw new Error(`alphas of cell ${c}, edge ${e} have ${alphas[e].length} entries; search.operations has ${ops.length}`);
        const w = operationWeights(alphas[e], active[e]);
        let best = -1;
        for (const o of active[e]) if (ops[o] !== 'none' && (best < 0 || w[o] > w[best])) best = o;
        if (best >= 0) {
          candidates.push({ input: i, op: ops[best], strength: edgeW[i] * w[best] });
        } else {
          // Only 'none' is left on this edge: it ranks last; if it must still be
          // kept, it gets the operation with the largest alpha among all candidates.
          let fallback = -1;
          for (let o = 0; o < ops.length; o++) if (ops[o] !== 'none' && (fallback < 0 || alphas[e][o] > alphas[e][fallback])) fallback = o;
          candidates.push({ input: i, op: ops[fallback], strength: -1 });
        }
      }
      const kept = [...candidates]
        .sort((a, b) => b.strength - a.strength || a.input - b.input)
        .slice(0, 2)
        .sort((a, b) => a.input - b.input);
      nodes.push(kept.map(({ input, op }) => ({ input, op })));
    }
    return { nodes };
  });
  return { cells };
}

/**
 * The genotype a JSON value holds: the Genotype itself ({cells: [{nodes}]}), an object
 * holding it under `genotype` (genotype.json), or the compact form of a phase result
 * ({cells: [[[input, op], ...], ...]}). Otherwise `error` says what is wrong with it.
 */
export function genotypeFromJson(raw: unknown): Genotype | { error: string } {
  const g = (raw as { genotype?: unknown } | null | undefined)?.genotype ?? raw;
  const cells = (g as { cells?: unknown } | null | undefined)?.cells;
  if (!Array.isArray(cells) || cells.length === 0) return { error: "no 'cells' list; expected the genotype written by the prune phase" };
  const out: GenotypeCell[] = [];
  for (const [ci, cell] of cells.entries()) {
    if (cell && typeof cell === 'object' && Array.isArray((cell as GenotypeCell).nodes)) out.push(cell as GenotypeCell);
    else if (Array.isArray(cell)) out.push({ nodes: cell.map((node: unknown) => (node as [number, Operation][]).map(([input, op]) => ({ input, op }))) });
    else return { error: `cells[${ci}] is neither {nodes: [...]} nor a list of nodes` };
  }
  return { cells: out };
}
