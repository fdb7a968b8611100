// `iacnas predict` and `iacnas evaluate` end to end with the real model (a tiny network
// saved straight after it is built) on real NIfTI files: MSD hippocampus scans and an
// anisotropic, oblique, big-endian scan written here.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { parseTrainerConfig } from '../config/index.ts';
import { encodeNifti, parseNiftiHeader, readNifti, readNiftiLabels, writeNifti } from '../data/nifti.ts';
import { evaluateMain } from '../eval/cli.ts';
import type { Genotype } from '../model/api.ts';
import { modelKit } from '../training/model-binding.ts';
import { predictMain } from './cli.ts';
import { encodeLabelNifti } from './predict.ts';
import { configFromSearchJson, openRun } from './run.ts';

const repo = join(import.meta.dirname, '..', '..', '..');
const HIPPO = resolve(repo, '..', 'shared', 'data', 'msd-hippocampus');
const IDS = ['hippocampus_003', 'hippocampus_004', 'hippocampus_006'];
const image = (id: string) => join(HIPPO, 'imagesTr', `${id}.nii.gz`);

const spec = {
  seed: 3,
  dataset: { format: 'msd', path: HIPPO, sliceSize: 16 },
  backbone: { depth: 1, baseFilters: 4 },
  search: { nodes: 1, operations: ['none', 'skip_connect', 'conv_3x3', 'avg_pool_3x3'] },
  retrain: { epochs: 2 },
  evaluate: { baseline: true },
};
const genotype: Genotype = {
  cells: [
    {
      nodes: [
        [
          { input: 0, op: 'conv_3x3' },
          { input: 1, op: 'skip_connect' },
        ],
      ],
    },
  ],
};

let root: string;
let runDir: string;

/** A run as `iacnas run` leaves it, with weights saved from freshly built networks. */
async function makeRun(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  // search.json: [seed, dataset, backbone, search, retrain, evaluate, resources, image, artifacts]
  // Claims as a cluster spec has them: the trainer reads the paths.
  const evaluate = { ...spec.evaluate, external: [{ name: 'site-b', format: 'msd', path: '/data/site-b', pvc: { claimName: 'site-b' } }] };
  writeFileSync(
    join(dir, 'search.json'),
    JSON.stringify([spec.seed, { ...spec.dataset, pvc: { claimName: 'data' } }, spec.backbone, spec.search, spec.retrain, evaluate, {}, 'local', {}]),
  );
  writeFileSync(join(dir, 'genotype.json'), JSON.stringify({ genotype }));
  const c = parseTrainerConfig({ name: 'tiny', ...spec });
  const space = { operations: c.search.operations, nodes: c.search.nodes, partialChannels: c.search.partialChannels };
  for (const [cells, sub] of [
    [genotype, 'retrain'],
    ['none', 'baseline'],
  ] as const) {
    const net = modelKit.createNetwork({ backbone: c.backbone, inChannels: 1, numClasses: 3, cells, space, seed: c.seed });
    await modelKit.saveWeights(net, join(dir, sub, 'model'));
    net.dispose();
  }
  const training = {
    cells: 'none',
    startedFrom: 'backbone',
    epochs: 2,
    maxEpochs: 2,
    stepsPerEpoch: 1,
    batchSize: 8,
    learningRate: 0.001,
    seed: 3,
    bestValDice: 0.1,
  };
  writeFileSync(join(dir, 'baseline', 'training.json'), JSON.stringify(training));
  // The run's own evaluation, which nothing here may change.
  writeFileSync(join(dir, 'results.json'), JSON.stringify({ split: 'test', classNames: ['background', 'Anterior', 'Posterior'] }));
  writeFileSync(join(dir, 'patients.csv'), 'patient,model\n');
}

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) } } };
}

/** The header fields a viewer places a volume by, read straight from the bytes. */
function headerOf(file: string) {
  let b = readFileSync(file);
  if (b[0] === 0x1f && b[1] === 0x8b) b = gunzipSync(b);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const le = v.getInt32(0, true) === 348;
  const f32 = (o: number, n: number) => Array.from({ length: n }, (_, i) => v.getFloat32(o + 4 * i, le));
  return {
    littleEndian: le,
    dim: Array.from({ length: 8 }, (_, i) => v.getInt16(40 + 2 * i, le)),
    pixdim: f32(76, 8),
    xyztUnits: b[123],
    qformCode: v.getInt16(252, le),
    sformCode: v.getInt16(254, le),
    quatern: f32(256, 6),
    srow: f32(280, 12),
    datatype: v.getInt16(70, le),
    bitpix: v.getInt16(72, le),
    intent: v.getInt16(68, le),
    voxOffset: v.getFloat32(108, le),
  };
}

const placement = (h: ReturnType<typeof headerOf>) => ({
  littleEndian: h.littleEndian,
  dim: h.dim,
  pixdim: h.pixdim,
  xyztUnits: h.xyztUnits,
  qformCode: h.qformCode,
  sformCode: h.sformCode,
  quatern: h.quatern,
  srow: h.srow,
});

/** A 20 x 14 x 6 scan with 0.6 x 0.8 x 2.5 mm voxels, an oblique qform and sform, big-endian. */
function writeObliqueScan(file: string): void {
  const shape: [number, number, number] = [20, 14, 6];
  const data = Float32Array.from({ length: 20 * 14 * 6 }, (_, q) => 100 + ((q * 37) % 53));
  writeNifti(file, { shape, spacing: [0.6, 0.8, 2.5], datatype: 'int16', data: Array.from(data, Math.round), bigEndian: true });
  const b = readFileSync(file);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  v.setInt16(252, 1, false); // qform_code: scanner
  for (const [i, x] of [0.1, 0.2, 0.3, -10, 20.5, 33].entries()) v.setFloat32(256 + 4 * i, x, false);
  v.setInt16(254, 2, false); // sform_code: aligned
  for (const [i, x] of [0.58, 0.05, 0.1, -10, -0.04, 0.79, 0.2, 20.5, -0.1, -0.15, 2.49, 33].entries()) v.setFloat32(280 + 4 * i, x, false);
  writeFileSync(file, b);
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
  root = mkdtempSync(join(tmpdir(), 'predict-'));
  runDir = join(root, 'runs', 'tiny');
  await makeRun(runDir);
});

describe('iacnas predict', () => {
  it('writes one label map per scan on its own grid with its header; a bad file is named and the others are written', async () => {
    const scans = join(root, 'scans');
    mkdirSync(scans);
    writeObliqueScan(join(scans, 'oblique_0000.nii'));
    writeFileSync(join(scans, 'broken.nii.gz'), readFileSync(image('hippocampus_004')).subarray(0, 300)); // a cut-off download
    const inputs = [...IDS.map(image), join(scans, 'broken.nii.gz'), join(scans, 'oblique_0000.nii'), join(scans, 'missing.nii.gz')];
    const out = join(root, 'labels');
    const r = io();
    const code = await predictMain([runDir, ...inputs, '--out', out], r.io);
    const stderr = r.err.join('');
    expect(code, stderr).toBe(2);

    const written = [...IDS.map((id) => join(out, `${id}_seg.nii.gz`)), join(out, 'oblique_seg.nii.gz')];
    expect(r.out.join('').trim().split('\n')).toEqual(written);
    expect(readdirSync(out).sort()).toEqual(['hippocampus_003_seg.nii.gz', 'hippocampus_004_seg.nii.gz', 'hippocampus_006_seg.nii.gz', 'oblique_seg.nii.gz']);
    for (const [n, input] of [...IDS.map(image), join(scans, 'oblique_0000.nii')].entries()) {
      const scan = headerOf(input);
      const label = headerOf(written[n]);
      expect(placement(label)).toEqual(placement(scan));
      expect(label).toMatchObject({ datatype: 2, bitpix: 8, intent: 1002, voxOffset: 352 });
      const { header, labels } = readNiftiLabels(written[n]);
      const source = readNifti(input).header;
      expect(header.shape).toEqual(source.shape);
      expect(header.spacing).toEqual(source.spacing);
      expect(labels).toHaveLength(source.shape[0] * source.shape[1] * source.shape[2]);
      expect(Math.max(...labels)).toBeLessThanOrEqual(2);
    }
    expect(headerOf(written[3]).littleEndian).toBe(false);

    expect(stderr).toMatch(/predict \[1\/6\] \S+hippocampus_003\.nii\.gz: 34x52x35 voxels of 1x1x1 mm, 35 slices across k -> \S+hippocampus_003_seg\.nii\.gz/);
    expect(stderr).toMatch(/predict \[5\/6\] \S+oblique_0000\.nii: 20x14x6 voxels of 0\.6x0\.8x2\.5 mm, 6 slices across k ->/);
    expect(stderr).toMatch(/predict \[4\/6\] \S+broken\.nii\.gz: failed: \S+broken\.nii\.gz: gzip data is corrupt or truncated/);
    expect(stderr).toMatch(/4 of 6 scan\(s\) segmented; 2 failed:\n {2}\S+broken\.nii\.gz: .*\n {2}\S+missing\.nii\.gz: no such file/);
  });

  it('never writes a label map over its scan, and keeps input names on request', async () => {
    const dir = join(root, 'keep');
    mkdirSync(dir);
    copyFileSync(image('hippocampus_006'), join(dir, 'hippocampus_006.nii.gz'));
    const before = readFileSync(join(dir, 'hippocampus_006.nii.gz'));
    const refused = io();
    expect(await predictMain([runDir, dir, '--keep-names', '--out', dir], refused.io)).toBe(2);
    expect(refused.err.join('')).toMatch(
      /refusing to overwrite the input \S+hippocampus_006\.nii\.gz with its label map; choose another --out or drop --keep-names/,
    );
    expect(readFileSync(join(dir, 'hippocampus_006.nii.gz'))).toEqual(before);

    const kept = io();
    expect(await predictMain([runDir, dir, '--keep-names', '--out', join(root, 'kept')], kept.io), kept.err.join('')).toBe(0);
    expect(readdirSync(join(root, 'kept'))).toEqual(['hippocampus_006.nii.gz']);
    // Default output directory: <run>/predictions/.
    const plain = io();
    expect(await predictMain([runDir, dir], plain.io), plain.err.join('')).toBe(0);
    expect(readdirSync(join(runDir, 'predictions'))).toEqual(['hippocampus_006_seg.nii.gz']);
  });

  it('takes a trainer work directory with --config, and the baseline U-Net on request', async () => {
    const workdir = join(root, 'workdir');
    mkdirSync(workdir);
    for (const f of ['genotype.json']) copyFileSync(join(runDir, f), join(workdir, f));
    for (const sub of ['retrain', 'baseline']) {
      mkdirSync(join(workdir, sub, 'model'), { recursive: true });
      for (const f of readdirSync(join(runDir, sub, 'model'))) copyFileSync(join(runDir, sub, 'model', f), join(workdir, sub, 'model', f));
    }
    const noConfig = io();
    expect(await predictMain([workdir, image('hippocampus_003')], noConfig.io)).toBe(2);
    expect(noConfig.err.join('')).toMatch(
      /neither trainer-config\.json \(written by every trainer phase\) nor search\.json \(of 'iacnas run'\) is there; give the trainer configuration with --config <file>/,
    );

    const config = join(root, 'trainer.json');
    writeFileSync(config, JSON.stringify({ name: 'tiny', ...spec }));
    const r = io();
    expect(await predictMain([workdir, image('hippocampus_003'), '--config', config, '--baseline', '--out', join(root, 'base')], r.io), r.err.join('')).toBe(0);
    expect(r.err.join('')).toMatch(
      /1 scan\(s\) with the U-Net baseline of \S+workdir \(3 classes: background, Anterior, Posterior; MRI normalisation, slices of 16x16, axis auto\)/,
    );
    expect(existsSync(join(root, 'base', 'hippocampus_003_seg.nii.gz'))).toBe(true);

    // A configuration that does not describe the saved network is refused by name.
    writeFileSync(config, JSON.stringify({ name: 'tiny', ...spec, backbone: { depth: 2, baseFilters: 4 } }));
    const wrong = io();
    expect(await predictMain([workdir, image('hippocampus_003'), '--config', config, '--out', join(root, 'wrong')], wrong.io), wrong.err.join('')).toBe(2);
    expect(wrong.err.join('')).toMatch(
      /cannot build the trained cell model of \S+workdir with the configuration of \S+trainer\.json: the genotype has 1 cells but backbone\.depth 2/,
    );
    writeFileSync(config, JSON.stringify({ name: 'tiny', ...spec, backbone: { depth: 1, baseFilters: 8 } }));
    const wider = io();
    expect(await predictMain([workdir, image('hippocampus_003'), '--config', config, '--out', join(root, 'wrong')], wider.io)).toBe(2);
    expect(wider.err.join('')).toMatch(
      /cannot load the trained cell model from \S+retrain[/\\]model with the configuration of \S+trainer\.json: [\s\S]*shapes differ/,
    );
    expect(existsSync(join(root, 'wrong'))).toBe(false);

    // The configuration every trainer phase records in its work directory stands in for --config.
    writeFileSync(config, JSON.stringify({ name: 'tiny', ...spec }));
    const configured = io();
    expect(
      await predictMain([workdir, image('hippocampus_003'), '--config', config, '--out', join(root, 'configured')], configured.io),
      configured.err.join(''),
    ).toBe(0);
    writeFileSync(join(workdir, 'trainer-config.json'), JSON.stringify(parseTrainerConfig({ name: 'tiny', ...spec })));
    const recorded = io();
    expect(await predictMain([workdir, image('hippocampus_003'), '--out', join(root, 'recorded')], recorded.io), recorded.err.join('')).toBe(0);
    expect(openRun(workdir).configSource).toBe(join(workdir, 'trainer-config.json'));
    const mask = (d: string) => gunzipSync(readFileSync(join(root, d, 'hippocampus_003_seg.nii.gz')));
    expect(mask('recorded').equals(mask('configured'))).toBe(true);
  });

  it('reads the trainer configuration of an iacnas run directory from search.json', () => {
    const c = configFromSearchJson(join(runDir, 'search.json'), 'tiny');
    expect(c).toMatchObject({
      name: 'tiny',
      seed: 3,
      dataset: { format: 'msd', path: HIPPO, sliceSize: 16 },
      backbone: { depth: 1, baseFilters: 4 },
      evaluate: { baseline: true },
    });
    expect(c.evaluate.external).toEqual([{ name: 'site-b', format: 'msd', path: '/data/site-b' }]);
    const run = openRun(runDir);
    expect(run).toMatchObject({
      numClasses: 3,
      classNames: ['background', 'Anterior', 'Posterior'],
      modality: 'MRI',
      baselineDir: join(runDir, 'baseline', 'model'),
    });
  });
});

describe('encodeLabelNifti', () => {
  it('writes a label map for a 2-D scan (dim[0] = 2)', () => {
    const template = encodeNifti({ shape: [4, 3, 1], spacing: [0.5, 0.5, 1], datatype: 'float32', data: new Float32Array(12) }, false).slice(0, 348);
    const v = new DataView(template.buffer);
    v.setInt16(40, 2, true);
    v.setInt16(46, 0, true);
    const labels = Uint8Array.from({ length: 12 }, (_, q) => q % 3);
    const bytes = encodeLabelNifti(template, labels, { numClasses: 3, gzip: false });
    const header = parseNiftiHeader(bytes, 'label.nii');
    expect(header).toMatchObject({ shape: [4, 3, 1], spacing: [0.5, 0.5, 1], datatype: 'uint8', voxOffset: 352 });
    expect(bytes.subarray(352)).toEqual(labels);
  });
});

describe('iacnas evaluate', () => {
  function hippocampusSubset(dir: string, labels: Record<string, string>): string {
    for (const d of ['imagesTr', 'labelsTr']) {
      mkdirSync(join(dir, d), { recursive: true });
      for (const id of IDS) copyFileSync(join(HIPPO, d, `${id}.nii.gz`), join(dir, d, `${id}.nii.gz`));
    }
    const training = IDS.map((id) => ({ image: `./imagesTr/${id}.nii.gz`, label: `./labelsTr/${id}.nii.gz` }));
    writeFileSync(join(dir, 'dataset.json'), JSON.stringify({ name: 'HippoSubset', modality: { 0: 'MRI' }, labels, training }));
    return dir;
  }

  it("evaluates every case of another dataset into its own folder and leaves the run's results alone", async () => {
    const data = hippocampusSubset(join(root, 'subset'), { 0: 'background', 1: 'Anterior', 2: 'Posterior' });
    const results = readFileSync(join(runDir, 'results.json'));
    const patients = readFileSync(join(runDir, 'patients.csv'));
    const out = join(root, 'subset-eval');
    const r = io();
    const code = await evaluateMain([runDir, '--data', data, '--out', out], r.io);
    expect(code, r.err.join('')).toBe(0);
    const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    expect(json).toMatchObject({
      dataset: 'HippoSubset',
      split: 'all',
      grid: 'native',
      classNames: ['background', 'Anterior', 'Posterior'],
      path: data,
      run: runDir,
    });
    expect(json.model.patients.map((p: { id: string }) => p.id)).toEqual(IDS);
    expect(json.model.patients[0]).toMatchObject({ shape: [34, 52, 35], spacing: [1, 1, 1], axis: 'k' });
    expect(json.baseline.patients).toHaveLength(3);
    expect(typeof json.diceGain).toBe('number');
    expect(readFileSync(join(out, 'patients.csv'), 'utf8').trim().split('\n')).toHaveLength(1 + 6);
    expect(readFileSync(join(runDir, 'results.json'))).toEqual(results);
    expect(readFileSync(join(runDir, 'patients.csv'))).toEqual(patients);
    const stderr = r.err.join('');
    expect(stderr.match(/^evaluate \[\d\/3\] hippocampus_\d{3} \(\d+x\d+x\d+, slices across k\): IAC Dice [\d.]+ [\d.]+.*; U-Net Dice/gm)).toHaveLength(3);
    expect(r.out.join('')).toMatch(/HippoSubset: 3 cases\nIAC model: mean Dice [\d.]+ \(Anterior [\d.]+, Posterior [\d.]+\)/);

    const own = io();
    expect(await evaluateMain([runDir, '--data', data, '--out', runDir], own.io)).toBe(2);
    expect(own.err.join('')).toMatch(/--out \S+ is the run's own directory/);
    expect(readFileSync(join(runDir, 'results.json'))).toEqual(results);
  });

  it('refuses a dataset labelled with other classes, naming both', async () => {
    const data = hippocampusSubset(join(root, 'four'), { 0: 'background', 1: 'Anterior', 2: 'Posterior', 3: 'Other' });
    const r = io();
    expect(await evaluateMain([runDir, '--data', data, '--out', join(root, 'four-eval')], r.io)).toBe(2);
    expect(r.err.join('')).toMatch(
      /--data \S+four: \S+four labels 4 classes \(background, Anterior, Posterior, Other\) but the model predicts 3 \(background, Anterior, Posterior\)/,
    );
    expect(existsSync(join(root, 'four-eval'))).toBe(false);
  });
});

describe('iacnas', () => {
  it('lists predict, evaluate and export', () => {
    const r = spawnSync(process.execPath, [join(repo, 'bin', 'iacnas.ts'), '--help'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    for (const c of ['predict <run>', 'evaluate <run> --data', 'export <run>']) expect(r.stdout).toContain(c);
  });
});
