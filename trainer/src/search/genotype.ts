// Deriving the discrete cells from architecture parameters (PC-DARTS rule): for each
// intermediate node keep the two incoming edges with the largest
// softmax(beta)[edge] * max non-none softmax(alpha) over the edge's active
// operations, each with its strongest active non-none operation.
import type { CellSearchSpace, Genotype } from '../model/api.ts';
import { candidateOps, softmaxAt } from './jsd.ts';
import { type ArchSnapshot, edgeIndex } from './stability.ts';

export function deriveGenotype(a: ArchSnapshot, space: CellSearchSpace): Genotype {
  const none = space.operations.indexOf('none');
  return {
    cells: a.alphas.map((alphas, c) => ({
      nodes: Array.from({ length: space.nodes }, (_, node) => {
        const first = edgeIndex(node, 0);
        const inputs = Array.from({ length: node + 2 }, (_, i) => first + i);
        const betas = softmaxAt(a.betas[c], inputs);
        const scored = inputs.map((e, input) => {
          const cand = candidateOps(a.active[c][e], none);
          if (cand.length === 0) return { input, op: space.operations[a.active[c][e][0]], w: -1 };
          const p = softmaxAt(alphas[e], cand);
          let j = 0;
          for (let k = 1; k < p.length; k++) if (p[k] > p[j]) j = k;
          return { input, op: space.operations[cand[j]], w: betas[input] * p[j] };
        });
        return scored
          .filter((s) => s.w >= 0)
          .sort((x, y) => y.w - x.w || x.input - y.input)
          .slice(0, 2)
          .sort((x, y) => x.input - y.input)
          .map(({ input, op }) => ({ input, op }));
      }),
    })),
  };
}
