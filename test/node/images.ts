// Container images for the real-node suites, made without a registry, a daemon or a
// network: an OCI image layout (one uncompressed layer) written by hand and packed as a
// tar that `ctr images import` takes. Archives are cached next to the k8s binaries
// (~/.cache/iac-operator/k8s-<version>/node/), keyed by their inputs.
//   - the pause image: build/pause/linux/pause.c of the k8s.io/kubernetes module (in the
//     Go module cache since test/cluster/build.sh ran), compiled with gcc -static;
//   - a busybox image: /bin/busybox from the busybox-static package plus its applet links.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, copyFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defaultBinDir, K8S_VERSION } from '../cluster/binaries.ts';

/** The sandbox image the harness's containerd config names. */
export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
export const BUSYBOX_IMAGE = 'localhost/iacnas-test/busybox:1';

export function nodeCacheDir(): string {
  return path.join(path.dirname(defaultBinDir()), 'node');
}

export interface ImageSpec {
  /** Full reference, e.g. localhost/iacnas-test/busybox:1. */
  name: string;
  /** A directory whose content is the image's only layer. */
  rootfs: string;
  entrypoint?: string[];
  cmd?: string[];
  user?: string;
  env?: string[];
  workingDir?: string;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/**
 * Writes `out`: an OCI image layout tar (oci-layout, index.json, blobs/sha256/...) with a
 * docker-compatible manifest.json too, so both `ctr images import` and `podman load` take it.
 */
export function writeImageArchive(spec: ImageSpec, out: string): void {
  const work = mkdtempSync(path.join(os.tmpdir(), 'iacnas-image-'));
  try {
    const blobs = path.join(work, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    const layerTar = path.join(work, 'layer.tar');
    // Reproducible: sorted, root-owned, epoch mtimes.
    execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-cf', layerTar, '-C', spec.rootfs, '.']);
    const layer = readFileSync(layerTar);
    const layerDigest = sha256(layer);
    renameSync(layerTar, path.join(blobs, layerDigest));
    const config = JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {
        ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
        ...(spec.cmd ? { Cmd: spec.cmd } : {}),
        ...(spec.user ? { User: spec.user } : {}),
        Env: spec.env ?? ['PATH=/bin'],
        WorkingDir: spec.workingDir ?? '/',
      },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerDigest}`] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'test/node/images.ts' }],
    });
    const configDigest = sha256(config);
    writeFileSync(path.join(blobs, configDigest), config);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${configDigest}`, size: Buffer.byteLength(config) },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${layerDigest}`, size: layer.length }],
    });
    const manifestDigest = sha256(manifest);
    writeFileSync(path.join(blobs, manifestDigest), manifest);
    const tag = spec.name.slice(spec.name.lastIndexOf(':') + 1);
    writeFileSync(path.join(work, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      path.join(work, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            digest: `sha256:${manifestDigest}`,
            size: Buffer.byteLength(manifest),
            annotations: { 'io.containerd.image.name': spec.name, 'org.opencontainers.image.ref.name': tag },
            platform: { architecture: 'amd64', os: 'linux' },
          },
        ],
      }),
    );
    writeFileSync(
      path.join(work, 'manifest.json'),
      JSON.stringify([{ Config: `blobs/sha256/${configDigest}`, RepoTags: [spec.name], Layers: [`blobs/sha256/${layerDigest}`] }]),
    );
    mkdirSync(path.dirname(out), { recursive: true });
    const tmpOut = `${out}.${process.pid}.tmp`;
    execFileSync('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-cf',
      tmpOut,
      '-C',
      work,
      'oci-layout',
      'index.json',
      'manifest.json',
      'blobs',
    ]);
    renameSync(tmpOut, out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function goModCache(): string {
  return execFileSync('go', ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
}

/** Where pause.c is: the k8s.io/kubernetes module of K8S_VERSION in the Go module cache. */
export function pauseSource(): string {
  const rel = path.join(`k8s.io`, `kubernetes@${K8S_VERSION}`, 'build', 'pause', 'linux', 'pause.c');
  const fromEnv = process.env.GOMODCACHE ? path.join(process.env.GOMODCACHE, rel) : undefined;
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  const home = path.join(os.homedir(), 'go', 'pkg', 'mod', rel);
  if (existsSync(home)) return home;
  return path.join(goModCache(), rel);
}

/** The pause image archive (built once, then cached); needs gcc with a static libc. */
export function pauseArchive(): string {
  const src = pauseSource();
  const code = readFileSync(src);
  const version = PAUSE_IMAGE.slice(PAUSE_IMAGE.lastIndexOf(':') + 1);
  const out = path.join(nodeCacheDir(), `pause-${version}-${sha256(code).slice(0, 12)}.tar`);
  if (existsSync(out)) return out;
  const work = mkdtempSync(path.join(os.tmpdir(), 'iacnas-pause-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    mkdirSync(rootfs);
    // As build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV)
    execFileSync('gcc', ['-Os', '-Wall', '-Werror', '-static', `-DVERSION=v${version}-iacnas`, '-o', path.join(rootfs, 'pause'), src], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    execFileSync('strip', [path.join(rootfs, 'pause')]);
    writeImageArchive({ name: PAUSE_IMAGE, rootfs, entrypoint: ['/pause'], user: '65535:65535' }, out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

const BUSYBOX = '/usr/bin/busybox';

/** A one-layer image of the static busybox: /bin/busybox and a link per applet. */
export function busyboxArchive(name = BUSYBOX_IMAGE): string {
  const bin = readFileSync(BUSYBOX);
  const out = path.join(nodeCacheDir(), `busybox-${createHash('sha256').update(bin).update(name).digest('hex').slice(0, 12)}.tar`);
  if (existsSync(out)) return out;
  const work = mkdtempSync(path.join(os.tmpdir(), 'iacnas-busybox-'));
  try {
    const rootfs = path.join(work, 'rootfs');
    for (const d of ['bin', 'tmp', 'etc']) mkdirSync(path.join(rootfs, d), { recursive: true });
    chmodSync(path.join(rootfs, 'tmp'), 0o1777);
    copyFileSync(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
    chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
      .split('\n')
      .filter((a) => a && a !== 'busybox' && !a.includes('/'));
    for (const a of applets) symlinkSync('busybox', path.join(rootfs, 'bin', a));
    writeFileSync(
      path.join(rootfs, 'etc', 'passwd'),
      'root:x:0:0:root:/:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
    );
    writeFileSync(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n');
    writeImageArchive({ name, rootfs, entrypoint: ['/bin/sh'], env: ['PATH=/bin'] }, out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

export function busyboxAvailable(): boolean {
  return existsSync(BUSYBOX);
}
