// The dependency rule (docs/DESIGN.md, "Dependencies"): checked over the whole tree.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RULES, importsOf, resolveImport, sourceImports, violations } from './imports.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('the import checker', () => {
  it('reads static imports, re-exports, side-effect imports and import() calls', () => {
    const src = [
      "import { a } from '../a.ts';",
      "import type { B } from './b.ts';",
      'import {\n  c,\n  d,\n} from "../../c.ts";',
      "export * from './e.ts';",
      "export { f } from './f.ts';",
      "import './g.ts';",
      "const h = await import('../h.ts');",
      "// a comment that says import x from 'nowhere' is not code, but is read anyway: harmless",
    ].join('\n');
    expect(importsOf(src)).toEqual(['../a.ts', './b.ts', '../../c.ts', './e.ts', './f.ts', './g.ts', '../h.ts', 'nowhere']);
    expect(resolveImport('operator/src/api/index.ts', '../../../trainer/src/config/index.ts')).toBe('trainer/src/config/index.ts');
    expect(resolveImport('x.ts', '@tensorflow/tfjs-core/dist/x')).toBe('@tensorflow/tfjs-core');
  });

  it('catches each kind of forbidden import and lets the allowed ones through', () => {
    const files = new Map([
      ['contract/src/events.ts', ['../../trainer/src/model/cell.ts']],
      ['operator/src/api/index.ts', ['../../../trainer/src/config/index.ts', '../../../trainer/src/search/search.ts', '../../../contract/src/index.ts']],
      ['operator/src/x.test.ts', ['../../trainer/src/report/progress.ts']],
      ['trainer/src/cli.ts', ['../../operator/src/api/index.ts']],
      ['trainer/src/model/init.ts', ['../data/random.ts']],
      ['trainer/src/data/source.ts', ['../../testing/data/fake.ts', 'vitest']],
      ['trainer/src/data/source.test.ts', ['../../testing/data/fake.ts', 'vitest']],
      ['trainer/src/training/history.ts', ['../phases/search.ts']],
    ]);
    const found = violations(files).map((v) => `${v.file} -> ${v.imports}`);
    expect(found).toEqual([
      'contract/src/events.ts -> trainer/src/model/cell.ts',
      'operator/src/api/index.ts -> trainer/src/search/search.ts',
      'operator/src/x.test.ts -> trainer/src/report/progress.ts',
      'trainer/src/cli.ts -> operator/src/api/index.ts',
      'trainer/src/model/init.ts -> trainer/src/data/random.ts',
      'trainer/src/data/source.ts -> trainer/testing/data/fake.ts',
      'trainer/src/data/source.ts -> vitest',
      'trainer/src/training/history.ts -> trainer/src/phases/search.ts',
    ]);
  });
});

describe('the tree', () => {
  const files = sourceImports(repo, ['bin', 'contract', 'operator', 'trainer', 'test']);

  it('keeps the dependency rule', () => {
    const found = violations(files).map((v) => `${v.file} imports ${v.imports}: ${v.why}`);
    expect(found).toEqual([]);
  });

  it('is read whole: every rule is about a folder that exists and holds sources', () => {
    for (const rule of RULES) {
      expect(existsSync(path.join(repo, rule.from)), rule.from).toBe(true);
      expect(
        [...files.keys()].some((f) => f.startsWith(rule.from)),
        rule.from,
      ).toBe(true);
    }
    // Every relative import names a file that exists: a resolver error would hide violations.
    // (This folder's own files quote imports in strings.)
    const missing = [...files]
      .filter(([file]) => !file.startsWith('test/architecture/'))
      .flatMap(([file, specs]) => specs.filter((s) => s.startsWith('.') && !existsSync(path.join(repo, resolveImport(file, s)))).map((s) => `${file}: ${s}`));
    expect(missing).toEqual([]);
  });
});
