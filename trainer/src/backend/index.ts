// Chooses the tfjs backend once per process: tfjs-node-gpu, else tfjs-node, else
// wasm, else the pure-JS cpu backend. IACNAS_BACKEND forces one. The tfjs-node
// packages are optional dependencies (absent here and in the CPU image) and are
// imported dynamically so that their absence is a reason, not a crash.
import { ENV } from '../../../contract/src/index.ts';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { registerCoreGradients } from './core-gradients.ts';
import { installEngineTuning } from './engine-tuning.ts';
import { installNativeTuning } from './native-tuning.ts';
import { installConvGradients } from './gradients.ts';
import { installWasmNormalize } from './norm-kernel.ts';
import { installWasmFixes, installWasmTuning } from './wasm-tuning.ts';

export const BACKENDS = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];

export interface BackendInfo {
  /** The choice that runs. */
  choice: BackendChoice;
  /** tfjs's name of the backend ('tensorflow', 'wasm', 'cpu'). */
  tfName: string;
  /** Why each better backend did not run. */
  skipped: { choice: BackendChoice; reason: string }[];
  /** The line printed to stderr. */
  line: string;
}

const PACKAGES: Record<'tensorflow-gpu' | 'tensorflow', string> = {
  'tensorflow-gpu': '@tensorflow/tfjs-node-gpu',
  tensorflow: '@tensorflow/tfjs-node',
};

let current: Promise<BackendInfo> | undefined;

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // Node's "Cannot find package 'x' imported from /path/to/file" needs no path.
  return msg
    .split('\n')[0]
    .replace(/ imported from \S+$/, '')
    .slice(0, 200);
}

/** The tfjs-node package that runs the 'tensorflow' backend, once one does. */
let nodePackage: string | undefined;

async function tryNode(choice: 'tensorflow-gpu' | 'tensorflow'): Promise<string | undefined> {
  const reason = await tryPackage(PACKAGES[choice], choice);
  if (reason === undefined || choice === 'tensorflow-gpu' || !reason.includes('not loadable')) return reason;
  // A GPU image carries only tfjs-node-gpu, which runs on the CPU as well.
  return (await tryPackage(PACKAGES['tensorflow-gpu'], choice)) === undefined ? undefined : reason;
}

async function tryPackage(pkg: string, choice: 'tensorflow-gpu' | 'tensorflow'): Promise<string | undefined> {
  // TensorFlow's INFO lines ("This TensorFlow binary is optimized to use available CPU
  // instructions...") would come before our own first line; warnings still show.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '1';
  try {
    // A variable specifier keeps TypeScript from resolving the optional package.
    const spec: string = pkg;
    await import(spec);
  } catch (e) {
    return `${pkg} not loadable: ${firstLine(e)}`;
  }
  try {
    if (!(await tf.setBackend('tensorflow'))) return `${pkg} loaded but the 'tensorflow' backend did not initialise`;
    await tf.ready();
  } catch (e) {
    return `${pkg} failed to initialise: ${firstLine(e)}`;
  }
  try {
    // One kernel: the stock 4.22 package fails here on Node >= 23 (util.isNullOrUndefined).
    tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(2)).dataSync());
  } catch (e) {
    const msg = firstLine(e);
    const hint = /isNullOrUndefined/.test(msg)
      ? ` (the stock ${pkg} 4.22 needs Node < 23: run scripts/native-backend.sh --patch-installed, or build it with scripts/native-backend.sh)`
      : '';
    return `${pkg} loaded but cannot run a kernel: ${msg}${hint}`;
  }
  if (choice === 'tensorflow-gpu') {
    // tfjs-node-gpu falls back to the CPU silently when CUDA is missing.
    const gpu = await hasGpu();
    if (!gpu) return `${pkg} loaded but no CUDA device is visible`;
  }
  nodePackage = pkg;
  return undefined;
}

async function hasGpu(): Promise<boolean> {
  try {
    const { readdirSync } = await import('node:fs');
    return readdirSync('/dev').some((d) => /^nvidia\d+$/.test(d));
  } catch {
    return false;
  }
}

function wasmDir(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
}

async function tryWasm(): Promise<string | undefined> {
  try {
    setWasmPaths(wasmDir());
    if (!(await tf.setBackend('wasm'))) return 'the wasm backend did not initialise';
    await tf.ready();
    return undefined;
  } catch (e) {
    return `the wasm backend failed: ${firstLine(e)}`;
  }
}

async function tryCpu(): Promise<string | undefined> {
  try {
    if (!(await tf.setBackend('cpu'))) return 'the cpu backend did not initialise';
    await tf.ready();
    // Our own line says which backend runs and why; drop tfjs's "install tfjs-node" banner.
    const backend = tf.backend() as unknown as { firstUse?: boolean };
    if (backend.firstUse !== undefined) backend.firstUse = false;
    return undefined;
  } catch (e) {
    return `the cpu backend failed: ${firstLine(e)}`;
  }
}

function attempt(choice: BackendChoice): Promise<string | undefined> {
  switch (choice) {
    case 'tensorflow-gpu':
    case 'tensorflow':
      return tryNode(choice);
    case 'wasm':
      return tryWasm();
    case 'cpu':
      return tryCpu();
  }
}

/** TensorFlow's version as the native library reports it ('' when not native). */
export function tensorflowVersion(): string {
  const binding = (tf.backend() as unknown as { binding?: { TF_Version?: string } }).binding;
  return binding?.TF_Version ?? '';
}

function describe(choice: BackendChoice): string {
  if (choice === 'tensorflow' || choice === 'tensorflow-gpu') {
    const gpuPackageOnCpu = choice === 'tensorflow' && nodePackage === PACKAGES['tensorflow-gpu'] ? `, ${nodePackage}` : '';
    return `${choice} (TensorFlow ${tensorflowVersion() || 'native'}${choice === 'tensorflow-gpu' ? ', CUDA' : ', CPU'}${gpuPackageOnCpu})`;
  }
  if (choice === 'wasm') {
    const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    const threads = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT');
    return `wasm (${simd ? 'SIMD' : 'no SIMD'}, ${threads ? 'multithreaded' : 'single thread'})`;
  }
  return choice;
}

/** Parses IACNAS_BACKEND; throws naming the variable and the accepted values. */
export function parseBackendOverride(value: string | undefined): BackendChoice | undefined {
  if (value === undefined || value === '') return undefined;
  if ((BACKENDS as readonly string[]).includes(value)) return value as BackendChoice;
  throw new Error(`IACNAS_BACKEND=${value} is not a backend; use one of ${BACKENDS.join(', ')} (or unset it to choose automatically)`);
}

async function choose(opts: { backend?: BackendChoice; quiet?: boolean }): Promise<BackendInfo> {
  const forced = opts.backend ?? parseBackendOverride(process.env[ENV.backend]);
  const order: readonly BackendChoice[] = forced ? [forced] : BACKENDS;
  const skipped: { choice: BackendChoice; reason: string }[] = [];
  await registerCoreGradients();
  for (const choice of order) {
    const reason = await attempt(choice);
    if (reason === undefined) {
      installConvGradients();
      installEngineTuning();
      if (choice === 'tensorflow' || choice === 'tensorflow-gpu') installNativeTuning();
      if (choice === 'wasm') {
        installWasmFixes();
        installWasmTuning();
        installWasmNormalize();
      }
      const why = forced
        ? opts.backend
          ? 'asked for'
          : 'forced by IACNAS_BACKEND'
        : skipped.length === 0
          ? 'the best available'
          : skipped.map((s) => `${s.choice}: ${s.reason}`).join('; ');
      const line = `iacnas: tfjs backend ${describe(choice)} (${why})`;
      if (!opts.quiet) process.stderr.write(`${line}\n`);
      return { choice, tfName: tf.getBackend(), skipped, line };
    }
    skipped.push({ choice, reason });
  }
  throw new Error(
    `no tfjs backend could start: ${skipped.map((s) => `${s.choice}: ${s.reason}`).join('; ')}` +
      (forced ? ` (IACNAS_BACKEND=${forced}; unset it to fall back automatically)` : ''),
  );
}

/**
 * Starts the backend (once per process; later calls return the same result unless
 * a different backend is asked for explicitly, which switches to it) and prints one
 * line to stderr naming it and why better ones were not available.
 */
export function initBackend(opts: { backend?: BackendChoice; quiet?: boolean } = {}): Promise<BackendInfo> {
  if (current && opts.backend === undefined) return current;
  const previous = current;
  const next = (async () => {
    if (previous && opts.backend !== undefined) {
      const info = await previous.catch(() => undefined);
      if (info?.choice === opts.backend) return info;
    }
    return choose(opts);
  })();
  current = next;
  next.catch(() => {
    if (current === next) current = undefined;
  });
  return next;
}
