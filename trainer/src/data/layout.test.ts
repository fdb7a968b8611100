// Paths from dataset.json stay inside the dataset directory: no absolute paths, no
// '..', no symbolic links leading out; and no error quotes a foreign file's bytes.
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseTrainerConfig } from '../config/index.ts';
import { checkDataset } from './check.ts';
import { datasetMain } from './cli.ts';
import { loadDataset } from './index.ts';
import { readLayout } from './layout.ts';
import { DataError, writeNifti } from './nifti.ts';

const shape: [number, number, number] = [4, 4, 3];
const image = Array.from({ length: 48 }, (_, i) => i);
const labels = Array.from({ length: 48 }, (_, i) => i % 2);
const SECRET = 'root:x:0:0:root:/root:/bin/bash\nsecret-token-1234\n';

/** A directory outside every dataset: a secret text file and a valid NIfTI pair. */
const outside = mkdtempSync(join(tmpdir(), 'outside-'));
writeFileSync(join(outside, 'passwd'), SECRET.repeat(20));
writeNifti(join(outside, 'img.nii.gz'), { shape, datatype: 'int16', data: image });
writeNifti(join(outside, 'lbl.nii.gz'), { shape, datatype: 'uint8', data: labels });
mkdirSync(join(outside, 'labelsTr'));
for (const id of ['a', 'b', 'c']) writeNifti(join(outside, 'labelsTr', `${id}.nii.gz`), { shape, datatype: 'uint8', data: labels });

/** An MSD dataset with three good cases plus `extra` training entries. */
function msd(extra: { image: string; label: string }[] = []): string {
  const root = mkdtempSync(join(tmpdir(), 'confine-'));
  mkdirSync(join(root, 'imagesTr'));
  mkdirSync(join(root, 'labelsTr'));
  const training = ['a', 'b', 'c'].map((id) => {
    writeNifti(join(root, 'imagesTr', `${id}.nii.gz`), { shape, datatype: 'int16', data: image });
    writeNifti(join(root, 'labelsTr', `${id}.nii.gz`), { shape, datatype: 'uint8', data: labels });
    return { image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` };
  });
  writeFileSync(
    join(root, 'dataset.json'),
    JSON.stringify({ name: 't', modality: { 0: 'MRI' }, labels: { 0: 'background', 1: 'x' }, training: [...training, ...extra] }),
  );
  return root;
}

function nnunet(): string {
  const root = mkdtempSync(join(tmpdir(), 'confine-nn-'));
  mkdirSync(join(root, 'imagesTr'));
  for (const id of ['a', 'b', 'c']) writeNifti(join(root, 'imagesTr', `${id}_0000.nii.gz`), { shape, datatype: 'int16', data: image });
  writeFileSync(join(root, 'dataset.json'), JSON.stringify({ channel_names: { 0: 'MRI' }, labels: { background: 0, x: 1 }, file_ending: '.nii.gz' }));
  return root;
}

async function loadError(root: string, format: 'msd' | 'nnunet' = 'msd'): Promise<Error | undefined> {
  return loadDataset(parseTrainerConfig({ dataset: { format, path: root } }).dataset).then(
    () => undefined,
    (e: unknown) => e as Error,
  );
}

afterEach(() => vi.restoreAllMocks());

describe('dataset.json paths stay inside the dataset directory', () => {
  it("refuses '..' escapes without reading or quoting the file they point at", async () => {
    const root = msd([{ image: `../${outside.split('/').at(-1)}/passwd`, label: './labelsTr/a.nii.gz' }]);
    expect(() => readLayout(root, 'msd')).toThrow(DataError);
    expect(() => readLayout(root, 'msd')).toThrow(/dataset\.json: training\[3\]\.image "\.\.\/outside-\w+\/passwd" leads outside the dataset directory/);
    const report = checkDataset(root);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]).not.toMatch(/root:|secret-token|1953460082/);
    const err = await loadError(root);
    expect(err?.name).toBe('DataError');
    expect(err?.message).toMatch(/leads outside the dataset directory/);
    // A valid NIfTI outside is refused just the same (it would otherwise be trained on).
    const root2 = msd([{ image: `../../../../../../../../..${join(outside, 'img.nii.gz')}`, label: './labelsTr/a.nii.gz' }]);
    expect(() => readLayout(root2, 'msd')).toThrow(/training\[3\]\.image .* leads outside/);
  });

  it('refuses absolute paths', async () => {
    const root = msd([{ image: join(outside, 'img.nii.gz'), label: join(outside, 'lbl.nii.gz') }]);
    expect(() => readLayout(root, 'msd')).toThrow(
      /dataset\.json: training\[3\]\.image is the absolute path ".*img\.nii\.gz"; paths in dataset\.json must be relative/,
    );
    const out: string[] = [];
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    expect(await datasetMain(['check', root])).toBe(1);
    expect(out.join('\n')).toMatch(/absolute path/);
  });

  it('refuses symbolic links that lead out of the dataset directory, and keeps those inside', async () => {
    const root = msd();
    symlinkSync(join(outside, 'img.nii.gz'), join(root, 'imagesTr', 'd.nii.gz'));
    symlinkSync(join(root, 'labelsTr', 'a.nii.gz'), join(root, 'labelsTr', 'd.nii.gz')); // inside: fine
    writeFileSync(
      join(root, 'dataset.json'),
      JSON.stringify({
        labels: { 0: 'background', 1: 'x' },
        training: ['a', 'b', 'c', 'd'].map((id) => ({ image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` })),
      }),
    );
    const report = checkDataset(root);
    expect(report.problems).toEqual([expect.stringMatching(/imagesTr\/d\.nii\.gz: a symbolic link to a file outside the dataset directory/)]);
    expect(report.summary?.goodCases).toBe(3);
    expect((await loadError(root))?.message).toMatch(/1 problem\(s\) found before loading.*\n.*imagesTr\/d\.nii\.gz: a symbolic link/);

    // nnU-Net: labelsTr itself a link to a directory elsewhere.
    const nn = nnunet();
    symlinkSync(join(outside, 'labelsTr'), join(nn, 'labelsTr'));
    const r2 = checkDataset(nn);
    expect(r2.problems).toHaveLength(3);
    for (const p of r2.problems) expect(p).toMatch(/labelsTr\/[abc]\.nii\.gz: a symbolic link to a file outside/);

    // A dataset directory that is itself reached through a link is fine.
    const viaLink = join(mkdtempSync(join(tmpdir(), 'link-')), 'ds');
    symlinkSync(msd(), viaLink);
    expect(checkDataset(viaLink).problems).toEqual([]);
  });

  it('refuses a dataset.json that links out, and never quotes a broken one', () => {
    const root = msd();
    const linked = mkdtempSync(join(tmpdir(), 'jsonlink-'));
    symlinkSync(join(outside, 'passwd'), join(linked, 'dataset.json'));
    expect(checkDataset(linked).problems).toEqual([expect.stringMatching(/dataset\.json: a symbolic link to a file outside the dataset directory/)]);
    writeFileSync(join(root, 'dataset.json'), SECRET);
    const [problem] = checkDataset(root).problems;
    expect(problem).toMatch(/dataset\.json: not valid JSON \(Unexpected token\)$/);
    expect(problem).not.toMatch(/root:|secret-token/);
  });

  it('names the path for a directory given as an image, and refuses a file_ending that is a path', () => {
    const root = msd([{ image: './imagesTr', label: './labelsTr/a.nii.gz' }]);
    const report = checkDataset(root);
    expect(report.problems).toEqual([expect.stringMatching(/\/imagesTr: is a directory, not a NIfTI file/)]);
    const nn = nnunet();
    writeFileSync(join(nn, 'dataset.json'), JSON.stringify({ channel_names: { 0: 'MRI' }, labels: { background: 0, x: 1 }, file_ending: '/../../x' }));
    expect(() => readLayout(nn, 'nnunet')).toThrow(/file_ending must be a file name ending/);
  });
});
