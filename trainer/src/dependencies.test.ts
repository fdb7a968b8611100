// The trainer's folders depend on each other one way (docs/DESIGN.md): these checks read
// the imports of every production file under trainer/src.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const repo = resolve(import.meta.dirname, '..', '..');
const src = join(repo, 'trainer', 'src');

function productionFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return productionFiles(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}

/** Repository-relative paths of what each production file imports (static and dynamic, relative specifiers only). */
const imports = new Map(
  productionFiles(src).map((file) => {
    const text = readFileSync(file, 'utf8');
    const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]);
    return [relative(repo, file), specs.map((s) => relative(repo, resolve(dirname(file), s)))];
  }),
);

function violations(from: string, to: string): string[] {
  return [...imports].flatMap(([file, targets]) => (file.startsWith(from) ? targets.filter((t) => t.startsWith(to)).map((t) => `${file} -> ${t}`) : []));
}

describe('trainer dependencies', () => {
  it.each([
    ['trainer/src/training/', 'trainer/src/phases/'],
    ['trainer/src/search/', 'trainer/src/phases/'],
    ['trainer/src/model/', 'trainer/src/data/'],
    ['trainer/src/model/', 'trainer/src/training/'],
    ['trainer/src/data/', 'trainer/src/model/'],
    ['trainer/src/phases/', 'trainer/src/cli.ts'],
    ['trainer/src/', 'trainer/testing/'],
    ['trainer/src/', 'operator/'],
  ])('nothing under %s imports %s', (from, to) => {
    expect(violations(from, to)).toEqual([]);
  });

  it('reads some imports (the check above is not empty by accident)', () => {
    expect(imports.get('trainer/src/cli.ts')).toContain('trainer/src/phases/registry.ts');
  });
});
