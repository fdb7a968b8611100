import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { nativeInstalled } from '../../testing/backend.ts';
import type { Operation } from '../config/index.ts';
import { useChannelSplits } from './cell.ts';
import { instanceNorm, pointwise } from './layers.ts';
import { UNet } from './network.ts';
import { applyFused, applyShared, hasWeights, isShared } from './operations.ts';
import { edgeIndex } from './topology.ts';

const OPS: Operation[] = ['none', 'skip_connect', 'conv_3x3', 'dil_conv_3x3', 'sep_conv_3x3', 'avg_pool_3x3', 'max_pool_3x3'];

function softmax(v: number[]): number[] {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** The PC-DARTS cell written edge by edge, as in the paper's code. */
function referenceCell(net: UNet, level: number, s0: tf.Tensor4D, s1: tf.Tensor4D): tf.Tensor4D {
  const w = net.namedWeights();
  const cell = net.cells[level];
  const { channels: c, partial: cp, nodes: n, k } = cell;
  const arch = net.arch!;
  const snap = arch.snapshot();
  const alphas = snap.alphas[level];
  const betas = snap.betas[level];
  const pre = (x: tf.Tensor4D, name: string) => instanceNorm(pointwise(tf.relu(x), w.get(`cell${level}/${name}/kernel`)! as unknown as tf.Tensor2D));
  const states: tf.Tensor4D[] = [pre(s0, 'pre0'), pre(s1, 'pre1')];
  const unshuffled: tf.Tensor4D[] = [];
  for (let j = 0; j < n; j++) {
    const edgeW = softmax(Array.from({ length: j + 2 }, (_, i) => betas[edgeIndex(j, i)]));
    let node: tf.Tensor4D | undefined;
    for (let i = 0; i < j + 2; i++) {
      const e = edgeIndex(j, i);
      const active = arch.active(level, e);
      const opW = softmax(active.map((o) => alphas[e][o]));
      const x = states[i];
      const xp = tf.slice(x, [0, 0, 0, 0], [-1, -1, -1, cp]);
      let mixed: tf.Tensor4D = tf.zerosLike(xp);
      active.forEach((o, t) => {
        const op = OPS[o];
        if (op === 'none') return;
        const weights: Record<string, tf.Variable> = {};
        for (const [name, v] of w) {
          const prefix = `cell${level}/edge${e}/${op}/`;
          if (name.startsWith(prefix)) weights[name.slice(prefix.length)] = v;
        }
        const y = isShared(op) ? applyShared(op, xp) : applyFused(op, xp, [weights]);
        mixed = tf.add(mixed, tf.mul(y, opW[t]));
      });
      const full: tf.Tensor4D = k > 1 ? tf.concat([mixed, tf.slice(x, [0, 0, 0, cp], [-1, -1, -1, c - cp])], 3) : mixed;
      const weighted = tf.mul(full, edgeW[i]) as tf.Tensor4D;
      node = node ? (tf.add(node, weighted) as tf.Tensor4D) : weighted;
    }
    unshuffled.push(node!);
    const [b, h, wd] = node!.shape;
    const shuffled = tf.reshape(tf.transpose(tf.reshape(node!, [b, h, wd, k, c / k]), [0, 1, 2, 4, 3]), [b, h, wd, c]) as tf.Tensor4D;
    states.push(shuffled);
  }
  // Output kernel rows: [operated channels of every node | bypass channels of every node].
  const out = w.get(`cell${level}/out/kernel`)! as unknown as tf.Tensor2D;
  const p = tf.concat(
    unshuffled.map((u) => tf.slice(u, [0, 0, 0, 0], [-1, -1, -1, cp])),
    3,
  ) as tf.Tensor4D;
  let y = pointwise(p, tf.slice(out, [0, 0], [n * cp, c]));
  if (k > 1) {
    const q = tf.concat(
      unshuffled.map((u) => tf.slice(u, [0, 0, 0, cp], [-1, -1, -1, c - cp])),
      3,
    ) as tf.Tensor4D;
    y = tf.add(y, pointwise(q, tf.slice(out, [n * cp, 0], [n * (c - cp), c])));
  }
  return tf.add(s0, y);
}

function randomize(v: tf.Variable, seed: number, scale = 0.5) {
  v.assign(tf.randomNormal(v.shape, 0, scale, 'float32', seed));
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

for (const backend of nativeInstalled ? (['wasm', 'cpu', 'tensorflow'] as const) : (['wasm', 'cpu'] as const)) {
  describe(`IAC cell on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend({ backend, quiet: true });
    });

    for (const k of [1, 2, 4]) {
      it(`fused cell equals the edge-by-edge PC-DARTS cell (K=${k}), also after pruning, in both channel layouts`, () => {
        const net = new UNet({
          backbone: { depth: 1, baseFilters: 8, pretrainEpochs: 1, learningRate: 1e-3 },
          inChannels: 1,
          numClasses: 2,
          cells: 'supernet',
          space: { operations: OPS, nodes: 3, partialChannels: k },
          seed: 3,
        });
        const w = net.namedWeights();
        randomize(w.get('cell0/out/kernel')!, 11);
        randomize(net.arch!.alphas[0], 12, 1);
        randomize(net.arch!.betas[0], 13, 1);
        const s0 = tf.randomNormal([2, 8, 8, 8], 0, 1, 'float32', 14) as tf.Tensor4D;
        const s1 = tf.randomNormal([2, 8, 8, 8], 0, 1, 'float32', 15) as tf.Tensor4D;
        // Both layouts (channel splits, as on TensorFlow; column blocks, as on wasm) on every backend.
        const check = () => {
          for (const split of [true, false]) {
            useChannelSplits(split);
            try {
              tf.tidy(() => {
                const ours = net.cells[0].apply(s0, s1);
                const ref = referenceCell(net, 0, s0, s1);
                expect(ours.shape).toEqual([2, 8, 8, 8]);
                expect(maxAbsDiff(ours, ref), `splits ${split}`).toBeLessThan(1e-4);
                // Not trivially the identity: the cell changes its input.
                expect(maxAbsDiff(ours, s0)).toBeGreaterThan(1e-2);
              });
            } finally {
              useChannelSplits(undefined);
            }
          }
        };
        check();
        net.arch!.prune(0, 0, [2, 4]);
        net.arch!.prune(0, 3, [1]);
        net.arch!.prune(0, 4, [0]); // only 'none' left: the edge passes only its bypass
        net.arch!.prune(0, 8, [3, 6]);
        check();
        tf.dispose([s0, s1]);
        net.dispose();
      });
    }

    it('computes an operation on several edges at once exactly as edge by edge', () => {
      const net = new UNet({
        backbone: { depth: 1, baseFilters: 8, pretrainEpochs: 1, learningRate: 1e-3 },
        inChannels: 1,
        numClasses: 2,
        cells: 'supernet',
        space: { operations: ['conv_5x5', 'dil_conv_5x5', 'sep_conv_5x5', 'conv_3x3'], nodes: 3, partialChannels: 2 },
        seed: 5,
      });
      const x = tf.randomNormal([2, 8, 8, 4], 0, 1, 'float32', 6) as tf.Tensor4D;
      const w = net.namedWeights();
      for (const op of ['conv_5x5', 'dil_conv_5x5', 'sep_conv_5x5'] as const) {
        expect(hasWeights(op)).toBe(true);
        const per = [0, 2, 5].map((e) => {
          const r: Record<string, tf.Variable> = {};
          for (const [name, v] of w) if (name.startsWith(`cell0/edge${e}/${op}/`)) r[name.split('/').pop()!] = v;
          return r;
        });
        tf.tidy(() => {
          const fused = applyFused(op, x, per);
          expect(fused.shape).toEqual([2, 8, 8, 12]);
          per.forEach((p, t) => {
            const single = applyFused(op, x, [p]);
            expect(maxAbsDiff(tf.slice(fused, [0, 0, 0, 4 * t], [-1, -1, -1, 4]), single)).toBeLessThan(1e-4);
          });
        });
      }
      x.dispose();
      net.dispose();
    });
  });
}
