// `iacnas export` on run directories laid out as `iacnas run` and the trainer phases
// leave them: genotype.json, retrain/model/ and search.json (or --config).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../backend/index.ts';
import { OPERATIONS } from '../config/index.ts';
import { createNetwork } from '../model/network.ts';
import { saveWeights } from '../model/serialize.ts';
import { exportMain } from './cli.ts';
import { readModelSummary } from './onnx-proto.ts';
import { genotypeOf, randomizeWeights } from '../../testing/export.ts';

const spec = {
  seed: 5,
  dataset: { format: 'phantom', sliceSize: 16, cases: 6 },
  backbone: { depth: 2, baseFilters: 8 },
  search: { nodes: 2, partialChannels: 2 },
  retrain: { epochs: 1 },
  evaluate: { metrics: ['dice'] },
};
const genotype = genotypeOf([
  [
    [
      [0, 'sep_conv_3x3'],
      [1, 'skip_connect'],
    ],
    [
      [2, 'dil_conv_5x5'],
      [0, 'avg_pool_3x3'],
    ],
  ],
  [
    [
      [1, 'conv_3x3'],
      [0, 'max_pool_3x3'],
    ],
    [
      [2, 'none'],
      [1, 'conv_5x5'],
    ],
  ],
]);

function capture() {
  let text = '';
  return { stream: { write: (t: string) => (text += t) }, text: () => text };
}

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = capture();
  const err = capture();
  const code = await exportMain(argv, { stdout: out.stream, stderr: err.stream });
  return { code, stdout: out.text(), stderr: err.text() };
}

describe('iacnas export', () => {
  let root: string;
  /** A run directory of `iacnas run`: search.json as it writes it (the definition fields of the spec, in order). */
  let runDir: string;
  /** A trainer work directory: no search.json; the configuration comes with --config. */
  let workdir: string;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    root = mkdtempSync(path.join(os.tmpdir(), 'iacnas-export-'));
    runDir = path.join(root, 'runs', 'hippo');
    workdir = path.join(root, 'work');
    const net = createNetwork({
      backbone: { ...spec.backbone, pretrainEpochs: 1, learningRate: 1e-3 },
      inChannels: 1,
      numClasses: 4,
      cells: genotype,
      space: { operations: [...OPERATIONS], ...spec.search },
      seed: spec.seed,
    });
    randomizeWeights(net, 1);
    for (const dir of [runDir, workdir]) {
      saveWeights(net, path.join(dir, 'retrain', 'model'));
      writeFileSync(path.join(dir, 'genotype.json'), JSON.stringify({ genotype }));
    }
    net.dispose();
    writeFileSync(
      path.join(runDir, 'search.json'),
      JSON.stringify([spec.seed, spec.dataset, spec.backbone, spec.search, spec.retrain, spec.evaluate, null, null, null]),
    );
    writeFileSync(
      path.join(root, 'trainer.yaml'),
      `name: hippo-work\nseed: 5\ndataset: {format: phantom, sliceSize: 16}\nbackbone: {depth: 2, baseFilters: 8}\nsearch: {nodes: 2, partialChannels: 2}\n`,
    );
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('writes <run>/model.onnx, prints its size, opset, inputs and outputs, and verifies it against TensorFlow.js', async () => {
    const r = await run([runDir, '--verify']);
    expect(r.stderr).toContain(`configuration from ${path.join(runDir, 'search.json')}`);
    expect(r.code, r.stderr).toBe(0);
    const file = path.join(runDir, 'model.onnx');
    expect(existsSync(file)).toBe(true);
    const size = readFileSync(file).length;
    expect(r.stdout).toContain(`wrote ${file}`);
    expect(r.stdout).toContain(`${size} bytes`);
    expect(r.stdout).toMatch(/ONNX opset 17/);
    expect(r.stdout).toMatch(/input {3}image +float32 \[N, 1, 16, 16\]/);
    expect(r.stdout).toMatch(/output {2}logits +float32 \[N, 4, 16, 16\]/);
    expect(r.stdout).toMatch(/output {2}probabilities +float32 \[N, 4, 16, 16\]/);
    expect(r.stdout).toContain('0=background, 1=LV, 2=MYO, 3=RV');
    expect(r.stdout).toMatch(/verified: onnxruntime-node vs TensorFlow.js on 4 random slices/);

    const m = readModelSummary(readFileSync(file)).metadata;
    expect(m.name).toBe('hippo'); // the run directory's name, as iacnas run names it
    expect(m.slice_size).toBe('16');
    expect(m.modality).toBe('MRI');
    expect(m.axis).toBe('auto');
    expect(m.normalization).toMatch(/z-score/);
    expect(JSON.parse(m.class_names)).toEqual(['background', 'LV', 'MYO', 'RV']);
    expect(JSON.parse(m.genotype)).toEqual(genotype);
    const session = await ort.InferenceSession.create(file);
    const out = await session.run({ image: new ort.Tensor('float32', new Float32Array(2 * 16 * 16), [2, 1, 16, 16]) });
    expect(out.logits.dims).toEqual([2, 4, 16, 16]);
    await session.release();
  });

  it('takes the configuration from --config for a trainer workdir, and --out', async () => {
    const out = path.join(root, 'exported', 'unet.onnx');
    const r = await run([workdir, '--config', path.join(root, 'trainer.yaml'), '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    expect(readModelSummary(readFileSync(out)).metadata.name).toBe('hippo-work');
  });

  it('reads search.json holding the IACSearch itself', async () => {
    const dir = path.join(root, 'runs', 'object');
    const net = createNetwork({
      backbone: { ...spec.backbone, pretrainEpochs: 1, learningRate: 1e-3 },
      inChannels: 1,
      numClasses: 4,
      cells: genotype,
      space: { operations: [...OPERATIONS], ...spec.search },
      seed: 5,
    });
    saveWeights(net, path.join(dir, 'retrain', 'model'));
    net.dispose();
    writeFileSync(path.join(dir, 'genotype.json'), JSON.stringify(genotype));
    writeFileSync(
      path.join(dir, 'search.json'),
      JSON.stringify({ apiVersion: 'nas.iac.dev/v1alpha1', kind: 'IACSearch', metadata: { name: 'from-object' }, spec }),
    );
    const r = await run([dir]);
    expect(r.code, r.stderr).toBe(0);
    expect(readModelSummary(readFileSync(path.join(dir, 'model.onnx'))).metadata.name).toBe('from-object');
  });

  it("records an unknown modality as such, or the one --modality gives, when the run's dataset is not on this machine", async () => {
    const config = path.join(root, 'elsewhere.yaml');
    writeFileSync(
      config,
      `seed: 5\ndataset: {format: msd, path: ${path.join(root, 'not-here')}, sliceSize: 16}\nbackbone: {depth: 2, baseFilters: 8}\nsearch: {nodes: 2, partialChannels: 2}\n`,
    );
    const out = path.join(root, 'elsewhere.onnx');
    let r = await run([workdir, '--config', config, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/does not tell its modality.*give --modality MRI\|CT/);
    let m = readModelSummary(readFileSync(out)).metadata;
    expect(m.modality).toBe('unknown');
    expect(JSON.parse(m.class_names)).toEqual(['background', 'class_1', 'class_2', 'class_3']);
    r = await run([workdir, '--config', config, '--out', out, '--modality', 'CT']);
    expect(r.code, r.stderr).toBe(0);
    m = readModelSummary(readFileSync(out)).metadata;
    expect(m.modality).toBe('CT');
    expect(m.normalization).toMatch(/0\.5 and 99\.5 percentiles/);
    r = await run([workdir, '--config', config, '--modality', 'PET']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--modality must be MRI or CT, got 'PET'");
    r = await run([runDir, '--modality', 'CT', '--out', out]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/trained with MRI normalisation/);
  });

  it('exits 2 with the file and the fix for a missing genotype, model or configuration', async () => {
    const bare = path.join(root, 'bare');
    let r = await run([bare]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bare}: no such directory`);

    r = await run([workdir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/neither trainer-config\.json .* nor search\.json .*--config <file>/);

    const noModel = path.join(root, 'runs', 'no-model');
    mkdirSync(noModel, { recursive: true });
    writeFileSync(path.join(noModel, 'search.json'), readFileSync(path.join(runDir, 'search.json')));
    r = await run([noModel]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path.join(noModel, 'genotype.json')} not found: run the prune phase first`);

    writeFileSync(path.join(noModel, 'genotype.json'), JSON.stringify(genotype));
    r = await run([noModel]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(path.join(noModel, 'retrain', 'model'));
    expect(r.stderr).toMatch(/retrain phase/);

    // A configuration that does not fit the saved model (another baseFilters) names both.
    writeFileSync(
      path.join(root, 'wide.yaml'),
      `seed: 5\ndataset: {format: phantom, sliceSize: 16}\nbackbone: {depth: 2, baseFilters: 16}\nsearch: {nodes: 2, partialChannels: 2}\n`,
    );
    r = await run([workdir, '--config', path.join(root, 'wide.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/shapes differ/);
    expect(r.stderr).toContain('wide.yaml');

    r = await run([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/give exactly one run directory/);
    r = await run([runDir, '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--bogus'/);
  });
});
