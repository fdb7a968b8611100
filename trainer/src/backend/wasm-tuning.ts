// Changes to the wasm backend that make training faster without changing results.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';

interface RefCountingBackend {
  incRef(dataId: object): void;
}

let installed = false;

/**
 * - Identity shares the input's buffer (reference counted, as the cpu backend does)
 *   instead of copying it. The engine clones every tensor it keeps for a gradient,
 *   and on wasm each clone was a full copy: a third of all kernel calls of a search
 *   step and twice the activation memory. Nothing writes into a tensor's buffer in
 *   place (variables are reassigned, not overwritten), so sharing is safe.
 * - The gradients of a 2-D matMul use explicit transposes: the wasm BatchMatMul takes
 *   a slow generic path when an operand is transposed, ~4x slower than transposing
 *   first and multiplying with XNNPACK.
 */
export function installWasmTuning(): void {
  if (installed) return;
  installed = true;
  const identity = tf.getKernel('Identity', 'wasm');
  if (identity) {
    const shared: KernelConfig = {
      kernelName: 'Identity',
      backendName: 'wasm',
      kernelFunc: ({ inputs, backend }) => {
        const x = inputs.x as TensorInfo;
        (backend as unknown as RefCountingBackend).incRef(x.dataId);
        return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
      },
    };
    tf.unregisterKernel('Identity', 'wasm');
    tf.registerKernel(shared);
  }
  const matMul = tf.getGradient('BatchMatMul');
  const grad: GradConfig = {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved;
      if (a.rank !== 2 || b.rank !== 2 || attrs.transposeA || attrs.transposeB) return matMul.gradFunc(dy, saved, attrs);
      const d = dy as tf.Tensor2D;
      return {
        a: () => tf.matMul(d, tf.transpose(b as tf.Tensor2D)),
        b: () => tf.matMul(tf.transpose(a as tf.Tensor2D), d),
      };
    },
  };
  tf.registerGradient(grad);
}
