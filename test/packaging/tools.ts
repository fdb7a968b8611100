// Finds the external tools the packaging suites run (helm, promtool, prometheus,
// lua5.1, kubectl) and decides what a suite does without one: outside CI it skips with
// a message saying how to get the tool; in CI (CI=true) it never skips, it fails.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

export type ToolName = 'helm' | 'promtool' | 'prometheus' | 'lua5.1' | 'kubectl';

const howToGet: Record<ToolName, string> = {
  helm: 'build it with test/packaging/build-tools.sh (from the helm.sh/helm/v3 Go module; needs Go)',
  promtool: 'build it with test/packaging/build-tools.sh (from the github.com/prometheus/prometheus Go module; needs Go)',
  prometheus: 'build it with test/packaging/build-tools.sh (from the github.com/prometheus/prometheus Go module; needs Go)',
  'lua5.1': 'install the Lua 5.1 interpreter: apt-get install -y lua5.1 (Debian/Ubuntu)',
  kubectl: 'build it with test/cluster/build.sh (from the k8s.io/kubernetes Go module; needs Go)',
};

let toolsDirMemo: string | undefined;
/** The cache directory build-tools.sh writes to (it honours IACNAS_TOOLS_DIR and the versions). */
export function toolsDir(): string {
  toolsDirMemo ??= execFileSync('bash', [join(repoRoot, 'test/packaging/build-tools.sh'), '--print-dir'], {
    encoding: 'utf8',
  }).trim();
  return toolsDirMemo;
}

function k8sBinDir(): string {
  const version = process.env.K8S_VERSION ?? 'v1.34.4';
  return process.env.IACNAS_K8S_BIN_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'iac-operator', `k8s-${version}`, 'bin');
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Absolute path of the tool, or undefined. The project's own caches win over PATH. */
export function findTool(name: ToolName): string | undefined {
  const candidates: string[] = [];
  if (name === 'helm' || name === 'promtool' || name === 'prometheus') candidates.push(join(toolsDir(), name));
  if (name === 'kubectl') candidates.push(join(k8sBinDir(), name));
  for (const c of candidates) if (existsSync(c)) return c;
  if (name === 'lua5.1') return onPath('lua5.1') ?? luaFallback();
  return onPath(name);
}

// A `lua` on PATH is accepted only when it is Lua 5.1, the dialect Argo CD runs (gopher-lua).
function luaFallback(): string | undefined {
  const lua = onPath('lua');
  if (!lua) return undefined;
  const r = spawnSync(lua, ['-v'], { encoding: 'utf8' });
  return /Lua 5\.1/.test(`${r.stdout}${r.stderr}`) ? lua : undefined;
}

export interface ToolCheck {
  /** Paths of the tools, by name; only meaningful when `missing` is empty. */
  paths: Record<string, string>;
  missing: ToolName[];
  /** True when the suite should skip (tools missing, not in CI). */
  skip: boolean;
  /** Throws in CI when a tool is missing; call it first in beforeAll. */
  assertPresent(): void;
}

export function requireTools(...names: ToolName[]): ToolCheck {
  const paths: Record<string, string> = {};
  const missing: ToolName[] = [];
  for (const n of names) {
    const p = findTool(n);
    if (p) paths[n] = p;
    else missing.push(n);
  }
  const message = missing.map((n) => `${n} not found: ${howToGet[n]}`).join('\n');
  if (missing.length > 0 && !inCI) {
    console.warn(`packaging tests skipped:\n${message}`);
  }
  return {
    paths,
    missing,
    skip: missing.length > 0 && !inCI,
    assertPresent() {
      if (missing.length > 0) throw new Error(`CI=true and required tools are missing:\n${message}`);
    },
  };
}

/** Runs a tool; returns its exit status and output instead of throwing. */
export function run(
  file: string,
  args: string[],
  opts: { cwd?: string; input?: string; timeoutMs?: number } = {},
): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(file, args, {
    cwd: opts.cwd ?? repoRoot,
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A rendered Kubernetes object (helm template output). */
export type RenderedObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are read by path; each test reads the fields it checks
  [k: string]: any;
};

/** `helm template` of the chart with `--set` values, parsed; throws with helm's stderr on failure. */
export function helmTemplate(helm: string, sets: string[] = [], ns = 'iac-system'): RenderedObject[] {
  const args = ['template', 'iac-operator', resolve(repoRoot, 'charts/iac-operator'), '--namespace', ns];
  for (const s of sets) args.push('--set', s);
  const r = run(helm, args);
  if (r.status !== 0) throw new Error(`helm template ${sets.join(' ')} failed:\n${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as RenderedObject | null)
    .filter((o): o is RenderedObject => o !== null);
}
