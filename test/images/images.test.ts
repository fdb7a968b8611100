// The built container images (test/images/build.sh), run with podman:
// - trainer-cpu runs the four phases of a small phantom search exactly as the operator's
//   pods run them (command, args, env and security context from buildPod(): uid 1000,
//   read-only root, no capabilities, no privilege escalation, /tmp an emptyDir, the
//   artifacts a volume), on the native backend it chose by itself;
// - trainer-gpu loads tfjs-node-gpu (TensorFlow 2.21, CUDA 12) on a machine without a GPU
//   and runs on its CPU kernels, saying so;
// - the operator image answers /healthz, /readyz and /metrics against a real API server;
// - no image holds a compiler, pip, a test file or the host's extra CA certificates, and
//   the operator archive imports into containerd under its localhost/ name.
// Outside CI, missing images leave the suite out with one line saying how to build them;
// in CI (CI=true) they fail it.
import { execFile, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  openSync,
  readSync,
  closeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseIACSearch } from '../../operator/src/api/index.ts';
import { STAGES } from '../../operator/src/api/status.ts';
import { buildPod } from '../../operator/src/reconcile/children.ts';
import type { KubeObject } from '../../operator/src/reconcile/types.ts';
import { findBinaries } from '../cluster/binaries.ts';
import { freePort, waitFor } from '../cluster/control-plane.ts';
import { startE2E, type E2EEnv } from '../e2e/env.ts';
import { CONTAINERS_CONF, findImages, gpuImageWanted, repoRoot, type ImageName } from './images.ts';

const run = promisify(execFile);
const inCI = process.env.CI === 'true' || process.env.CI === '1';
const lookup = findImages();
if (!lookup.ok && !inCI) console.warn(`skipping image tests: ${lookup.reason}`);
const gpu = gpuImageWanted();
if (!gpu) console.warn('skipping the trainer-gpu image tests: IACNAS_IMAGES_GPU=0');
const built = (['operator', 'trainer-cpu', 'trainer-gpu'] as const).filter((n) => n !== 'trainer-gpu' || gpu);

const podmanEnv = { ...process.env, CONTAINERS_CONF };
async function podman(args: string[], timeoutMs = 600_000): Promise<{ stdout: string; stderr: string }> {
  return run('podman', args, { env: podmanEnv, maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs });
}
/** podman run that resolves with the exit code instead of throwing. */
function podmanRun(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn('podman', ['run', ...args], { env: podmanEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A small phantom search (a few epochs of each phase; the images are under test, not the method). */
/**
 * The first stderr line the trainer wrote itself. TensorFlow's C++ library writes to
 * the same descriptor while it loads, before any line of ours, whatever
 * TF_CPP_MIN_LOG_LEVEL says, on CPUs where it turns oneDNN on by default (AVX-512:
 * "I0000 ... port.cc:153] oneDNN custom operations are on", after absl's "WARNING: All
 * log messages before absl::InitializeLog() is called are written to STDERR").
 */
function firstOwnLine(stderr: string): string {
  const tensorflow = /^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} \d\d:\d\d:\S+\s+\d+ [\w.]+:\d+\] )/;
  return stderr.split('\n').find((l) => l !== '' && !tensorflow.test(l)) ?? '';
}

function tinySearch() {
  type Section = Record<string, unknown>;
  const doc = parseYaml(readFileSync(path.join(repoRoot, 'deploy/examples/phantom-quick.yaml'), 'utf8')) as {
    metadata?: unknown;
    spec: { dataset: Section; backbone: Section; search: Section & { stability?: Section }; retrain: Section };
  };
  doc.metadata = { name: 'image-test', namespace: 'default' };
  doc.spec.dataset.cases = 8;
  doc.spec.backbone.pretrainEpochs = 6;
  Object.assign(doc.spec.search, { maxEpochs: 8, warmupEpochs: 2, stepsPerEpoch: 3 });
  doc.spec.search.stability = { ...doc.spec.search.stability, window: 2, patience: 2 };
  Object.assign(doc.spec.retrain, { epochs: 6, stepsPerEpoch: 4, earlyStoppingPatience: 6 });
  const parsed = parseIACSearch(doc);
  if (!parsed.ok) throw new Error(`tiny search invalid: ${parsed.message}`);
  return parsed.search;
}

interface SecurityContext {
  runAsUser?: number;
  runAsGroup?: number;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { drop?: string[] };
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  seccompProfile?: { type: string };
}

/** The parts of a trainer pod that the podman run stands in for. */
type TrainerPod = KubeObject & {
  spec: {
    securityContext: SecurityContext;
    containers: {
      image: string;
      command: string[];
      args: string[];
      securityContext: SecurityContext;
      volumeMounts: { name: string; mountPath: string }[];
      resources: { limits: { cpu: string; memory: string } };
      env: { name: string; value?: string }[];
    }[];
    volumes: { name: string; emptyDir?: object; persistentVolumeClaim?: object }[];
  };
};

/** podman flags of a pod container's securityContext, resources and volumes (trainer pods). */
function podmanFlags(pod: TrainerPod, artifactsDir: string): string[] {
  const podSc = pod.spec.securityContext;
  const c = pod.spec.containers[0];
  const sc = c.securityContext;
  const flags = ['--rm', '--network=none', `--user=${sc.runAsUser ?? podSc.runAsUser}:${sc.runAsGroup ?? podSc.runAsGroup}`];
  if (sc.readOnlyRootFilesystem) flags.push('--read-only', '--read-only-tmpfs=false');
  for (const cap of sc.capabilities?.drop ?? []) flags.push(`--cap-drop=${cap}`);
  if (sc.allowPrivilegeEscalation === false) flags.push('--security-opt=no-new-privileges');
  if (sc.privileged) flags.push('--privileged');
  // seccompProfile RuntimeDefault: podman's default profile.
  expect(sc.seccompProfile?.type ?? podSc.seccompProfile?.type).toBe('RuntimeDefault');
  const volumes = new Map(pod.spec.volumes.map((v) => [v.name, v]));
  for (const m of c.volumeMounts) {
    const v = volumes.get(m.name);
    if (v?.emptyDir) flags.push(`--tmpfs=${m.mountPath}:rw,mode=1777,size=1g`);
    else if (v?.persistentVolumeClaim && m.mountPath === '/artifacts') flags.push(`--volume=${artifactsDir}:${m.mountPath}:rw`);
    else throw new Error(`no stand-in for volume ${m.name}`);
  }
  const lim = c.resources.limits;
  flags.push(`--cpus=${lim.cpu}`, `--memory=${lim.memory.replace(/i$/, '').toLowerCase()}`);
  for (const e of c.env) if (e.value !== undefined) flags.push(`--env=${e.name}=${e.value}`);
  return flags;
}

/** The host's locally added CA certificates (update-ca-certificates), as byte strings to look for. */
function hostExtraCAs(): Array<{ name: string; needles: Buffer[] }> {
  const dir = '/usr/local/share/ca-certificates';
  if (!existsSync(dir)) return [];
  const out: Array<{ name: string; needles: Buffer[] }> = [];
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith('.crt') ? [path.join(d, e.name)] : [],
    );
  for (const file of walk(dir)) {
    for (const pem of readFileSync(file, 'utf8').matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)) {
      const lines = pem[1].split(/\r?\n/).filter((l) => l.length === 64);
      const der = Buffer.from(pem[1].replace(/\s+/g, ''), 'base64');
      const mid = Math.floor(der.length / 2);
      // Two PEM lines from its middle (the key, not a shared issuer prefix) and 48 DER bytes.
      out.push({
        name: path.relative(dir, file),
        needles: [Buffer.from(lines[Math.floor(lines.length / 2)]), Buffer.from(lines[Math.floor(lines.length / 2) + 1]), der.subarray(mid, mid + 48)],
      });
    }
  }
  return out;
}

/** Files under `root` (an image's mounted root) that contain any needle. */
function filesContaining(root: string, needles: Buffer[]): string[] {
  const hits: string[] = [];
  const chunk = Buffer.alloc(8 * 1024 * 1024);
  const overlap = Math.max(...needles.map((n) => n.length));
  const scan = (file: string) => {
    const fd = openSync(file, 'r');
    try {
      let carry = Buffer.alloc(0);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) return;
        const buf = Buffer.concat([carry, chunk.subarray(0, n)]);
        if (needles.some((needle) => buf.includes(needle))) {
          hits.push(path.relative(root, file));
          return;
        }
        carry = Buffer.from(buf.subarray(Math.max(0, buf.length - overlap)));
      }
    } finally {
      closeSync(fd);
    }
  };
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) scan(p);
    }
  };
  walk(root);
  return hits;
}

const sizes: Record<string, number> = {};

describe.skipIf(!lookup.ok && !inCI)('container images (test/images/build.sh)', () => {
  const refs = (lookup.ok ? lookup.refs : {}) as Record<ImageName, string>;
  let work: string;

  beforeAll(async () => {
    if (!lookup.ok) throw new Error(lookup.reason);
    work = mkdtempSync(path.join(os.tmpdir(), 'iacnas-images-'));
    chmodSync(work, 0o755);
    for (const [name, ref] of Object.entries(refs)) {
      const { stdout } = await podman(['image', 'inspect', '--format', '{{.Size}}', ref]);
      sizes[name] = Number(stdout.trim());
    }
    process.stderr.write(
      `image sizes: ${Object.entries(sizes)
        .map(([n, s]) => `${n} ${(s / 1e6).toFixed(0)} MB`)
        .join(', ')}\n`,
    );
  });
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('sizes: operator under 400 MB, trainer-cpu under 1.5 GB, trainer-gpu under 8 GB', () => {
    expect(sizes.operator).toBeLessThan(400e6);
    expect(sizes['trainer-cpu']).toBeLessThan(1.5e9);
    if (gpu) expect(sizes['trainer-gpu']).toBeLessThan(8e9);
  });

  it.each(built)('%s: no compiler, make, pip or python, no test files, runs as 1000:1000', async (name) => {
    const script = [
      'for c in cc gcc g++ c++ clang make python3 pip pip3; do command -v "$c" && echo "found: $c"; done',
      'ls /usr/bin /usr/local/bin | grep -E "^(x86_64-linux-gnu-)?(gcc|g\\+\\+|cpp)(-[0-9]+)?$" | sed "s/^/found: /"',
      'find / -xdev \\( -name "*.test.ts" -o -name "*.spec.ts" \\) -not -path "/proc/*" 2>/dev/null | sed "s/^/test file: /"',
      'echo "uid=$(id -u) gid=$(id -g)"',
    ].join('; ');
    const { stdout } = await podman(['run', '--rm', '--network=none', '--entrypoint', '/bin/sh', refs[name], '-c', script]);
    expect(stdout.split('\n').filter((l) => l.startsWith('found: ') || l.startsWith('test file: '))).toEqual([]);
    expect(stdout).toContain('uid=1000 gid=1000');
  });

  it.each(built)(
    "%s: holds none of the host's extra CA certificates and no build-only setting",
    async (name) => {
      const cas = hostExtraCAs();
      process.stderr.write(`${name}: looking for ${cas.length} host CA certificate(s) (${cas.map((c) => c.name).join(', ') || 'none'})\n`);
      const { stdout: cfg } = await podman(['image', 'inspect', '--format', '{{json .Config.Env}} {{json .Config.Labels}}', refs[name]]);
      for (const v of ['NODE_EXTRA_CA_CERTS', 'PIP_CERT', 'BUILD_CA_FILE', 'IACNAS_CACHE', '/run/iacnas']) expect(cfg).not.toContain(v);
      const { stdout: history } = await podman(['history', '--no-trunc', '--format', '{{.CreatedBy}}', refs[name]]);
      expect(history).not.toContain('BUILD_CA_FILE');
      if (cas.length === 0) return;
      // The search does find them where they are: the host's own bundle.
      if (existsSync('/etc/ssl/certs/ca-certificates.crt'))
        expect(
          filesContaining(
            '/etc/ssl/certs',
            cas.flatMap((c) => c.needles),
          ).length,
        ).toBeGreaterThan(0);
      const { stdout: mnt } = await podman(['image', 'mount', refs[name]]);
      try {
        const hits = filesContaining(
          mnt.trim(),
          cas.flatMap((c) => c.needles),
        );
        expect(hits, `files of ${name} holding a host CA certificate`).toEqual([]);
      } finally {
        await podman(['image', 'unmount', refs[name]]);
      }
    },
    600_000,
  );

  it("trainer-cpu runs search, prune, retrain and evaluate as the operator's pods do, on the native backend it chose itself", async () => {
    const search = tinySearch();
    const artifacts = path.join(work, 'artifacts');
    mkdirSync(artifacts);
    chownSync(artifacts, 1000, 1000); // the pod's fsGroup owns the volume
    const t0 = Date.now();
    const firstLines: string[] = [];
    for (const stage of STAGES) {
      const pod = buildPod(search, stage, 0, { defaultImage: refs['trainer-cpu'] }) as TrainerPod;
      const c = pod.spec.containers[0];
      expect(c.image).toBe(refs['trainer-cpu']);
      const flags = podmanFlags(pod, artifacts);
      const t = Date.now();
      const res = await podmanRun([...flags, `--entrypoint=${c.command[0]}`, c.image, ...c.args], 600_000);
      process.stderr.write(`trainer-cpu ${stage}: exit ${res.code} after ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
      expect(res.code, `${stage} failed:\n${res.stderr.slice(-4000)}`).toBe(0);
      // prune reads the search checkpoint only and starts no TensorFlow.js backend.
      if (stage === 'prune') continue;
      const first = firstOwnLine(res.stderr);
      expect(first, `${stage}: the first line names the backend`).toMatch(/^iacnas: tfjs backend /);
      firstLines.push(first);
    }
    expect(firstLines).toHaveLength(3);
    process.stderr.write(`trainer-cpu: four phases in ${((Date.now() - t0) / 1000).toFixed(0)} s; ${firstLines[0]}\n`);
    for (const line of firstLines) {
      // Chosen automatically (not forced): the GPU package is not in this image, the CPU one is.
      expect(line).toMatch(/^iacnas: tfjs backend tensorflow \(TensorFlow 2\.21\.0, CPU\) \(tensorflow-gpu: @tensorflow\/tfjs-node-gpu not loadable/);
      expect(line).not.toContain('forced');
    }
    const results = JSON.parse(readFileSync(path.join(artifacts, 'results.json'), 'utf8'));
    expect(results.split).toBe('test');
    expect(Object.keys(results.model.dicePerClass)).toEqual(['LV', 'MYO', 'RV']);
    const dice = Number(results.model.meanDice);
    expect(dice).toBeGreaterThan(0.3);
    expect(dice).toBeLessThanOrEqual(1);
    for (const f of ['genotype.json', 'patients.csv', 'report.html', 'search/history.jsonl', 'retrain/model'])
      expect(existsSync(path.join(artifacts, f)), f).toBe(true);
    // Everything the pod wrote belongs to the pod's user.
    expect(statSync(path.join(artifacts, 'results.json')).uid).toBe(1000);
    process.stderr.write(`trainer-cpu: test mean Dice ${dice.toFixed(3)}\n`);
  }, 1_800_000);

  it.skipIf(!gpu)(
    'trainer-gpu loads tfjs-node-gpu (TensorFlow 2.21, CUDA 12) without a GPU and runs on its CPU kernels',
    async () => {
      const script = [
        "const b = await import('/app/trainer/src/backend/index.ts');",
        'const info = await b.initBackend();',
        "const tf = await import('@tensorflow/tfjs-core');",
        'const y = tf.conv2d(tf.ones([1, 5, 5, 2]), tf.ones([3, 3, 2, 1]), 1, "same");',
        'console.log(JSON.stringify({ choice: info.choice, conv: (await y.data())[12] }));',
      ].join(' ');
      const res = await podmanRun(
        [
          '--rm',
          '--network=none',
          '--user=1000:1000',
          '--read-only',
          '--read-only-tmpfs=false',
          '--cap-drop=ALL',
          '--security-opt=no-new-privileges',
          '--tmpfs=/tmp:rw,mode=1777',
          '--workdir=/app',
          '--entrypoint=node',
          refs['trainer-gpu'],
          '--input-type=module',
          '-e',
          script,
        ],
        300_000,
      );
      process.stderr.write(`trainer-gpu without a GPU:\n${res.stderr.trim()}\n`);
      expect(res.code, res.stderr.slice(-3000)).toBe(0);
      expect(JSON.parse(res.stdout.trim().split('\n').at(-1)!)).toEqual({ choice: 'tensorflow', conv: 18 });
      // The automatic choice says why the GPU backend was passed over and which package runs.
      expect(res.stderr).toMatch(
        /iacnas: tfjs backend tensorflow \(TensorFlow 2\.21\.0, CPU, @tensorflow\/tfjs-node-gpu\) \(tensorflow-gpu: @tensorflow\/tfjs-node-gpu loaded but no CUDA device is visible/,
      );
      // TensorFlow's own line: no driver (libcuda.so.1 comes from the host's NVIDIA
      // container toolkit, absent here), so cuInit fails and TensorFlow goes on without CUDA.
      expect(res.stderr).toMatch(/failed call to cuInit/);
    },
    300_000,
  );

  describe('operator image against a real API server', () => {
    const bins = findBinaries();
    if (!bins.ok && !inCI) console.warn(`skipping the operator image's API-server test: ${bins.reason}`);
    let env: E2EEnv | undefined;
    afterAll(async () => {
      await env?.stop();
    });

    it.skipIf(!bins.ok && !inCI)(
      'starts as 1000:1000 with a read-only root and answers /healthz, /readyz and /metrics',
      async () => {
        if (!bins.ok) throw new Error(bins.reason);
        env = await startE2E();
        const kubeconfig = path.join(work, 'kubeconfig');
        writeFileSync(kubeconfig, readFileSync(env.cluster.kubeconfigPath));
        chmodSync(kubeconfig, 0o644);
        const port = await freePort();
        const name = `iacnas-operator-image-${process.pid}`;
        await podman([
          'run',
          '-d',
          '--rm',
          `--name=${name}`,
          '--network=host',
          '--user=1000:1000',
          '--read-only',
          '--read-only-tmpfs=false',
          '--cap-drop=ALL',
          '--security-opt=no-new-privileges',
          '--tmpfs=/tmp:rw,mode=1777',
          `--volume=${kubeconfig}:/etc/iacnas/kubeconfig:ro`,
          refs.operator,
          'operator',
          '--kubeconfig=/etc/iacnas/kubeconfig',
          '--host=127.0.0.1',
          `--port=${port}`,
        ]);
        try {
          const url = `http://127.0.0.1:${port}`;
          await waitFor(
            'operator image /healthz',
            async () => (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.ok,
            90_000,
            500,
          );
          await waitFor(
            'operator image /readyz',
            async () => (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined))?.ok,
            60_000,
            500,
          );
          const metrics = await (await fetch(`${url}/metrics`)).text();
          expect(metrics).toMatch(/^# TYPE iac_operator_leader gauge$/m);
          const { stdout: logs, stderr: errLogs } = await podman(['logs', name]);
          process.stderr.write(`operator image log (first lines):\n${(logs + errLogs).split('\n').slice(0, 5).join('\n')}\n`);
        } finally {
          await podman(['rm', '-f', '-t', '5', name]).catch(() => undefined);
        }
      },
      600_000,
    );
  });

  describe('the archives for a containerd node', () => {
    const have = ['containerd', 'ctr'].every((c) => (process.env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, c))));
    it.skipIf(!have)(
      'the operator archive imports with `ctr -n k8s.io images import` as localhost/iac-operator/operator',
      async () => {
        if (!lookup.ok) throw new Error(lookup.reason);
        const dir = mkdtempSync(path.join(os.tmpdir(), 'iacnas-containerd-'));
        const sock = path.join(dir, 'containerd.sock');
        writeFileSync(
          path.join(dir, 'config.toml'),
          `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\n[grpc]\n  address = "${sock}"\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_tcp_service = true\n`,
        );
        const daemon = spawn('containerd', ['--config', path.join(dir, 'config.toml')], { stdio: 'ignore' });
        try {
          await waitFor('containerd socket', () => existsSync(sock), 30_000);
          const archive = lookup.archives.operator.archive;
          const { stdout } = await run('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'import', archive], {
            maxBuffer: 16 * 1024 * 1024,
            timeout: 300_000,
          });
          expect(stdout).toContain(`unpacking ${refs.operator}`);
          const { stdout: list } = await run('ctr', ['--address', sock, '-n', 'k8s.io', 'images', 'ls', '-q']);
          expect(list.split('\n')).toContain(refs.operator);
        } finally {
          daemon.kill('SIGTERM');
          await new Promise((r) => daemon.once('exit', r));
          rmSync(dir, { recursive: true, force: true });
        }
      },
      600_000,
    );
  });
});
