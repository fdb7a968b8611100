// The container images, checked without a container engine (test/images/images.test.ts
// runs the built images): what each Dockerfile copies is what its entry point loads at
// run time, the operator image may drop TensorFlow.js because the operator never imports
// it, the trainer image's entry point is the command the operator's pods run, the trainer
// images build their native backend with scripts/native-backend.sh in a builder stage
// (the build fails when it cannot load) and their final stage has no compiler, no build
// setting and no forced backend, and every image starts from a Debian-based Node 24 image
// that the NODE_IMAGE build argument can replace.
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

describe.each(['operator', 'trainer', 'trainer-gpu'])('base image of %s.Dockerfile', (name) => {
  const file = `deploy/docker/${name}.Dockerfile`;
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the title names the Dockerfile's ${NODE_IMAGE} build argument
  it('every stage starts FROM ${NODE_IMAGE}, by default a public Debian bookworm Node 24 image (never musl)', () => {
    const text = read(file);
    expect(text).toMatch(/^ARG NODE_IMAGE=node:24-bookworm-slim$/m);
    const froms = [...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    expect(froms.length).toBeGreaterThan(1);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's FROM lines hold a literal ${NODE_IMAGE}
    for (const f of froms) expect(f).toBe('${NODE_IMAGE}');
    expect(text).not.toMatch(/alpine|nvidia\/cuda/);
  });

  it('takes a CA bundle for the downloads as a build argument of the builder stage only', () => {
    const all = stages(file);
    const builders = all.slice(0, -1);
    const args = (s: Stage) => instr(s, 'ARG').map((a) => a.split('=')[0]);
    expect(builders.some((s) => args(s).includes('BUILD_CA_FILE'))).toBe(true);
    expect(args(final(file))).toEqual([]);
    const finalText = final(file)
      .instructions.map((i) => `${i.op} ${i.args}`)
      .join('\n');
    for (const v of ['BUILD_CA_FILE', 'NODE_EXTRA_CA_CERTS', 'PIP_CERT', 'IACNAS_CACHE', 'ca-certificates']) expect(finalText).not.toContain(v);
    // Every RUN that downloads (npm, pip) is given the bundle when there is one.
    for (const run of builders.flatMap((s) => instr(s, 'RUN')).filter((r) => /npm ci|native-backend\.sh/.test(r))) {
      expect(run).toMatch(/^if \[ -n "\$BUILD_CA_FILE" \]; then export NODE_EXTRA_CA_CERTS="\$BUILD_CA_FILE"/);
    }
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

  it(`builds ${backend} with scripts/native-backend.sh at the version the lockfile pins, and fails when it cannot load`, () => {
    const version = lockVersion(backend);
    expect(version).toBeDefined();
    expect(read('scripts/native-backend.sh')).toContain(`TFJS_VERSION=${version}`);
    const builder = all
      .slice(0, -1)
      .flatMap((s) => instr(s, 'RUN'))
      .join(' ');
    expect(builder).toContain('npm ci --omit=dev --omit=optional');
    const native = all.flatMap((s) => instr(s, 'RUN')).filter((r) => r.includes('scripts/native-backend.sh'));
    expect(native).toHaveLength(1);
    expect(native[0]).toMatch(
      backend.endsWith('-gpu') ? /scripts\/native-backend\.sh --gpu --prefix \/app --copy/ : /scripts\/native-backend\.sh --prefix \/app --copy/,
    );
    // The script loads the package and runs a kernel unless --no-check; then the trainer's
    // own backend choice must be native, or the build stops.
    expect(native[0]).not.toContain('--no-check');
    expect(builder).toMatch(/initBackend\(\).*throw new Error\('the trainer chose '/);
    // The stock install (libtensorflow 2.9.1 downloaded from a web host) is gone.
    expect(builder).not.toMatch(/npm install[^&]*@tensorflow\/tfjs-node/);
    // What the script needs, in the builder stage only.
    expect(builder).toMatch(/apt-get install[^&]*python3 python3-pip g\+\+ make patch/);
  });

  it('final stage: the built node_modules and the sources only, no compiler, no scripts, the backend chosen automatically', () => {
    expect(instr(img, 'COPY')).toContain('--from=build /app/node_modules ./node_modules');
    expect(instr(img, 'RUN').join(' ')).not.toMatch(/apt-get|npm |pip|g\+\+|make/);
    expect(copied(img).some((c) => c.startsWith('scripts'))).toBe(false);
    expect(instr(img, 'ENV').join(' ')).not.toContain('IACNAS_BACKEND');
  });
});

describe('GPU trainer image', () => {
  it('is the CUDA 12 route: the nvidia-*-cu12 wheels inside the package, no CUDA base image, the NVIDIA runtime variables set', () => {
    const img = final('deploy/docker/trainer-gpu.Dockerfile');
    expect(img.from).toBe('node:24-bookworm-slim');
    const env = instr(img, 'ENV').join(' ');
    expect(env).toContain('NVIDIA_VISIBLE_DEVICES=all');
    expect(env).toContain('NVIDIA_DRIVER_CAPABILITIES=compute,utility');
    // native-backend.sh --gpu puts the CUDA wheels where libtensorflow's RUNPATH looks.
    expect(read('scripts/native-backend.sh')).toMatch(/\$work\/package\/deps/);
    expect(read('deploy/docker/trainer-gpu.Dockerfile')).toMatch(/binutils/);
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
    const needed = [
      ...new Set([...stages(`deploy/docker/${name}.Dockerfile`).flatMap((s) => copied(s))].map((c) => c.replace(/^\.\//, '').replace(/\/$/, ''))),
    ];
    expect(needed.sort()).toEqual(allowed.sort());
    expect(copied(img).length).toBeGreaterThan(0);
  });
});
