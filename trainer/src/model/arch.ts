// Architecture parameters of a supernet: alphas and betas per cell, and the active
// (not yet pruned) operations of every edge.
import * as tf from '@tensorflow/tfjs-core';
import type { ArchSnapshot, ArchitectureParams, CellSearchSpace } from './api.ts';
import { initialValues } from './init.ts';
import { edgeCount } from './topology.ts';

export type { ArchSnapshot };

export class SupernetArchitecture implements ArchitectureParams {
  readonly alphas: tf.Variable[] = [];
  readonly betas: tf.Variable[] = [];
  readonly space: CellSearchSpace;
  readonly cells: number;
  readonly edges: number;
  private activeSets: number[][][];
  /** Bumped on every change of the active sets, so cells rebuild their plans. */
  version = 0;

  constructor(space: CellSearchSpace, cells: number, seed: number) {
    this.space = space;
    this.cells = cells;
    this.edges = edgeCount(space.nodes);
    const ops = space.operations.length;
    for (let c = 0; c < cells; c++) {
      const a = `arch/cell${c}/alphas`;
      const b = `arch/cell${c}/betas`;
      this.alphas.push(tf.variable(tf.tensor(initialValues(seed, a, [this.edges, ops], { kind: 'normal', std: 1e-3 }), [this.edges, ops]), true));
      this.betas.push(tf.variable(tf.tensor(initialValues(seed, b, [this.edges], { kind: 'normal', std: 1e-3 }), [this.edges]), true));
    }
    const all = space.operations.map((_, i) => i);
    this.activeSets = Array.from({ length: cells }, () => Array.from({ length: this.edges }, () => [...all]));
  }

  private check(cell: number, edge: number): void {
    if (!Number.isInteger(cell) || cell < 0 || cell >= this.cells) throw new Error(`cell ${cell} out of range 0..${this.cells - 1}`);
    if (!Number.isInteger(edge) || edge < 0 || edge >= this.edges) throw new Error(`edge ${edge} out of range 0..${this.edges - 1}`);
  }

  active(cell: number, edge: number): readonly number[] {
    this.check(cell, edge);
    return this.activeSets[cell][edge];
  }

  prune(cell: number, edge: number, keep: readonly number[]): void {
    this.check(cell, edge);
    const current = this.activeSets[cell][edge];
    if (keep.length === 0) throw new Error(`prune(cell ${cell}, edge ${edge}): keep at least one operation`);
    for (const k of keep) {
      if (!current.includes(k)) {
        throw new Error(`prune(cell ${cell}, edge ${edge}): operation ${k} is not active (active: ${current.join(', ')})`);
      }
    }
    const next = [...new Set(keep)].sort((a, b) => a - b);
    if (next.length === current.length) return;
    this.activeSets[cell][edge] = next;
    this.version++;
  }

  snapshot(): ArchSnapshot {
    return {
      alphas: this.alphas.map((a) => a.arraySync() as number[][]),
      betas: this.betas.map((b) => b.arraySync() as number[]),
      active: this.activeSets.map((cell) => cell.map((e) => [...e])),
    };
  }

  restore(s: ArchSnapshot): void {
    const ops = this.space.operations.length;
    const bad = (what: string) => {
      throw new Error(`cannot restore architecture parameters: ${what} (expected ${this.cells} cells, ${this.edges} edges, ${ops} operations)`);
    };
    if (s.alphas.length !== this.cells || s.betas.length !== this.cells || s.active.length !== this.cells) bad('wrong number of cells');
    for (let c = 0; c < this.cells; c++) {
      if (s.alphas[c].length !== this.edges || s.alphas[c].some((row) => row.length !== ops)) bad(`alphas of cell ${c} have the wrong shape`);
      if (s.betas[c].length !== this.edges) bad(`betas of cell ${c} have the wrong length`);
      if (s.active[c].length !== this.edges) bad(`active sets of cell ${c} have the wrong length`);
      for (const set of s.active[c]) {
        if (set.length === 0 || set.some((k) => !Number.isInteger(k) || k < 0 || k >= ops)) bad(`an active set of cell ${c} is empty or out of range`);
      }
    }
    for (let c = 0; c < this.cells; c++) {
      tf.tidy(() => {
        this.alphas[c].assign(tf.tensor2d(s.alphas[c], [this.edges, ops]));
        this.betas[c].assign(tf.tensor1d(s.betas[c]));
      });
    }
    this.activeSets = s.active.map((cell) => cell.map((e) => [...e].sort((a, b) => a - b)));
    this.version++;
  }

  dispose(): void {
    for (const v of [...this.alphas, ...this.betas]) v.dispose();
  }
}
