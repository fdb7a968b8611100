// `iacnas export <run dir or trainer workdir>`: the retrained network (genotype.json +
// retrain/model/) as an ONNX model (docs/onnx.md).
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { type CommandIO, parseCommandLine, isBadInput, workdirLayout } from '../../../contract/src/index.ts';
import { writeFileAtomic } from '../util/atomic.ts';
import type { TrainerConfig } from '../config/index.ts';
import { loadRunNetwork, openRun, type RunInfo } from '../predict/run.ts';
import { IR_VERSION, OPSET, networkToOnnx, type OnnxExport } from './onnx.ts';
import type { Comparison } from './verify.ts';
import { badInput } from '../util/bad-input.ts';

const USAGE = `usage: iacnas export <run dir or trainer workdir> [--config <file>] [--out <file.onnx>] [--modality MRI|CT] [--verify]

Writes the retrained network (the U-Net with the discrete cells of genotype.json and
the weights of retrain/model/) as an ONNX model, opset ${OPSET}: input 'image' float32
[N, 1, S, S] (NCHW, S = dataset.sliceSize, normalised slices), outputs 'logits' and
'probabilities' [N, classes, S, S]. Class names, slice size, slicing axis,
normalisation and genotype are in the model's metadata (docs/onnx.md).

  --config <file>   the trainer configuration (YAML or JSON) or IACSearch manifest the
                    phases ran with; default: <dir>/search.json, which 'iacnas run'
                    writes into its run directory
  --out <file>      where the model goes (default <dir>/model.onnx)
  --modality MRI|CT the normalisation the run trained with; needed only when its
                    dataset.modality is auto and neither its results.json nor its
                    dataset.json says which (the model's metadata records it)
  --verify          also run the model in onnxruntime-node and the network in
                    TensorFlow.js on random slices and compare their logits
  -h, --help        this help

Exit status: 0 written (and verified), 1 failed (or the outputs differ), 2 bad input
(no genotype.json, no retrained model, no or a bad configuration).`;

export interface ExportRunOptions {
  /** Run directory (runs/<name>/ of `iacnas run`) or trainer work directory. */
  dir: string;
  /** Trainer configuration or IACSearch file; <dir>/search.json when omitted. */
  config?: string;
  /** Output file; <dir>/model.onnx when omitted. */
  out?: string;
  verify?: boolean;
  /** The modality when the run does not tell it (dataset.modality auto, no results.json or dataset.json to read). */
  modality?: 'MRI' | 'CT';
  log?: (line: string) => void;
}

export interface ExportRunOutcome {
  file: string;
  bytes: number;
  export: OnnxExport;
  /** Where the configuration came from. */
  configSource: string;
  classNames: string[];
  modality: string;
  verify?: Comparison;
}

const NORMALISATION: Record<'MRI' | 'CT', string> = {
  MRI: 'z-score over the whole 3-D volume before slicing: (v - mean) / std, population std; a constant volume becomes 0',
  CT: "clip to the volume's 0.5 and 99.5 percentiles (linear interpolation), then z-score over the whole 3-D volume before slicing",
};

const AXIS_RULE: Record<TrainerConfig['dataset']['axis'], string> = {
  auto: 'the voxel axis with the largest spacing in the NIfTI header (on a tie the last of them)',
  i: 'voxel axis i (the first NIfTI axis)',
  j: 'voxel axis j (the second NIfTI axis)',
  k: 'voxel axis k (the third NIfTI axis)',
};

/** The dataset's name, from results.json (written by evaluate) or the phantom. */
function datasetName(run: RunInfo): string | undefined {
  if (run.config.dataset.format === 'phantom') return 'phantom';
  try {
    const r = JSON.parse(readFileSync(workdirLayout(run.workdir).results, 'utf8')) as { dataset?: unknown };
    return typeof r.dataset === 'string' ? r.dataset : undefined;
  } catch {
    return undefined;
  }
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '';
  } catch {
    return '';
  }
}

/** Exports the retrained network of `dir` to an ONNX file. */
export async function exportRun(o: ExportRunOptions): Promise<ExportRunOutcome> {
  const log = o.log ?? (() => {});
  const run = openRun(o.dir, { config: o.config });
  const { config } = run;
  log(`export: configuration from ${run.configSource}`);
  const size = config.dataset.sliceSize;
  const step = 2 ** config.backbone.depth;
  if (size % step !== 0)
    throw badInput('config', `dataset.sliceSize ${size} is not a multiple of 2^backbone.depth = ${step}: not the configuration the model was trained with`, {
      path: 'dataset.sliceSize',
    });
  if (o.modality && run.modality && o.modality !== run.modality) {
    throw badInput(
      'usage',
      `--modality ${o.modality}: the run was trained with ${run.modality} normalisation (from ${run.configSource} or its results.json / dataset.json); leave --modality out`,
    );
  }

  const { initBackend } = await import('../backend/index.ts');
  // Exporting only reads the weights: the pure-JS backend, which starts at once, holds them.
  // Verifying runs the network, on the backend the trainer would choose.
  await initBackend(o.verify ? {} : { backend: 'cpu', quiet: true });
  const { loadModelKit } = await import('../training/model-kit.ts');
  const net = await loadRunNetwork(await loadModelKit(), run);
  try {
    log(`export: genotype from ${workdirLayout(run.workdir).genotype}, weights from ${run.modelDir}`);
    const dataset = datasetName(run);
    const modality = run.modality ?? o.modality;
    if (!modality)
      log(
        `export: the run does not tell its modality (dataset.modality auto, no results.json or dataset.json to read): the metadata says 'unknown'; give --modality MRI|CT`,
      );
    const metadata: Record<string, string> = {
      name: config.name,
      ...(dataset ? { dataset } : {}),
      modality: modality ?? 'unknown',
      normalization: modality
        ? NORMALISATION[modality]
        : `per the dataset's modality, which the run does not tell (MRI: ${NORMALISATION.MRI}; CT: ${NORMALISATION.CT})`,
      axis: config.dataset.axis,
      slicing: `2-D slices across ${AXIS_RULE[config.dataset.axis]}; rows are the lower-numbered in-plane voxel axis, columns the higher (a slice across k is [i, j])`,
      resize: `each slice resampled bilinearly to ${size}x${size} (pixel centres aligned, align_corners=false), after normalisation`,
      prediction: 'argmax of logits over axis 1 is the label value; class_names[v] names label v',
      seed: String(config.seed),
    };
    const result = networkToOnnx(net, { height: size, classNames: run.classNames, metadata, name: config.name, producerVersion: packageVersion() });
    const file = o.out ?? workdirLayout(run.workdir).onnxModel;
    mkdirSync(dirname(file), { recursive: true });
    writeFileAtomic(file, result.bytes);
    let verify: Comparison | undefined;
    if (o.verify) {
      log('export: running the model in onnxruntime-node and the network in TensorFlow.js on 4 random slices');
      const { compareWithOnnxRuntime, randomSlices } = await import('./verify.ts');
      const x = randomSlices(4, size, size, net.options.inChannels, config.seed);
      try {
        verify = await compareWithOnnxRuntime(net, result.bytes, x);
      } finally {
        x.dispose();
      }
    }
    return {
      file,
      bytes: result.bytes.length,
      export: result,
      configSource: run.configSource,
      classNames: run.classNames,
      modality: modality ?? 'unknown',
      verify,
    };
  } finally {
    net.dispose();
  }
}

const shapeText = (shape: readonly (number | string)[]) => `[${shape.join(', ')}]`;

function sizeText(bytes: number): string {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** `iacnas export`. Exit status: 0 written (and verified), 1 failed, 2 bad input. */
export async function exportMain(argv: string[], io: CommandIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const parsed = parseCommandLine(
    'export',
    USAGE,
    argv,
    {
      config: { type: 'string' },
      out: { type: 'string' },
      verify: { type: 'boolean', default: false },
      modality: { type: 'string' },
    },
    io,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) {
    stderr.write(
      `iacnas export: give exactly one run directory or trainer workdir${positionals.length > 1 ? ` (got ${positionals.join(', ')})` : ''}\n\n${USAGE}\n`,
    );
    return 2;
  }
  const modality = values.modality;
  if (modality !== undefined && modality !== 'MRI' && modality !== 'CT') {
    stderr.write(`iacnas export: --modality must be MRI or CT, got '${modality}'\n`);
    return 2;
  }
  let outcome: ExportRunOutcome;
  try {
    outcome = await exportRun({
      dir: positionals[0],
      config: values.config,
      out: values.out,
      verify: values.verify,
      modality,
      log: (line) => stderr.write(`${line}\n`),
    });
  } catch (e) {
    const bad = isBadInput(e);
    stderr.write(`iacnas export: ${bad ? (e as Error).message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return bad ? 2 : 1;
  }
  const ex = outcome.export;
  const lines = [
    `wrote ${outcome.file} (${sizeText(outcome.bytes)}, ${outcome.bytes} bytes)`,
    `  ONNX opset ${ex.opset}, IR version ${IR_VERSION}: ${ex.nodes} nodes, ${ex.parameters} parameters`,
    ...ex.inputs.map((t) => `  input   ${t.name.padEnd(14)} float32 ${shapeText(t.shape)}  (NCHW)`),
    ...ex.outputs.map((t) => `  output  ${t.name.padEnd(14)} float32 ${shapeText(t.shape)}`),
    `  classes ${outcome.classNames.map((c, i) => `${i}=${c}`).join(', ')}`,
    `  preprocessing: ${ex.metadata.modality} normalisation per volume, slices across axis '${ex.metadata.axis}', resized to ${ex.metadata.slice_size}x${ex.metadata.slice_size} (metadata: normalization, slicing, resize)`,
  ];
  let code = 0;
  if (outcome.verify) {
    const v = outcome.verify;
    const { RELATIVE_TOLERANCE } = await import('./verify.ts');
    const ok = v.relative <= RELATIVE_TOLERANCE;
    lines.push(
      `  ${ok ? 'verified' : 'VERIFICATION FAILED'}: onnxruntime-node vs TensorFlow.js on ${v.shape[0]} random slices: max |logit difference| ${v.maxAbsDiff.toExponential(2)}, ` +
        `${v.relative.toExponential(2)} of the largest |logit| ${v.maxAbsLogit.toFixed(3)} (tolerance ${RELATIVE_TOLERANCE}); argmax agrees on ${(100 * v.argmaxAgreement).toFixed(2)}% of pixels`,
    );
    if (!ok) code = 1;
  }
  stdout.write(`${lines.join('\n')}\n`);
  return code;
}
