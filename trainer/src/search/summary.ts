// The compact genotype of the PhaseResult: per cell, per node, [input, operation] pairs.
import type { Genotype } from '../model/api.ts';

export function summariseGenotype(g: Genotype): { cells: [number, string][][][] } {
  return { cells: g.cells.map((c) => c.nodes.map((n) => n.map((e) => [e.input, e.op] as [number, string]))) };
}
