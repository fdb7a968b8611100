// Raw dataset layouts: the Medical Segmentation Decathlon (dataset.json with
// `training: [{image, label}]`) and nnU-Net v2 (dataset.json with `channel_names`,
// `labels`, `file_ending`; imagesTr/<case>_0000<ending>, labelsTr/<case><ending>).
// This file only finds the cases and reads their headers; decoding is in nifti.ts.
// Every path a dataset.json names must stay inside the dataset directory (no absolute
// paths, no '..', no symbolic links leading out of it).
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, realpathSync } from 'node:fs';
import { basename, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { DataError, type NiftiHeader, readNiftiHeader, readNiftiLabels } from './nifti.ts';
import type { Modality } from './slicing.ts';
import type { RawFormat } from '../config/dataset.ts';

export interface CaseFiles {
  id: string;
  image: string;
  label: string;
}

export interface DatasetLayout {
  format: RawFormat;
  root: string;
  name: string;
  /** Class names by label value (0 = background). */
  classNames: string[];
  /** From dataset.json; MRI unless it says CT. */
  modality: Modality;
  cases: CaseFiles[];
}

function stripNifti(name: string): string {
  return name.replace(/\.nii(\.gz)?$/, '');
}

/** dataset.json larger than this is refused unread (MSD's largest is a few hundred KiB). */
const MAX_JSON_BYTES = 64 * 1024 * 1024;

/** Whether `path` is `root` or lies below it (both absolute and normalised). */
function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/**
 * Refuses a file that a symbolic link (of the file or of a directory on its way)
 * takes outside the dataset directory. Missing files pass: they are reported where
 * they are opened.
 */
export function confineToRoot(root: string, file: string): void {
  let realRoot: string;
  let real: string;
  try {
    realRoot = realpathSync(root);
    real = realpathSync(file);
  } catch {
    return;
  }
  if (!isInside(realRoot, real)) {
    throw new DataError(
      `${file}: a symbolic link to a file outside the dataset directory ${root}; copy the file into the dataset directory or point dataset.path at the directory that holds it`,
      file,
    );
  }
}

/** JSON.parse's message without the excerpt of the text (and the token) that V8 quotes in it. */
function jsonMessage(e: unknown): string {
  const m = (e as Error).message;
  const quote = m.indexOf(', "');
  return quote < 0 ? m : m.slice(0, quote).replace(/ '.*'$/, '');
}

function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    const fd = openSync(file, 'r');
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) throw new DataError(`${file}: not a regular file; dataset.json must be a JSON file`, file);
      if (st.size > MAX_JSON_BYTES)
        throw new DataError(`${file}: ${st.size} bytes, more than the ${MAX_JSON_BYTES / 1024 / 1024} MiB a dataset.json may have`, file);
      const bytes = new Uint8Array(st.size);
      let done = 0;
      while (done < bytes.length) {
        const n = readSync(fd, bytes, done, bytes.length - done, done);
        if (n === 0) break;
        done += n;
      }
      text = new TextDecoder().decode(bytes.subarray(0, done));
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(
      code === 'ENOENT'
        ? `${file}: missing; a dataset directory needs a dataset.json (MSD or nnU-Net v2 layout) — check dataset.path`
        : `${file}: cannot read (${code ?? (e as Error).message})`,
      file,
    );
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new DataError(`${file}: not valid JSON (${jsonMessage(e)})`, file);
  }
}

/** A path from dataset.json, resolved; refused when absolute or leading out of `root`. */
function datasetPath(root: string, jsonFile: string, where: string, path: string): string {
  const shown = JSON.stringify(path.length > 120 ? `${path.slice(0, 120)}...` : path);
  if (isAbsolute(path)) {
    throw new DataError(`${jsonFile}: ${where} is the absolute path ${shown}; paths in dataset.json must be relative to the dataset directory`, jsonFile);
  }
  const resolved = resolve(root, path);
  if (!isInside(root, resolved) || path.includes('\0')) {
    throw new DataError(`${jsonFile}: ${where} ${shown} leads outside the dataset directory ${root}; paths in dataset.json must stay inside it`, jsonFile);
  }
  return resolved;
}

function modalityOf(value: unknown): Modality {
  // MSD: modality {"0": "CT"}; nnU-Net v2: channel_names {"0": "CT"}.
  if (value && typeof value === 'object') {
    const first = Object.values(value as Record<string, unknown>)[0];
    if (typeof first === 'string' && first.trim().toUpperCase() === 'CT') return 'CT';
  }
  return 'MRI';
}

function channelCount(value: unknown): number {
  return value && typeof value === 'object' ? Object.keys(value).length : 1;
}

/** Which layout a directory holds, from its dataset.json. */
export function detectFormat(root: string): RawFormat {
  confineToRoot(root, join(root, 'dataset.json'));
  const json = readJson(join(root, 'dataset.json'));
  if (Array.isArray(json.training)) return 'msd';
  if (json.channel_names && json.file_ending) return 'nnunet';
  throw new DataError(
    `${join(root, 'dataset.json')}: neither MSD (a 'training' list) nor nnU-Net v2 (channel_names, labels, file_ending) layout`,
    join(root, 'dataset.json'),
  );
}

/** Reads dataset.json and lists the cases, sorted by case id. */
export function readLayout(rootDir: string, format: RawFormat): DatasetLayout {
  const root = resolve(rootDir);
  const jsonFile = join(root, 'dataset.json');
  confineToRoot(root, jsonFile);
  const json = readJson(jsonFile);
  const name = typeof json.name === 'string' ? json.name : basename(root);
  const classNames: string[] = [];
  const labels = json.labels;
  if (!labels || typeof labels !== 'object') {
    throw new DataError(`${jsonFile}: 'labels' is missing; it maps label values to class names`, jsonFile);
  }
  let cases: CaseFiles[];
  let modality: Modality;
  if (format === 'msd') {
    if (!Array.isArray(json.training)) {
      throw new DataError(
        `${jsonFile}: no 'training' list, so this is not the MSD layout${json.channel_names ? " (it looks like nnU-Net v2: set dataset.format to 'nnunet')" : ''}`,
        jsonFile,
      );
    }
    if (channelCount(json.modality) > 1) {
      throw new DataError(`${jsonFile}: ${channelCount(json.modality)} modalities; only single-channel datasets are supported`, jsonFile);
    }
    modality = modalityOf(json.modality);
    // MSD: {"0": "background", "1": "Anterior", ...}
    for (const [value, cls] of Object.entries(labels as Record<string, unknown>)) {
      const v = Number(value);
      if (!Number.isInteger(v) || v < 0 || v > 255) throw new DataError(`${jsonFile}: labels key '${value}' is not a label value 0..255`, jsonFile);
      classNames[v] = String(cls);
    }
    cases = (json.training as unknown[]).map((entry, i) => {
      const e = entry as { image?: unknown; label?: unknown };
      if (typeof e?.image !== 'string' || typeof e?.label !== 'string') {
        throw new DataError(`${jsonFile}: training[${i}] needs string 'image' and 'label' paths`, jsonFile);
      }
      return {
        id: stripNifti(basename(e.image)),
        image: datasetPath(root, jsonFile, `training[${i}].image`, e.image),
        label: datasetPath(root, jsonFile, `training[${i}].label`, e.label),
      };
    });
  } else {
    if (!json.channel_names || typeof json.file_ending !== 'string') {
      throw new DataError(
        `${jsonFile}: nnU-Net v2 layout needs 'channel_names' and 'file_ending'${Array.isArray(json.training) ? " (it looks like MSD: set dataset.format to 'msd')" : ''}`,
        jsonFile,
      );
    }
    if (channelCount(json.channel_names) > 1) {
      throw new DataError(`${jsonFile}: ${channelCount(json.channel_names)} channels; only single-channel datasets are supported`, jsonFile);
    }
    modality = modalityOf(json.channel_names);
    // nnU-Net v2: {"background": 0, "LV": 1, ...}; region-based labels (lists) are not supported.
    for (const [cls, value] of Object.entries(labels as Record<string, unknown>)) {
      if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 255) {
        throw new DataError(`${jsonFile}: labels.${cls} must be one label value 0..255 (region-based training is not supported)`, jsonFile);
      }
      classNames[value as number] = cls;
    }
    const ending = json.file_ending;
    if (ending.includes('/') || ending.includes(sep) || ending.includes('\0')) {
      throw new DataError(`${jsonFile}: file_ending must be a file name ending such as '.nii.gz', not a path`, jsonFile);
    }
    const labelsDir = join(root, 'labelsTr');
    let files: string[];
    try {
      files = readdirSync(labelsDir);
    } catch {
      throw new DataError(`${labelsDir}: missing; nnU-Net v2 layout keeps labels in labelsTr/<case>${ending}`, labelsDir);
    }
    const labelIds = new Set(files.filter((f) => f.endsWith(ending) && !f.startsWith('.')).map((f) => f.slice(0, -ending.length)));
    // Images without a label are listed too, so the check reports the missing label.
    let imageIds: string[] = [];
    try {
      imageIds = readdirSync(join(root, 'imagesTr'))
        .filter((f) => f.endsWith(`_0000${ending}`) && !f.startsWith('.'))
        .map((f) => f.slice(0, -`_0000${ending}`.length));
    } catch {
      // reported per case below as a missing image
    }
    const ids = [...new Set([...labelIds, ...imageIds])];
    cases = ids.map((id) => ({
      id,
      image: join(root, 'imagesTr', `${id}_0000${ending}`),
      label: join(labelsDir, `${id}${ending}`),
    }));
  }
  for (let v = 0; v < classNames.length; v++) classNames[v] ??= `class_${v}`;
  if (classNames.length < 2) throw new DataError(`${jsonFile}: 'labels' must name background (0) and at least one class`, jsonFile);
  cases.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { format, root, name, classNames, modality, cases };
}

export interface CaseHeaders {
  files: CaseFiles;
  image: NiftiHeader;
  label: NiftiHeader;
}

/**
 * Reads every case's image and label header and checks that they belong together
 * (and, given the dataset directory, that no symbolic link takes a file out of it).
 * Returns the headers and the problems (one line each, naming the file); never stops
 * at the first bad case so all of them are reported at once.
 */
export function checkHeaders(cases: readonly CaseFiles[], root?: string): { ok: CaseHeaders[]; problems: string[] } {
  const ok: CaseHeaders[] = [];
  const problems: string[] = [];
  const header = (file: string, what: string, id: string): NiftiHeader | undefined => {
    if (!existsSync(file)) {
      problems.push(`${file}: ${what} file missing for case ${id}`);
      return undefined;
    }
    try {
      if (root !== undefined) confineToRoot(root, file);
      return readNiftiHeader(file);
    } catch (e) {
      problems.push(e instanceof DataError ? e.message : `${file}: ${(e as Error).message}`);
      return undefined;
    }
  };
  for (const c of cases) {
    const image = header(c.image, 'image', c.id);
    const label = header(c.label, 'label', c.id);
    if (!image || !label) continue;
    if (image.shape.some((s, i) => s !== label.shape[i])) {
      problems.push(`${c.label}: shape ${label.shape.join('x')} does not match its image ${c.image} (${image.shape.join('x')})`);
      continue;
    }
    ok.push({ files: c, image, label });
  }
  if (cases.length === 0) problems.push('the dataset has no cases');
  return { ok, problems };
}

/**
 * Decodes every label file (label maps are small and compress well, so this is cheap
 * next to a training run) and returns one problem per file whose values are not whole
 * class indices below `numClasses`. Run before training so that a bad label never
 * stops a run half way.
 */
export function checkLabelValues(cases: readonly CaseHeaders[], numClasses: number): string[] {
  const problems: string[] = [];
  for (const c of cases) {
    try {
      const { labels } = readNiftiLabels(c.files.label);
      let max = 0;
      for (let i = 0; i < labels.length; i++) if (labels[i] > max) max = labels[i];
      if (max >= numClasses) {
        problems.push(
          `${c.files.label}: label value ${max} but dataset.json names only ${numClasses} classes (0..${numClasses - 1}); add it to 'labels' or fix the label file`,
        );
      }
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  return problems;
}

/** (i, j, k) of voxel `index` in a volume of `shape`, i fastest. */
export function voxelAt(index: number, shape: readonly number[]): [number, number, number] {
  const [nx, ny] = shape;
  return [index % nx, Math.floor(index / nx) % ny, Math.floor(index / (nx * ny))];
}

/**
 * The intensity range of a decoded image; throws a DataError naming the file and the
 * first voxel that is NaN or infinite (after scl_slope/scl_inter). Used by both
 * `iacnas dataset check` and the training data loader, so the two agree.
 */
export function checkIntensities(file: string, data: Float32Array, shape: readonly number[]): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) {
      throw new DataError(
        `${file}: holds NaN or infinite intensities (first: ${v} at voxel (${voxelAt(i, shape).join(', ')})); a network cannot train on them — fix or drop the case`,
        file,
      );
    }
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

/** Throws a DataError naming the file when a label value has no class in dataset.json. */
export function checkLabelRange(file: string, labels: Uint8Array, shape: readonly number[], numClasses: number): void {
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] >= numClasses) {
      throw new DataError(
        `${file}: label value ${labels[i]} at voxel (${voxelAt(i, shape).join(', ')}) but dataset.json names only ${numClasses} classes (0..${numClasses - 1}); add it to 'labels' or fix the label file`,
        file,
      );
    }
  }
}
