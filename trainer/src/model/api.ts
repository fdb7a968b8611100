// The contract between the model (trainer/src/model) and the loops that train it
// (trainer/src/search, trainer/src/train, trainer/src/eval). Implementations live
// beside this file; the loops import only these types and the factory functions.
import type * as tf from '@tensorflow/tfjs-core';
import type { BackboneConfig, Operation } from '../config/index.ts';

/**
 * Inputs of a cell are numbered: 0 = s0 (the encoder skip feature), 1 = s1 (the
 * upsampled decoder feature), 2 + i = intermediate node i. Node i has the incoming
 * edges from inputs 0 .. i+1; edges are numbered in that order (node 0: edges 0-1,
 * node 1: edges 2-4, node 2: edges 5-8, node 3: edges 9-13 for 4 nodes: 14 edges).
 */
export interface GenotypeEdge {
  input: number;
  op: Operation;
}

/** One discrete cell: for each intermediate node, its two kept incoming edges. */
export interface GenotypeCell {
  nodes: GenotypeEdge[][];
}

/** One cell per skip level, shallowest level first. */
export interface Genotype {
  cells: GenotypeCell[];
}

export interface CellSearchSpace {
  operations: readonly Operation[];
  nodes: number;
  partialChannels: number;
}

export interface NetworkOptions {
  backbone: BackboneConfig;
  inChannels: number;
  numClasses: number;
  /** 'none': plain U-Net; 'supernet': searchable cells; a Genotype: discrete cells. */
  cells: 'none' | 'supernet' | Genotype;
  /** Required for 'supernet' (and gives the partial-channel K for discrete cells too). */
  space?: CellSearchSpace;
  /** Seed of weight initialisation. */
  seed: number;
}

/**
 * Architecture parameters of a supernet: per cell, alphas [edges, operations] and
 * betas (one per incoming edge of each node, flattened in edge order). Pruned
 * operations are no longer computed: `active` lists, per cell and edge, the indices
 * (into space.operations) still active.
 */
export interface ArchitectureParams {
  readonly alphas: tf.Variable[];
  readonly betas: tf.Variable[];
  active(cell: number, edge: number): readonly number[];
  /** Restricts an edge to the given operation indices (a subset of its active ones). */
  prune(cell: number, edge: number, keep: readonly number[]): void;
  /** Plain snapshot for checkpoints and history. */
  snapshot(): { alphas: number[][][]; betas: number[][]; active: number[][][] };
  restore(s: { alphas: number[][][]; betas: number[][]; active: number[][][] }): void;
}

/** The architecture parameters as plain arrays (checkpoints, history, deriving a genotype). */
export type ArchSnapshot = ReturnType<ArchitectureParams['snapshot']>;

export interface Network {
  readonly options: NetworkOptions;
  /** Logits, NHWC [batch, height, width, numClasses]. Call inside tf.tidy or dispose the result. */
  apply(x: tf.Tensor4D, opts?: { training?: boolean }): tf.Tensor4D;
  /** U-Net weights (encoder, decoder, head). */
  readonly backboneVariables: readonly tf.Variable[];
  /** Weights of the cells' operations and 1x1 convolutions (empty for 'none'). */
  readonly cellVariables: readonly tf.Variable[];
  /** Present for 'supernet' only. */
  readonly arch?: ArchitectureParams;
  /** All trainable weights (not the architecture parameters) by stable name. */
  namedWeights(): Map<string, tf.Variable>;
  dispose(): void;
}
