// The dependency rule of docs/DESIGN.md as data: which folder may import which. Read by
// imports.test.ts over the whole tree (and over small made-up trees, so that the checker
// itself is known to catch what it should).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

export interface Rule {
  /** Files the rule is about: a repository-relative path prefix (a folder ends with '/'). */
  from: string;
  /** Files they must not import (path prefixes, or bare package names). */
  forbid: string[];
  /** Exceptions to `forbid` (path prefixes). */
  allow?: string[];
  /** Whether test files (*.test.ts) are held to it too. */
  tests?: boolean;
  /** Why: printed with a violation. */
  why: string;
}

const PRODUCTION = ['contract/src/', 'operator/src/', 'trainer/src/'];

export const RULES: Rule[] = [
  { from: 'contract/', forbid: ['operator/', 'trainer/', 'bin/', 'test/'], tests: true, why: 'the contract is what both sides import; it imports neither' },
  {
    from: 'operator/',
    forbid: ['trainer/'],
    allow: ['trainer/src/config/'],
    tests: true,
    why: 'the operator knows the trainer only by its configuration schema and the contract (the operator image holds trainer/src/config and nothing else of the trainer)',
  },
  { from: 'trainer/', forbid: ['operator/'], tests: true, why: 'the trainer never imports the operator' },
  {
    from: 'trainer/src/config/',
    forbid: ['trainer/src/'],
    allow: ['trainer/src/config/'],
    why: 'the configuration schema is the part of the trainer the operator image carries: it stands alone',
  },
  ...PRODUCTION.map((from) => ({
    from,
    forbid: ['operator/testing/', 'trainer/testing/', 'test/', 'vitest'],
    why: 'production code does not depend on test support',
  })),
  { from: 'trainer/src/training/', forbid: ['trainer/src/phases/', 'trainer/src/cli.ts'], why: 'the training infrastructure is used by phases and uses none' },
  {
    from: 'trainer/src/search/',
    forbid: ['trainer/src/phases/', 'trainer/src/cli.ts'],
    why: 'the search algorithm is used by the search phase and uses no phase',
  },
  { from: 'trainer/src/phases/', forbid: ['trainer/src/cli.ts'], why: 'the phases are registered with the command, never the other way round' },
  { from: 'trainer/src/model/', forbid: ['trainer/src/data/', 'trainer/src/training/'], why: 'the model knows no data layer and no training' },
  { from: 'trainer/src/data/', forbid: ['trainer/src/model/'], why: 'the data layer knows no model' },
];

/** The import specifiers of a TypeScript source: static imports, re-exports and import('...'). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s[^'";]*?\sfrom\s+['"]([^'"]+)['"]|(?:^|[\s;])import\s+['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;
  for (const m of source.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

/** A specifier as a repository-relative path (relative ones resolved from `file`), or the bare package name. */
export function resolveImport(file: string, specifier: string): string {
  if (!specifier.startsWith('.'))
    return specifier.startsWith('node:')
      ? specifier
      : specifier
          .split('/')
          .slice(0, specifier.startsWith('@') ? 2 : 1)
          .join('/');
  return path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
}

export interface Violation {
  file: string;
  imports: string;
  why: string;
}

const under = (p: string, prefix: string) => (prefix.endsWith('/') ? p.startsWith(prefix) : p === prefix || p.startsWith(`${prefix}/`));

/** Every import of `files` (repository-relative path -> its specifiers) that a rule forbids. */
export function violations(files: ReadonlyMap<string, readonly string[]>, rules: readonly Rule[] = RULES): Violation[] {
  const out: Violation[] = [];
  for (const [file, specifiers] of files) {
    const isTest = file.endsWith('.test.ts');
    for (const rule of rules) {
      if (!under(file, rule.from) || (isTest && !rule.tests)) continue;
      for (const s of specifiers) {
        const target = resolveImport(file, s);
        if (rule.forbid.some((f) => under(target, f)) && !rule.allow?.some((a) => under(target, a))) out.push({ file, imports: target, why: rule.why });
      }
    }
  }
  return out;
}

/** The TypeScript files under `roots` of the repository at `repo`, with their import specifiers. */
export function sourceImports(repo: string, roots: readonly string[]): Map<string, string[]> {
  const files = new Map<string, string[]>();
  const walk = (rel: string) => {
    for (const e of readdirSync(path.join(repo, rel), { withFileTypes: true })) {
      const p = path.posix.join(rel, e.name);
      if (e.isDirectory() && e.name !== 'node_modules') walk(p);
      else if (e.isFile() && p.endsWith('.ts')) files.set(p, importsOf(readFileSync(path.join(repo, p), 'utf8')));
    }
  };
  for (const r of roots) walk(r);
  return files;
}
