import { defineConfig } from 'vitest/config';

// Tests run in forked processes: tfjs keeps global backend state, and the wasm
// backend must not be shared between test files.
export default defineConfig({
  test: {
    include: ['{contract,trainer,operator,test}/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/bench/results/**'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ['default'],
  },
});
