// Kernels of the native backend (@tensorflow/tfjs-node) that cost a search step more
// than TensorFlow's own ops would. Each TensorFlow eager op costs 6-10 CPU µs here
// whatever its size, so what matters is how many a tfjs kernel issues:
// - Reshape and Transpose upload their shape or permutation as a new int32 tensor on
//   every call (a tfjs tensor, a TensorFlow tensor, then both disposed): about half
//   the cost of a Reshape. The constants are cached here, one per distinct shape.
// - Relu's gradient is tfjs's dy * cast(step(x)), and tfjs-node's Step is seven
//   TensorFlow ops on full-size tensors (isNaN, greater, ones, fill, where, select):
//   about 0.6 ms per call at 32x32, batch 8. TensorFlow's ReluGrad is one op.
import * as tf from '@tensorflow/tfjs-core';
import type { GradConfig, KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';

interface NodeBinding {
  TF_ATTR_TYPE: number;
  TF_FLOAT: number;
  TF_INT32: number;
  TF_BOOL: number;
}

interface NodeBackend {
  binding: NodeBinding;
  executeSingleOutput(name: string, attrs: { name: string; type: number; value: number }[], inputs: TensorInfo[]): TensorInfo;
}

const BACKEND = 'tensorflow';
/** The kernel that runs TensorFlow's ReluGrad (dy where x > 0, else 0). */
export const NATIVE_RELU_GRAD = 'IacnasReluGrad';

let installed = false;
/** The kernels and gradient before and after installNativeTuning, for setNativeTuning. */
const originals: { kernels: KernelConfig[]; relu?: GradConfig } = { kernels: [] };
const replacements: { kernels: KernelConfig[]; relu?: GradConfig } = { kernels: [] };
const constants = new Map<string, tf.Tensor1D>();

/** At most this many cached constants (a process that sees ever new shapes starts over). */
const MAX_CONSTANTS = 4096;

/** A kept int32 vector, created once per distinct value. */
function int32Constant(values: readonly number[]): tf.Tensor1D {
  const key = values.join(',');
  let t = constants.get(key);
  if (!t || t.isDisposed) {
    if (constants.size >= MAX_CONSTANTS) {
      tf.dispose([...constants.values()]);
      constants.clear();
    }
    t = tf.keep(tf.tensor1d(values as number[], 'int32'));
    constants.set(key, t);
  }
  return t;
}

function dtypeCode(b: NodeBinding, dtype: tf.DataType): number {
  switch (dtype) {
    case 'float32':
      return b.TF_FLOAT;
    case 'int32':
      return b.TF_INT32;
    case 'bool':
      return b.TF_BOOL;
    default:
      throw new Error(`native tuning: unsupported dtype ${dtype}`);
  }
}

const typeAttr = (b: NodeBinding, name: string, dtype: tf.DataType) => ({ name, type: b.TF_ATTR_TYPE, value: dtypeCode(b, dtype) });

/** Installs the replacements on the 'tensorflow' backend (once; a no-op where it is not registered). */
export function installNativeTuning(): void {
  if (installed) return;
  if (!tf.getKernel('Reshape', BACKEND)) return;
  installed = true;
  const shaped = (kernelName: 'Reshape' | 'Transpose', attr: 'shape' | 'perm', typeName: 'Tshape' | 'Tperm'): KernelConfig => ({
    kernelName,
    backendName: BACKEND,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const x = inputs.x as TensorInfo;
      const be = backend as unknown as NodeBackend;
      const c = int32Constant(attrs![attr] as number[]);
      return be.executeSingleOutput(kernelName, [typeAttr(be.binding, 'T', x.dtype), typeAttr(be.binding, typeName, 'int32')], [x, c]);
    },
  });
  for (const k of [shaped('Reshape', 'shape', 'Tshape'), shaped('Transpose', 'perm', 'Tperm')]) {
    originals.kernels.push(tf.getKernel(k.kernelName, BACKEND)!);
    replacements.kernels.push(k);
    tf.unregisterKernel(k.kernelName, BACKEND);
    tf.registerKernel(k);
  }
  tf.registerKernel({
    kernelName: NATIVE_RELU_GRAD,
    backendName: BACKEND,
    kernelFunc: ({ inputs, backend }) => {
      const be = backend as unknown as NodeBackend;
      const dy = inputs.dy as TensorInfo;
      return be.executeSingleOutput('ReluGrad', [typeAttr(be.binding, 'T', dy.dtype)], [dy, inputs.x as TensorInfo]);
    },
  });
  // ReluGrad is linear in dy and piecewise constant in x: its own gradient, for a
  // gradient of a gradient, is ReluGrad of the incoming gradient, and 0 for x.
  tf.registerGradient({
    kernelName: NATIVE_RELU_GRAD,
    inputsToSave: ['x'],
    gradFunc: (ddx, saved) => {
      const [x] = saved;
      return { dy: () => tf.engine().runKernel(NATIVE_RELU_GRAD, { dy: ddx as tf.Tensor, x }) as tf.Tensor, x: () => tf.zerosLike(x) };
    },
  });
  // The gradient registry is global: other backends keep tfjs's formulation.
  const relu = tf.getGradient('Relu');
  const grad: GradConfig = {
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      if (tf.getBackend() !== BACKEND || (dy as tf.Tensor).dtype !== 'float32') return relu.gradFunc(dy, saved, attrs);
      const [x] = saved;
      return { x: () => tf.engine().runKernel(NATIVE_RELU_GRAD, { dy: dy as tf.Tensor, x }) as tf.Tensor };
    },
  };
  originals.relu = relu;
  replacements.relu = grad;
  tf.registerGradient(grad);
}

/**
 * Turns the replacements off (true: back on), for before/after measurements in one
 * process (test/bench/trainer-throughput.ts). A no-op before installNativeTuning.
 */
export function setNativeTuning(enabled: boolean): void {
  if (!installed) return;
  const use = enabled ? replacements : originals;
  for (const k of use.kernels) {
    tf.unregisterKernel(k.kernelName, BACKEND);
    tf.registerKernel(k);
  }
  if (use.relu) tf.registerGradient(use.relu);
}
