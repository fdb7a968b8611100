// `iacnas predict <run> <scans...>`: label maps for new scans with a finished run.
import { existsSync, statSync } from 'node:fs';
import { type CommandIO, parseCommandLine, isBadInput, workdirLayout } from '../../../contract/src/index.ts';
import { EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK } from '../../../contract/src/index.ts';
import type { Modality } from '../data/slicing.ts';
import type { ModelKit } from '../training/model-kit.ts';
import { niftiFilesIn, planOutputs, type PredictOutcome, predictFiles } from './predict.ts';
import { loadRunNetwork, openRun } from './run.ts';
import { badInput } from '../util/bad-input.ts';

export const PREDICT_USAGE = `usage: iacnas predict <run> <scan.nii.gz | dir>... [options]

Segments new scans with the trained cell model of a finished run: one label map per
scan (NIfTI, uint8, class values 0..classes-1) on the scan's own voxel grid with the
scan's header (dimensions, spacing, qform/sform), so it opens aligned with the scan in
ITK-SNAP or 3D Slicer. The scans are prepared as the run's training slices were.

  <run>                  the run directory of 'iacnas run' (runs/<name>/), or a trainer
                         work directory together with --config
  <scan> | <dir>         NIfTI files (.nii, .nii.gz), or directories: all their
                         .nii/.nii.gz files
  --config <file>        the trainer configuration of a trainer work directory
  --out <dir>            where the label maps go (default: <run>/predictions/)
  --keep-names           name each label map like its scan instead of <case>_seg.nii.gz
                         (never over the scan itself)
  --modality MRI|CT      intensity normalisation; needed only when the run trained with
                         modality auto and neither its results.json nor its dataset.json
                         says which
  --baseline             segment with the run's U-Net baseline (baseline/model/)
  --batch-size <n>       slices per forward pass (default 16)
  -h, --help             this help

A progress line per scan goes to stderr, the path of each label map to stdout.
Exit status: 0 every scan segmented; 2 bad input: a scan that cannot be read is named
and skipped (the others are still written), or a bad run or option; 1 failure.`;

export interface CliIO extends CommandIO {
  /** The model functions; the real model when omitted. */
  kit?: ModelKit;
  /** Start the tfjs backend (default true; tests start it themselves). */
  startBackend?: boolean;
}

/** A positive whole number option, or undefined when not given. */
export function positiveInt(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < 1) throw badInput('usage', `${name} must be a positive whole number, got '${text}'`);
  return v;
}

export async function predictMain(argv: string[], io: CliIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const parsed = parseCommandLine(
    'predict',
    PREDICT_USAGE,
    argv,
    {
      config: { type: 'string' },
      out: { type: 'string' },
      'keep-names': { type: 'boolean', default: false },
      modality: { type: 'string' },
      baseline: { type: 'boolean', default: false },
      'batch-size': { type: 'string' },
    },
    io,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length < 2) {
    stderr.write(`iacnas predict: give the run and at least one scan or directory of scans\n\n${PREDICT_USAGE}\n`);
    return EXIT_BAD_INPUT;
  }
  const [runPath, ...sources] = positionals;
  try {
    if (values.modality !== undefined && values.modality !== 'MRI' && values.modality !== 'CT') {
      throw badInput('usage', `--modality must be MRI or CT, got '${values.modality}'`);
    }
    const batchSize = positiveInt('--batch-size', values['batch-size']);
    const run = openRun(runPath, { config: values.config });
    let modality: Modality | undefined = values.modality as Modality | undefined;
    if (modality && run.modality && modality !== run.modality) {
      stderr.write(`iacnas predict: warning: the run was trained with ${run.modality} normalisation; --modality ${modality} prepares the scans differently\n`);
    }
    modality ??= run.modality;
    if (!modality) {
      throw badInput(
        'usage',
        `cannot tell the intensity normalisation the run was trained with (dataset.modality is auto, and neither ${workdirLayout(run.workdir).results} nor the run's dataset.json is readable here); give --modality MRI or --modality CT`,
      );
    }
    if (values.baseline && !run.baselineDir) {
      throw badInput('usage', `--baseline: ${workdirLayout(run.workdir).baselineModel} not found; the run was retrained without evaluate.baseline`);
    }
    // Directories are expanded here; a file that is missing or unreadable is a per-file error later.
    const inputs: string[] = [];
    for (const s of sources) {
      if (existsSync(s) && statSync(s).isDirectory()) {
        const files = niftiFilesIn(s);
        if (files.length === 0) throw badInput('file', `${s}: no .nii or .nii.gz files in this directory`, { file: s });
        inputs.push(...files);
      } else {
        inputs.push(s);
      }
    }
    const out = values.out ?? workdirLayout(run.workdir).predictions;
    const outputs = planOutputs(inputs, out, values['keep-names']);

    if (io.startBackend ?? true) await (await import('../training/setup.ts')).startBackend();
    const kit = io.kit ?? (await (await import('../training/model-kit.ts')).loadModelKit());
    const which = values.baseline ? 'baseline' : 'model';
    const net = await loadRunNetwork(kit, run, which);
    let outcome: PredictOutcome;
    try {
      stderr.write(
        `iacnas predict: ${inputs.length} scan(s) with the ${which === 'model' ? 'cell model' : 'U-Net baseline'} of ${run.workdir} ` +
          `(${run.numClasses} classes: ${run.classNames.join(', ')}; ${modality} normalisation, slices of ${run.config.dataset.sliceSize}x${run.config.dataset.sliceSize}, axis ${run.config.dataset.axis}) into ${out}\n`,
      );
      outcome = await predictFiles({
        net,
        inputs,
        outputs,
        axis: run.config.dataset.axis,
        sliceSize: run.config.dataset.sliceSize,
        numClasses: run.numClasses,
        modality,
        batchSize,
        description: `iacnas ${run.config.name} ${which === 'model' ? 'IAC' : 'U-Net'}`,
        log: (line) => stderr.write(`${line}\n`),
      });
    } finally {
      net.dispose();
    }
    for (const w of outcome.written) stdout.write(`${w.output}\n`);
    if (outcome.failed.length > 0) {
      stderr.write(
        `iacnas predict: ${outcome.written.length} of ${inputs.length} scan(s) segmented; ${outcome.failed.length} failed:\n  ${outcome.failed.map((f) => (f.message.startsWith(f.input) ? f.message : `${f.input}: ${f.message}`)).join('\n  ')}\n`,
      );
      return EXIT_BAD_INPUT;
    }
    stderr.write(`iacnas predict: ${outcome.written.length} label map(s) written to ${out}\n`);
    return EXIT_OK;
  } catch (e) {
    const bad = isBadInput(e);
    stderr.write(`iacnas predict: ${bad ? (e as Error).message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return bad ? EXIT_BAD_INPUT : EXIT_FAILED;
  }
}
