// The container images, checked without a container engine (there is none on CI):
// what each Dockerfile copies is what its entry point loads at run time, the operator
// image may drop TensorFlow.js because the operator never imports it, the trainer
// image's entry point is the command the operator's pods run, and the GPU image's CUDA
// and cuDNN are the ones @tensorflow/tfjs-node-gpu's libtensorflow was built for.
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { TRAINER_COMMAND } from '../../operator/src/reconcile/children.ts';
import { repoRoot } from './tools.ts';

const read = (p: string) => readFileSync(join(repoRoot, p), 'utf8');

/** Run-time imports of a module: static and dynamic, not `import type`. */
function runtimeImports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(/^\s*(?:import|export)\s+(?!type\s)(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)) out.push(m[1]);
  for (const m of src.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]);
  return out;
}

/** Files and packages reached from an entry module. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [resolve(repoRoot, entry)];
  while (todo.length > 0) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    for (const spec of runtimeImports(f)) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(f), spec);
        if (!existsSync(target)) throw new Error(`${relative(repoRoot, f)} imports missing ${spec}`);
        todo.push(target);
      } else if (!spec.startsWith('node:')) {
        packages.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
      }
    }
  }
  return { files: new Set([...files].map((f) => relative(repoRoot, f))), packages };
}

interface Stage {
  from: string;
  instructions: Array<{ op: string; args: string }>;
}
/** Dockerfile stages with their instructions (continuation lines joined). */
function stages(dockerfile: string): Stage[] {
  const text = read(dockerfile).replace(/\\\n/g, ' ');
  const args = new Map<string, string>();
  const out: Stage[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(line);
    if (!m || line.trim().startsWith('#')) continue;
    const [, op, rest] = m;
    if (op === 'ARG' && out.length === 0) {
      const [k, v] = rest.split('=');
      args.set(k.trim(), (v ?? '').trim());
    } else if (op === 'FROM') {
      out.push({ from: rest.split(/\s+AS\s+/i)[0].replace(/\$\{(\w+)\}/g, (_, k) => args.get(k) ?? ''), instructions: [] });
    } else out.at(-1)?.instructions.push({ op, args: rest.trim() });
  }
  return out;
}
const final = (dockerfile: string) => stages(dockerfile).at(-1)!;
const instr = (s: Stage, op: string) => s.instructions.filter((i) => i.op === op).map((i) => i.args);
/** Repository paths the final stage copies from the build context. */
const copied = (s: Stage) =>
  instr(s, 'COPY')
    .filter((a) => !a.startsWith('--from'))
    .flatMap((a) => a.split(/\s+/).slice(0, -1));
const isCopied = (s: Stage, file: string) => copied(s).some((c) => file === c || file.startsWith(`${c.replace(/\/$/, '')}/`));

const lockVersion = (pkg: string) =>
  (JSON.parse(read('package-lock.json')) as { packages: Record<string, { version?: string }> }).packages[`node_modules/${pkg}`]?.version;

describe('operator image (deploy/docker/operator.Dockerfile)', () => {
  const img = final('deploy/docker/operator.Dockerfile');

  it('copies every module `iacnas operator` loads, and the operator never loads TensorFlow.js', () => {
    const graph = importGraph('operator/src/main.ts');
    expect(graph.files.size).toBeGreaterThan(5);
    for (const f of graph.files) expect(isCopied(img, f), `${f} is not copied into the operator image`).toBe(true);
    // The image deletes these packages after npm ci.
    expect([...graph.packages].filter((p) => p.startsWith('@tensorflow/'))).toEqual([]);
    const deps = (JSON.parse(read('package.json')) as { dependencies: Record<string, string> }).dependencies;
    for (const p of graph.packages) expect(Object.keys(deps), `${p} is not a production dependency`).toContain(p);
    expect(isCopied(img, 'bin/iacnas.ts')).toBe(true);
  });

  it('runs `node bin/iacnas.ts operator` as a numeric non-root user on Node 24', () => {
    expect(img.from).toMatch(/^node:24-/);
    expect(instr(img, 'USER')).toEqual(['1000:1000']);
    expect(instr(img, 'ENTRYPOINT')).toEqual(['["node", "/app/bin/iacnas.ts"]']);
    expect(instr(img, 'CMD')).toEqual(['["operator"]']);
  });
});

describe.each([
  ['deploy/docker/trainer.Dockerfile', '@tensorflow/tfjs-node'],
  ['deploy/docker/trainer-gpu.Dockerfile', '@tensorflow/tfjs-node-gpu'],
])('trainer image %s', (dockerfile, backend) => {
  const img = final(dockerfile);
  const all = stages(dockerfile);

  it('runs the command the operator puts in trainer pods, as a numeric non-root user', () => {
    expect(instr(img, 'ENTRYPOINT')).toEqual([JSON.stringify(TRAINER_COMMAND).replace(/,/g, ', ')]);
    expect(instr(img, 'RUN').join(' ')).toContain(`ln -s /app/bin/iacnas.ts /usr/local/bin/${TRAINER_COMMAND[0]}`);
    expect(instr(img, 'USER')).toEqual(['1000:1000']);
    expect(read('bin/iacnas.ts').split('\n')[0]).toBe('#!/usr/bin/env node');
  });

  it('copies every module `iacnas trainer` and `iacnas dataset` load', () => {
    for (const entry of ['trainer/src/cli.ts', 'trainer/src/data/cli.ts']) {
      const graph = importGraph(entry);
      for (const f of graph.files) expect(isCopied(img, f), `${f} (from ${entry}) is not copied into ${dockerfile}`).toBe(true);
    }
  });

  it(`installs ${backend} at the version the lockfile pins`, () => {
    const version = lockVersion(backend);
    expect(version).toBeDefined();
    const install = all.flatMap((s) => instr(s, 'RUN')).join(' ');
    expect(install).toContain(`npm ci --omit=dev --omit=optional`);
    expect(install).toContain(`${backend}@${version}`);
  });
});

describe('GPU trainer image base', () => {
  it('uses CUDA 11.2 and cuDNN 8, what libtensorflow 2.9.1 of tfjs-node-gpu 4.22 was built against', () => {
    // tfjs-node-gpu 4.x downloads libtensorflow 2.9.1 (scripts/deps-constants.js);
    // TensorFlow 2.9's tested GPU configuration is CUDA 11.2 with cuDNN 8.1.
    expect(lockVersion('@tensorflow/tfjs-node-gpu')).toBe('4.22.0');
    const img = final('deploy/docker/trainer-gpu.Dockerfile');
    expect(img.from).toMatch(/^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime-ubuntu20\.04$/);
    expect(instr(img, 'COPY').some((c) => c.startsWith('--from=node /usr/local/bin/node'))).toBe(true);
    expect(instr(img, 'ENV').join(' ')).toContain('IACNAS_BACKEND=tensorflow-gpu');
  });
});

describe('.dockerignore of each image', () => {
  it.each(['operator', 'trainer', 'trainer-gpu'])('%s: lets through exactly what the Dockerfile copies', (name) => {
    const ignore = read(`deploy/docker/${name}.Dockerfile.dockerignore`)
      .split('\n')
      .filter((l) => l && !l.startsWith('#'));
    expect(ignore[0]).toBe('*');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    const img = final(`deploy/docker/${name}.Dockerfile`);
    const needed = [...new Set([...stages(`deploy/docker/${name}.Dockerfile`).flatMap((s) => copied(s))].map((c) => c.replace(/^\.\//, '').replace(/\/$/, '')))];
    expect(needed.sort()).toEqual(allowed.sort());
    expect(copied(img).length).toBeGreaterThan(0);
  });
});
