// Bookkeeping of the tfjs engine that costs a search step more than its arithmetic.
//
// While a gradient is being recorded, the engine keeps every tensor a kernel's
// gradient will need (a Conv2D's input and filter, a Relu's output, ...) by cloning
// it: `Engine.clone` runs the Identity kernel through the full kernel dispatch
// (scopes, kernel lookup, profiling checks, output wrapping) and, on tfjs-node, a
// TensorFlow op. A search step saves about 6,000 tensors this way, a quarter of its
// kernel calls. Identity on every backend we run only shares the input's buffer
// (reference counted), so the same clone is made here directly: the backend's
// reference count goes up and a new engine tensor wraps the same data. The clone's
// tape node, which only a gradient of a gradient can use, is recorded only inside
// one (its clone then as the engine makes it).
//
// Engine.gradients filters the tape with a loop that checks each input of each tape
// node once per variable (about 600 cell weights): 6% of a pruned step on wasm. The
// copy below checks it once; the backward pass is the engine's, unchanged.
import * as tf from '@tensorflow/tfjs-core';

interface BackendWithRefs {
  incRef(dataId: object): void;
}

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved?: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

type Gradients = (f: () => tf.Tensor, xs: tf.Tensor[], dy?: tf.Tensor, allowNoGradients?: boolean) => { value: tf.Tensor; grads: tf.Tensor[] };

interface EngineInternals {
  clone(x: tf.Tensor): tf.Tensor;
  gradients: Gradients;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  startTape(): void;
  endTape(): void;
  tidy<T extends tf.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T;
  makeTensorFromDataId(dataId: object, shape: number[], dtype: tf.DataType, backend?: unknown): tf.Tensor;
  state: { activeScope: { name: string }; tensorInfo: Map<object, { backend: unknown }>; gradientDepth: number; activeTape: TapeNode[] | null };
}

let installed = false;
let originalClone: ((x: tf.Tensor) => tf.Tensor) | undefined;
let originalGradients: Gradients | undefined;

/** Whether the engine's clone shares buffers (installEngineTuning) right now. */
export function engineTuningInstalled(): boolean {
  return installed;
}

/** Makes the engine's clone a shared reference and its tape filter linear. Idempotent. */
export function installEngineTuning(): void {
  if (installed) return;
  const engine = tf.engine() as unknown as EngineInternals;
  originalClone = engine.clone;
  engine.clone = function clone(x: tf.Tensor): tf.Tensor {
    const info = engine.state.tensorInfo.get(x.dataId);
    const backend = info?.backend as Partial<BackendWithRefs> | undefined;
    // Inside a gradient of a gradient, the clone must be on the tape: the engine's own.
    if (engine.state.gradientDepth > 1 || !backend || typeof backend.incRef !== 'function' || x.dtype === 'string' || x.dtype === 'complex64') {
      return originalClone!.call(engine, x);
    }
    backend.incRef(x.dataId);
    return engine.makeTensorFromDataId(x.dataId, x.shape, x.dtype, backend);
  };
  originalGradients = engine.gradients;
  engine.gradients = function gradients(f, xs, dy, allowNoGradients = false) {
    if (xs.length === 0) throw new Error('gradients() received an empty list of xs.');
    if (dy != null && dy.dtype !== 'float32') throw new Error(`dy must have 'float32' dtype, but has '${dy.dtype}'`);
    const y = engine.scopedRun(
      () => engine.startTape(),
      () => engine.endTape(),
      () => engine.tidy('forward', f),
    );
    if (!(y instanceof tf.Tensor)) throw new Error('The result y returned by f() must be a tensor.');
    const tape = engine.state.activeTape!;
    const filtered = filterTape(tape, xs, y);
    if (!allowNoGradients && filtered.length === 0) {
      throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
    }
    return engine.tidy('backward', () => {
      const acc: Record<number, tf.Tensor> = { [y.id]: dy ?? tf.ones(y.shape) };
      backpropagate(acc, filtered, (g) => engine.tidy(g));
      const grads = xs.map((x) => acc[x.id]);
      if (engine.state.gradientDepth === 0) {
        for (const node of tape) for (const t of node.saved ?? []) t.dispose();
        engine.state.activeTape = null;
      }
      return { value: y, grads };
    }) as { value: tf.Tensor; grads: tf.Tensor[] };
  };
  installed = true;
}

/** The tape nodes on a path from xs to y, their inputs pruned to those that depend on xs (tfjs's getFilteredNodesXToY). */
function filterTape(tape: readonly TapeNode[], xs: readonly tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set<number>(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    for (const name in node.inputs) {
      if (fromX.has(node.inputs[name].id)) {
        for (const o of node.outputs) fromX.add(o.id);
        nodesFromX.add(node.id);
        break;
      }
    }
  }
  const toY = new Set<number>([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => toY.has(o.id))) {
      for (const name in node.inputs) toY.add(node.inputs[name].id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const name in node.inputs) if (fromX.has(node.inputs[name].id)) inputs[name] = node.inputs[name];
    out.push({ ...node, inputs, outputs: node.outputs });
  }
  return out;
}

/** Walks the filtered tape backwards accumulating gradients by tensor id (tfjs's backpropagateGradients). */
function backpropagate(acc: Record<number, tf.Tensor>, tape: readonly TapeNode[], tidy: (f: () => tf.Tensor) => tf.Tensor): void {
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    const dys = node.outputs.map((o) => acc[o.id] ?? null);
    if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    const inputGradients = node.gradient(dys);
    for (const name in node.inputs) {
      if (!(name in inputGradients)) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(inputGradients)}.`);
      const dx = tidy(() => inputGradients[name]());
      if (dx.dtype !== 'float32') {
        throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
      }
      const x = node.inputs[name];
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(
          `Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`,
        );
      }
      const current = acc[x.id];
      if (current == null) acc[x.id] = dx;
      else {
        acc[x.id] = tf.add(current, dx);
        current.dispose();
      }
    }
  }
}

/** Restores the engine's own clone (before/after measurements, tests). */
export function uninstallEngineTuning(): void {
  if (!installed) return;
  const engine = tf.engine() as unknown as EngineInternals;
  engine.clone = originalClone!;
  engine.gradients = originalGradients!;
  installed = false;
}
