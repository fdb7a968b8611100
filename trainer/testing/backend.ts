// Which backends the numerical tests run on. wasm always; native TensorFlow
// (@tensorflow/tfjs-node, built by scripts/native-backend.sh) wherever it is
// installed, and always in CI, where its absence fails the run instead of skipping.
import { createRequire } from 'node:module';
import { describe } from 'vitest';
import type { BackendChoice } from '../src/backend/index.ts';

function loadable(pkg: string): boolean {
  try {
    const require = createRequire(import.meta.url);
    require.resolve(pkg);
    // The stock install without its addon resolves too; the addon is what counts.
    require.resolve(`${pkg}/lib/napi-v8/tfjs_binding.node`);
    return true;
  } catch {
    return false;
  }
}

export const nativeInstalled = loadable('@tensorflow/tfjs-node');

const HOW = 'build it with scripts/native-backend.sh (see docs/native-backend.md)';

if (process.env.CI && !nativeInstalled) {
  throw new Error(`CI runs every numerical test on native TensorFlow too, but @tensorflow/tfjs-node is not installed: ${HOW}`);
}

/** wasm, and tensorflow when installed: the backends whose numbers the trainer relies on. */
export const NUMERIC_BACKENDS: readonly BackendChoice[] = nativeInstalled ? ['wasm', 'tensorflow'] : ['wasm'];

/**
 * describe() once per numerical backend. Outside CI, without the native backend, the
 * tensorflow block is left out and one stderr line says how to build it (in CI its
 * absence already failed the run above).
 */
export function describeEachBackend(title: string, body: (backend: BackendChoice) => void, backends: readonly BackendChoice[] = ['wasm', 'tensorflow']): void {
  for (const backend of backends) {
    if (backend === 'tensorflow' && !nativeInstalled) {
      process.stderr.write(`${title}: not run on tensorflow (@tensorflow/tfjs-node not installed: ${HOW})\n`);
      continue;
    }
    describe(`${title} on ${backend}`, () => body(backend));
  }
}
