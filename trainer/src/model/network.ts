// The 2-D U-Net with an IAC cell in every skip connection. Backbone weights have the
// same names in all three modes (plain, supernet, discrete), so a supernet or a
// discrete network can take a trained plain U-Net's weights.
import * as tf from '@tensorflow/tfjs-core';
import { OPERATIONS, type Operation } from '../config/index.ts';
import type { Genotype, Network, NetworkOptions } from './api.ts';
import { SupernetArchitecture } from './arch.ts';
import { IacCell } from './cell.ts';
import { WeightStore } from './init.ts';
import { instanceNorm, pointwise, upsample2x } from './layers.ts';

interface ConvBlock {
  k1: tf.Variable;
  g1: tf.Variable;
  b1: tf.Variable;
  k2: tf.Variable;
  g2: tf.Variable;
  b2: tf.Variable;
}

function convBlock(store: WeightStore, name: string, cin: number, cout: number): ConvBlock {
  return {
    k1: store.add(`${name}/conv1/kernel`, [3, 3, cin, cout], { kind: 'he', fanIn: 9 * cin }),
    g1: store.add(`${name}/norm1/gamma`, [cout], { kind: 'constant', value: 1 }),
    b1: store.add(`${name}/norm1/beta`, [cout], { kind: 'constant', value: 0 }),
    k2: store.add(`${name}/conv2/kernel`, [3, 3, cout, cout], { kind: 'he', fanIn: 9 * cout }),
    g2: store.add(`${name}/norm2/gamma`, [cout], { kind: 'constant', value: 1 }),
    b2: store.add(`${name}/norm2/beta`, [cout], { kind: 'constant', value: 0 }),
  };
}

function applyBlock(x: tf.Tensor4D, p: ConvBlock): tf.Tensor4D {
  const h = tf.relu(instanceNorm(tf.conv2d(x, p.k1 as tf.Tensor4D, 1, 'same'), p.g1, p.b1));
  return tf.relu(instanceNorm(tf.conv2d(h, p.k2 as tf.Tensor4D, 1, 'same'), p.g2, p.b2));
}

function isGenotype(c: NetworkOptions['cells']): c is Genotype {
  return typeof c === 'object' && c !== null && Array.isArray((c as Genotype).cells);
}

export class UNet implements Network {
  readonly options: NetworkOptions;
  readonly backboneVariables: tf.Variable[] = [];
  readonly cellVariables: tf.Variable[] = [];
  readonly arch?: SupernetArchitecture;
  private readonly store: WeightStore;
  private readonly encoders: ConvBlock[] = [];
  private readonly bottleneck: ConvBlock;
  private readonly ups: tf.Variable[] = [];
  private readonly decoders: ConvBlock[] = [];
  private readonly headKernel: tf.Variable;
  private readonly headBias: tf.Variable;
  readonly cells: IacCell[] = [];
  private disposed = false;

  constructor(options: NetworkOptions) {
    this.options = options;
    const { depth, baseFilters } = options.backbone;
    if (!Number.isInteger(options.inChannels) || options.inChannels < 1) throw new Error(`inChannels must be a positive integer, got ${options.inChannels}`);
    if (!Number.isInteger(options.numClasses) || options.numClasses < 2)
      throw new Error(`numClasses must be at least 2 (background and one class), got ${options.numClasses}`);
    const store = new WeightStore(options.seed);
    this.store = store;
    const ch = (l: number) => baseFilters * 2 ** l;
    let cin = options.inChannels;
    for (let l = 0; l < depth; l++) {
      this.encoders.push(convBlock(store, `enc${l}`, cin, ch(l)));
      cin = ch(l);
    }
    this.bottleneck = convBlock(store, 'bottleneck', cin, ch(depth));
    for (let l = depth - 1; l >= 0; l--) {
      this.ups[l] = store.add(`up${l}/kernel`, [ch(l + 1), ch(l)], { kind: 'he', fanIn: ch(l + 1) });
      this.decoders[l] = convBlock(store, `dec${l}`, 2 * ch(l), ch(l));
    }
    this.headKernel = store.add('head/kernel', [ch(0), options.numClasses], { kind: 'he', fanIn: ch(0) });
    this.headBias = store.add('head/bias', [options.numClasses], { kind: 'constant', value: 0 });
    this.backboneVariables.push(...store.byName.values());

    const cells = options.cells;
    if (cells === 'supernet') {
      const space = options.space;
      if (!space) throw new Error("cells 'supernet' needs options.space (search.operations, search.nodes, search.partialChannels)");
      if (space.operations.length < 2) throw new Error('search.operations: a supernet needs at least 2 candidate operations');
      this.arch = new SupernetArchitecture(space, depth, options.seed);
      for (let l = 0; l < depth; l++) {
        this.cells.push(
          new IacCell(store, {
            name: `cell${l}`,
            channels: ch(l),
            s1Channels: ch(l),
            nodes: space.nodes,
            partialChannels: space.partialChannels,
            operations: space.operations,
            mode: { kind: 'supernet', arch: this.arch, index: l },
          }),
        );
      }
    } else if (isGenotype(cells)) {
      if (cells.cells.length !== depth) {
        throw new Error(`the genotype has ${cells.cells.length} cells but backbone.depth ${depth} gives ${depth} skip connections`);
      }
      const operations: readonly Operation[] = OPERATIONS;
      for (let l = 0; l < depth; l++) {
        this.cells.push(
          new IacCell(store, {
            name: `cell${l}`,
            channels: ch(l),
            s1Channels: ch(l),
            nodes: cells.cells[l].nodes.length,
            partialChannels: options.space?.partialChannels ?? 1,
            operations,
            mode: { kind: 'discrete', genotype: cells.cells[l] },
          }),
        );
      }
    } else if (cells !== 'none') {
      throw new Error(`cells must be 'none', 'supernet' or a genotype, got ${JSON.stringify(cells)}`);
    }
    for (const c of this.cells) this.cellVariables.push(...c.variables);
  }

  apply(x: tf.Tensor4D, _opts?: { training?: boolean }): tf.Tensor4D {
    if (this.disposed) throw new Error('the network has been disposed');
    const { depth } = this.options.backbone;
    const [, h, w, c] = x.shape;
    const f = 2 ** depth;
    if (h % f !== 0 || w % f !== 0) {
      throw new Error(`input ${h}x${w} is not divisible by 2^depth = ${f}; choose dataset.sliceSize as a multiple of ${f} or lower backbone.depth`);
    }
    if (c !== this.options.inChannels) throw new Error(`input has ${c} channels, the network expects ${this.options.inChannels}`);
    return tf.tidy(() => {
      const skips: tf.Tensor4D[] = [];
      let cur = x;
      for (let l = 0; l < depth; l++) {
        const s = applyBlock(cur, this.encoders[l]);
        skips.push(s);
        cur = tf.maxPool(s, 2, 2, 'valid');
      }
      cur = applyBlock(cur, this.bottleneck);
      for (let l = depth - 1; l >= 0; l--) {
        const up = pointwise(upsample2x(cur), this.ups[l] as unknown as tf.Tensor2D);
        const skip = this.cells.length > 0 ? this.cells[l].apply(skips[l], up) : skips[l];
        cur = applyBlock(tf.concat([skip, up], 3), this.decoders[l]);
      }
      return tf.add(pointwise(cur, this.headKernel as unknown as tf.Tensor2D), this.headBias) as tf.Tensor4D;
    });
  }

  namedWeights(): Map<string, tf.Variable> {
    return new Map(this.store.byName);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const c of this.cells) c.dispose();
    this.arch?.dispose();
    this.store.dispose();
  }
}

export function createNetwork(options: NetworkOptions): Network {
  return new UNet(options);
}
