// Small labelled datasets written as real NIfTI files in the MSD layout, for the
// evaluation and prediction tests.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeNifti } from '../../src/data/nifti.ts';

export interface TestCase {
  id: string;
  shape: [number, number, number];
  spacing: [number, number, number];
  /** Label per voxel, i fastest. */
  labels: Uint8Array;
  /** Intensity per voxel, i fastest (default: the label value times 100). */
  image?: Float32Array;
}

/**
 * An ellipsoid of class 1 (and, with `inner`, a smaller one of class 2 inside it)
 * centred at `centre` with radii `radii` in voxels, in a volume of `shape`.
 */
export function ellipsoidCase(
  id: string,
  shape: [number, number, number],
  spacing: [number, number, number],
  centre: [number, number, number],
  radii: [number, number, number],
  inner = false,
): TestCase {
  const [nx, ny, nz] = shape;
  const labels = new Uint8Array(nx * ny * nz);
  for (let k = 0; k < nz; k++) {
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const q = ((i - centre[0]) / radii[0]) ** 2 + ((j - centre[1]) / radii[1]) ** 2 + ((k - centre[2]) / radii[2]) ** 2;
        if (q <= 1) labels[i + nx * (j + ny * k)] = inner && q <= 0.3 ? 2 : 1;
      }
    }
  }
  return { id, shape, spacing, labels };
}

/** Writes the cases as an MSD dataset (dataset.json, imagesTr/, labelsTr/) into `dir`. */
export function writeMsdDataset(dir: string, cases: readonly TestCase[], classNames: readonly string[], modality = 'MRI'): string {
  mkdirSync(join(dir, 'imagesTr'), { recursive: true });
  mkdirSync(join(dir, 'labelsTr'), { recursive: true });
  for (const c of cases) {
    const image = c.image ?? Float32Array.from(c.labels, (v) => v * 100);
    writeNifti(join(dir, 'imagesTr', `${c.id}.nii.gz`), { shape: c.shape, spacing: c.spacing, datatype: 'float32', data: image });
    writeNifti(join(dir, 'labelsTr', `${c.id}.nii.gz`), { shape: c.shape, spacing: c.spacing, datatype: 'uint8', data: c.labels });
  }
  const json = {
    name: 'TestSet',
    modality: { 0: modality },
    labels: Object.fromEntries(classNames.map((n, v) => [String(v), n])),
    numTraining: cases.length,
    training: cases.map((c) => ({ image: `./imagesTr/${c.id}.nii.gz`, label: `./labelsTr/${c.id}.nii.gz` })),
  };
  writeFileSync(join(dir, 'dataset.json'), JSON.stringify(json, null, 1));
  return dir;
}
