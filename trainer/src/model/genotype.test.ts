import { describe, expect, it } from 'vitest';
import type { Operation } from '../config/index.ts';
import { deriveGenotype, operationWeights, softmax } from './genotype.ts';

const OPS: Operation[] = ['none', 'skip_connect', 'conv_3x3', 'max_pool_3x3'];
const space = { operations: OPS, nodes: 2, partialChannels: 1 };
const all = [0, 1, 2, 3];

describe('deriveGenotype', () => {
  it('keeps the best non-none operation of every edge of node 0, even when none has the largest weight', () => {
    // 5 edges for 2 nodes: node 0 = edges 0,1; node 1 = edges 2,3,4.
    const alphas = [
      [5, 0, 1, 0], // none dominates; best real op: conv_3x3
      [0, 2, 0, 0], // skip_connect
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ];
    const g = deriveGenotype({ alphas: [alphas], betas: [[0, 0, 0, 0, 0]], active: [Array(5).fill(all)] }, space);
    expect(g.cells[0].nodes[0]).toEqual([
      { input: 0, op: 'conv_3x3' },
      { input: 1, op: 'skip_connect' },
    ]);
  });

  it('ranks the edges of a node by beta-weighted operation strength (hand-computed)', () => {
    // Node 1 edges: e2 (input 0), e3 (input 1), e4 (input 2).
    // e2: softmax([0,0,3,0]) best conv 0.8706; e3: best max_pool softmax([0,0,0,1]) = 0.4754
    // e4: best skip softmax([0,2,0,0]) = 0.7112. Betas [0, 2, 1]: softmax = [0.0900, 0.6652, 0.2447].
    // strengths: e2 0.0784, e3 0.3163, e4 0.1740 -> keep inputs 1 and 2.
    const alphas = [
      [0, 1, 0, 0],
      [0, 1, 0, 0],
      [0, 0, 3, 0],
      [0, 0, 0, 1],
      [0, 2, 0, 0],
    ];
    const g = deriveGenotype({ alphas: [alphas], betas: [[0, 0, 0, 2, 1]], active: [Array(5).fill(all)] }, space);
    expect(g.cells[0].nodes[1]).toEqual([
      { input: 1, op: 'max_pool_3x3' },
      { input: 2, op: 'skip_connect' },
    ]);
    // Equal betas: the conv edge (0.8706) and the skip edge (0.7112) win.
    const g2 = deriveGenotype({ alphas: [alphas], betas: [[0, 0, 0, 0, 0]], active: [Array(5).fill(all)] }, space);
    expect(g2.cells[0].nodes[1]).toEqual([
      { input: 0, op: 'conv_3x3' },
      { input: 2, op: 'skip_connect' },
    ]);
  });

  it('lets only active operations compete, renormalising over them', () => {
    const alphas = [
      [0, 0, 9, 0], // conv pruned away: skip (1) vs max_pool (3)
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ];
    alphas[0][3] = 0.5;
    const active = [[1, 3], all, all, all, all];
    const g = deriveGenotype({ alphas: [alphas], betas: [[0, 0, 0, 0, 0]], active: [active] }, space);
    expect(g.cells[0].nodes[0][0]).toEqual({ input: 0, op: 'max_pool_3x3' });
    expect(operationWeights(alphas[0], [1, 3])).toEqual([0, softmax([0, 0.5])[0], 0, softmax([0, 0.5])[1]]);
  });

  it("ranks an edge pruned to 'none' last and gives it its best alpha if it must be kept", () => {
    const alphas = [
      [0, 0, 0, 0],
      [0, 3, 1, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
      [0, 0, 0, 0],
    ];
    const active = [all, [0], all, all, all];
    const g = deriveGenotype({ alphas: [alphas], betas: [[0, 0, 0, 0, 0]], active: [active] }, space);
    expect(g.cells[0].nodes[0]).toEqual([
      { input: 0, op: 'skip_connect' },
      { input: 1, op: 'skip_connect' },
    ]);
  });

  it('derives one cell per snapshot cell and rejects a snapshot of the wrong size', () => {
    const z = Array.from({ length: 5 }, () => [0, 0, 1, 0]);
    const g = deriveGenotype(
      {
        alphas: [z, z],
        betas: [
          [0, 0, 0, 0, 0],
          [0, 0, 0, 0, 0],
        ],
        active: [Array(5).fill(all), Array(5).fill(all)],
      },
      space,
    );
    expect(g.cells).toHaveLength(2);
    expect(g.cells[1].nodes.map((n) => n.length)).toEqual([2, 2]);
    expect(() => deriveGenotype({ alphas: [z.slice(0, 3)], betas: [[0, 0, 0]], active: [Array(3).fill(all)] }, space)).toThrow(/search.nodes/);
  });
});
