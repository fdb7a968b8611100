// Where the images test/images/build.sh built are: podman's store (localhost/iac-operator/...)
// and the OCI archives of the operator and trainer-cpu images under
// ~/.cache/iac-operator/images-<key>/ (IACNAS_CACHE moves the cache root), which a
// containerd node imports with `ctr -n k8s.io images import <archive>`.
// <key> hashes the images' inputs exactly as build.sh does, so archives of older sources
// are not taken for current ones.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const repoRoot = path.resolve(import.meta.dirname, '../..');
export const REGISTRY = 'localhost/iac-operator';
export const BASE_IMAGE = `${REGISTRY}/debian:bookworm`;
export const NODE_BASE_IMAGE = `${REGISTRY}/node:24-bookworm`;
export const VERSION = (JSON.parse(readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
export const IMAGE_NAMES = ['operator', 'trainer-cpu', 'trainer-gpu'] as const;
export type ImageName = (typeof IMAGE_NAMES)[number];
/** The images build.sh saves as archives for a containerd node. */
export const ARCHIVED = ['operator', 'trainer-cpu'] as const;
export type ArchivedName = (typeof ARCHIVED)[number];

export const imageRef = (name: ImageName) => `${REGISTRY}/${name}:${VERSION}`;
export const BUILD_COMMAND = 'test/images/build.sh';
/** CONTAINERS_CONF for podman here: runc and the ulimits (see containers.conf). */
export const CONTAINERS_CONF = path.join(repoRoot, 'test/images/containers.conf');

/** build.sh's INPUTS: every file under these paths except tests. */
const INPUTS = [
  'bin',
  'contract/src',
  'deploy/docker',
  'operator/src',
  'trainer/src',
  'scripts/native',
  'scripts/native-backend.sh',
  'scripts/with-node',
  'package.json',
  'package-lock.json',
  'test/images/build.sh',
  'test/images/containers.conf',
  'test/images/node-base.Containerfile',
];

function files(p: string): string[] {
  const abs = path.join(repoRoot, p);
  if (!existsSync(abs)) return [];
  if (!statSync(abs).isDirectory()) return p.endsWith('.test.ts') ? [] : [p];
  return readdirSync(abs, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? files(`${p}/${d.name}`) : d.isFile() && !d.name.endsWith('.test.ts') ? [`${p}/${d.name}`] : [],
  );
}

/** The key of the current inputs: what build.sh's hash_of computes (sha256sum lines, bytewise sorted). */
export function inputsKey(): string {
  const all = INPUTS.flatMap(files).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const lines = all
    .map(
      (f) =>
        `${createHash('sha256')
          .update(readFileSync(path.join(repoRoot, f)))
          .digest('hex')}  ${f}\n`,
    )
    .join('');
  return createHash('sha256').update(lines).digest('hex').slice(0, 16);
}

export function cacheRoot(): string {
  return process.env.IACNAS_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'iac-operator');
}

export interface ImageArchive {
  ref: string;
  /** podman's image id (sha256 hex) */
  id: string;
  /** OCI archive for `ctr -n k8s.io images import` */
  archive: string;
  /** bytes, uncompressed */
  size: number;
}

export type ArchiveLookup = { ok: true; key: string; dir: string; images: Record<ArchivedName, ImageArchive> } | { ok: false; reason: string };

/**
 * The archives of the operator and trainer-cpu images built from the current sources
 * (for a real node to import). Needs no container engine: build.sh's images.json only.
 */
export function findImageArchives(): ArchiveLookup {
  const key = inputsKey();
  const dir = path.join(cacheRoot(), `images-${key}`);
  const manifest = path.join(dir, 'images.json');
  const howTo = `build them with ${BUILD_COMMAND} (podman, buildah and debootstrap as root; about 15 min cold, seconds when current)`;
  if (!existsSync(manifest)) {
    const others = existsSync(cacheRoot()) ? readdirSync(cacheRoot()).filter((d) => d.startsWith('images-') && !d.includes('.')) : [];
    const stale = others.length > 0 ? ` (${others.join(', ')} hold images of other sources)` : '';
    return { ok: false, reason: `no images of the current sources in ${dir}${stale}; ${howTo}` };
  }
  const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { images: Record<string, ImageArchive> };
  const images = {} as Record<ArchivedName, ImageArchive>;
  for (const name of ARCHIVED) {
    const img = parsed.images[name];
    if (!img || !existsSync(img.archive)) return { ok: false, reason: `${manifest} names no archive of ${name}; ${howTo}` };
    images[name] = img;
  }
  return { ok: true, key, dir, images };
}

/** IACNAS_IMAGES_GPU=0: build.sh skipped the 6 GB GPU image, and the tests of it are left out. */
export const gpuImageWanted = () => process.env.IACNAS_IMAGES_GPU !== '0';

export type ImageLookup =
  | {
      ok: true;
      key: string;
      refs: Partial<Record<ImageName, string>> & Record<ArchivedName, string>;
      archives: Record<ArchivedName, ImageArchive>;
      podman: string;
    }
  | { ok: false; reason: string };

function which(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '').split(':')) {
    const p = path.join(d, cmd);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

/** podman's label iacnas.inputs of an image ('' when the image is missing). */
function podmanLabel(podman: string, ref: string): string | undefined {
  try {
    return execFileSync(podman, ['image', 'inspect', '--format', '{{index .Config.Labels "iacnas.inputs"}}', ref], {
      encoding: 'utf8',
      env: { ...process.env, CONTAINERS_CONF },
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

/**
 * The three images in podman's store, built from the current sources, and the archives.
 * `{ ok: false, reason }` names what is missing and the command that builds it.
 */
export function findImages(): ImageLookup {
  const podman = which('podman');
  if (!podman) return { ok: false, reason: `podman is not installed (Debian: apt-get install podman buildah debootstrap runc); then run ${BUILD_COMMAND}` };
  if (process.getuid?.() !== 0) return { ok: false, reason: `the image tests use root's podman store; run them as root (images from ${BUILD_COMMAND})` };
  const archives = findImageArchives();
  if (!archives.ok) return archives;
  const refs = {} as Record<ImageName, string>;
  for (const name of IMAGE_NAMES.filter((n) => n !== 'trainer-gpu' || gpuImageWanted())) {
    const ref = imageRef(name);
    if (!podmanLabel(podman, ref)) return { ok: false, reason: `image ${ref} is not in podman's store; build it with ${BUILD_COMMAND}` };
    refs[name] = ref;
  }
  const manifestIds = Object.values(archives.images).map((i) => i.id);
  for (const name of ARCHIVED) {
    const id = execFileSync(podman, ['image', 'inspect', '--format', '{{.Id}}', refs[name]], {
      encoding: 'utf8',
      env: { ...process.env, CONTAINERS_CONF },
    }).trim();
    if (!manifestIds.includes(id)) return { ok: false, reason: `${refs[name]} is newer than its archive in ${archives.dir}; run ${BUILD_COMMAND}` };
  }
  return { ok: true, key: archives.key, refs, archives: archives.images, podman };
}
