// `iacnas evaluate <run> --data <dir> --out <dir>`: a finished run on another labelled
// dataset, every case, into its own output directory.
import { existsSync, realpathSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseCommandLine, isBadInput, PATIENTS_FILE, RESULTS_FILE, workdirLayout } from '../../../contract/src/index.ts';
import { EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK } from '../../../contract/src/index.ts';
import { detectFormat } from '../data/layout.ts';
import type { Modality } from '../data/slicing.ts';
import { type CliIO, positiveInt } from '../predict/cli.ts';
import { loadRunNetwork, openRun } from '../predict/run.ts';
import { CONVENTIONS, type EvalModel, type EvaluationResults, evaluateCases, openLabelledDataset, summarise, writeResults } from './evaluate.ts';
import { badInput } from '../util/bad-input.ts';
import { isRawFormat, RAW_FORMATS } from '../config/dataset.ts';

export const EVALUATE_USAGE = `usage: iacnas evaluate <run> --data <dataset dir> --out <dir> [options]

Evaluates a finished run on another labelled dataset: every case (no split), Dice and
HD95 on each scan's own voxel grid (HD95 in mm), with the run's cell model and, when
the run has one, its U-Net baseline. Writes results.json and patients.csv into --out;
the run's own results are left as they are.

  <run>                    the run directory of 'iacnas run' (runs/<name>/), or a
                           trainer work directory together with --config
  --data <dir>             the dataset: the directory holding dataset.json (MSD or
                           nnU-Net v2 raw layout, told apart by dataset.json)
  --out <dir>              where results.json and patients.csv go (not the run's directory)
  --config <file>          the trainer configuration of a trainer work directory
  --format msd|nnunet      the layout, instead of telling it from dataset.json
  --cases <n>              only the first n cases (sorted by case id)
  --modality auto|MRI|CT   normalisation of the dataset's images (default: as the run
                           was trained; auto: from the dataset's dataset.json)
  --axis auto|i|j|k        slicing axis (default: the run's dataset.axis)
  --batch-size <n>         slices per forward pass (default 16)
  -h, --help               this help

A progress line per case goes to stderr, the summary to stdout.
Exit status: 0 done, 2 bad input (run, dataset or option), 1 failure.`;

function bad(message: string): Error {
  return badInput('usage', message);
}

function sameDir(a: string, b: string): boolean {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return resolve(p);
    }
  };
  return real(a) === real(b);
}

export async function evaluateMain(argv: string[], io: CliIO = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const parsed = parseCommandLine(
    'evaluate',
    EVALUATE_USAGE,
    argv,
    {
      data: { type: 'string' },
      out: { type: 'string' },
      config: { type: 'string' },
      format: { type: 'string' },
      cases: { type: 'string' },
      modality: { type: 'string' },
      axis: { type: 'string' },
      'batch-size': { type: 'string' },
    },
    io,
  );
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const usage = (message: string) => {
    stderr.write(`iacnas evaluate: ${message}\n\n${EVALUATE_USAGE}\n`);
    return EXIT_BAD_INPUT;
  };
  if (positionals.length !== 1) return usage(positionals.length === 0 ? 'give the run directory' : `one run at a time (got ${positionals.join(', ')})`);
  if (!values.data) return usage('--data <dataset dir> is required (the directory holding dataset.json)');
  if (!values.out) return usage("--out <dir> is required (results.json and patients.csv go there, never over the run's own)");
  const started = performance.now();
  try {
    const { format, modality: modalityFlag, axis } = values;
    if (format !== undefined && !isRawFormat(format)) throw bad(`--format must be ${RAW_FORMATS.join(' or ')}, got '${format}'`);
    if (modalityFlag !== undefined && !['auto', 'MRI', 'CT'].includes(modalityFlag)) throw bad(`--modality must be auto, MRI or CT, got '${modalityFlag}'`);
    if (axis !== undefined && !['auto', 'i', 'j', 'k'].includes(axis)) throw bad(`--axis must be auto, i, j or k, got '${axis}'`);
    const cases = positiveInt('--cases', values.cases);
    const batchSize = positiveInt('--batch-size', values['batch-size']);
    const run = openRun(positionals[0], { config: values.config });
    const out = resolve(values.out);
    if (sameDir(out, run.workdir)) {
      throw bad(`--out ${values.out} is the run's own directory, whose results.json and patients.csv belong to its test split; choose another directory`);
    }
    if (!existsSync(values.data)) throw bad(`--data ${values.data}: no such directory`);
    const runModality: Modality | undefined = run.modality;
    if (!runModality && modalityFlag === undefined) {
      throw bad(
        `cannot tell the intensity normalisation the run was trained with (dataset.modality is auto, and neither ${workdirLayout(run.workdir).results} nor the run's dataset.json is readable here); give --modality MRI, CT or auto`,
      );
    }
    const dataset = await openLabelledDataset(
      {
        format: format ?? detectFormat(values.data),
        path: resolve(values.data),
        cases,
        modality: modalityFlag as 'auto' | 'MRI' | 'CT' | undefined,
        axis: axis as 'auto' | 'i' | 'j' | 'k' | undefined,
      },
      { dataset: run.config.dataset, modality: runModality ?? 'MRI', numClasses: run.numClasses, classNames: run.classNames },
      `--data ${values.data}`,
      (line) => stderr.write(`iacnas evaluate: warning: ${line}\n`),
    );

    if (io.startBackend ?? true) await (await import('../training/setup.ts')).startBackend();
    const kit = io.kit ?? (await (await import('../training/model-kit.ts')).loadModelKit());
    const nets: EvalModel[] = [];
    try {
      nets.push({ label: 'IAC', net: await loadRunNetwork(kit, run, 'model') });
      if (run.baselineDir) nets.push({ label: 'U-Net', net: await loadRunNetwork(kit, run, 'baseline') });
      stderr.write(
        `iacnas evaluate: ${dataset.ids.length} cases of ${dataset.name} (${values.data}, ${dataset.reader.modality} normalisation) with the ${nets.map((n) => (n.label === 'IAC' ? 'cell model' : 'U-Net baseline')).join(' and the ')} of ${run.workdir}\n`,
      );
      const [mp, bp] = await evaluateCases(nets, dataset, {
        sliceSize: run.config.dataset.sliceSize,
        numClasses: run.numClasses,
        metrics: run.config.evaluate.metrics,
        batchSize,
        what: 'evaluate',
        log: (line) => stderr.write(`${line}\n`),
      });
      const model = summarise(mp, dataset.classNames);
      const baseline = bp ? summarise(bp, dataset.classNames) : undefined;
      const results: EvaluationResults = {
        dataset: dataset.name,
        split: 'all',
        grid: 'native',
        classNames: [...dataset.classNames],
        sliceSize: run.config.dataset.sliceSize,
        modality: dataset.reader.modality,
        axis: dataset.axis,
        conventions: CONVENTIONS,
        model,
        ...(baseline ? { baseline, diceGain: model.meanDice - baseline.meanDice } : {}),
        path: resolve(values.data),
        run: run.workdir,
        seconds: (performance.now() - started) / 1000,
        time: new Date().toISOString(),
      };
      writeResults(out, results);
      const line = (label: string, r: typeof model) =>
        `${label}: mean Dice ${r.meanDice.toFixed(4)} (${Object.entries(r.dicePerClass)
          .map(([c, d]) => `${c} ${d.toFixed(4)}`)
          .join(', ')})${r.meanHd95 !== null ? `, mean HD95 ${r.meanHd95.toFixed(2)} mm` : ''}; on the resized slices ${r.sliceMeanDice.toFixed(4)}`;
      stdout.write(`${dataset.name}: ${dataset.ids.length} cases\n${line('IAC model', model)}\n`);
      if (baseline)
        stdout.write(
          `${line('U-Net baseline', baseline)}\ngain of the cells over the U-Net trained with the same budget: ${(model.meanDice - baseline.meanDice).toFixed(4)}\n`,
        );
      stdout.write(`results: ${join(out, RESULTS_FILE)}, ${join(out, PATIENTS_FILE)}\n`);
      return EXIT_OK;
    } finally {
      for (const n of nets) n.net.dispose();
    }
  } catch (e) {
    const isBad = isBadInput(e);
    stderr.write(`iacnas evaluate: ${isBad ? (e as Error).message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return isBad ? EXIT_BAD_INPUT : EXIT_FAILED;
  }
}
