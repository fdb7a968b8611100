// `iacnas dataset <check|phantom>`.
import { EXIT_BAD_INPUT, isBadInput, parseCommandLine } from '../../../contract/src/index.ts';
import { checkDataset, formatSummary, writePhantomDataset } from './check.ts';
import { PHANTOM_DEFAULT_CASES } from './phantom.ts';
import { isRawFormat, RAW_FORMATS } from '../config/dataset.ts';

const usage = `usage:
  iacnas dataset check <dir> [--format msd|nnunet] [--json]
      decode every case of a raw dataset, print a summary; exit 1 naming each bad file
  iacnas dataset phantom --out <dir> [--cases N] [--seed S]
      write the synthetic cardiac phantom in nnU-Net v2 raw layout (default ${PHANTOM_DEFAULT_CASES} cases, seed 0)`;

/** Exit status: 0 ok, 1 the dataset has problems, 2 bad usage. */
export async function datasetMain(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    console.log(usage);
    return sub === undefined ? 2 : 0;
  }
  const parsed = parseCommandLine(`dataset ${sub}`, usage, rest, {
    format: { type: 'string' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
    cases: { type: 'string' },
    seed: { type: 'string' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  try {
    return runDataset(sub, values, positionals);
  } catch (e) {
    if (!isBadInput(e)) throw e;
    console.error(`iacnas dataset ${sub}: ${e.message}`);
    return EXIT_BAD_INPUT;
  }
}

function runDataset(sub: string, values: { format?: string; json?: boolean; out?: string; cases?: string; seed?: string }, positionals: string[]): number {
  if (sub === 'check') {
    if (positionals.length !== 1) {
      console.error(`iacnas dataset check: give exactly one dataset directory\n\n${usage}`);
      return 2;
    }
    const format = values.format;
    if (format !== undefined && !isRawFormat(format)) {
      console.error(`iacnas dataset check: --format must be ${RAW_FORMATS.join(' or ')}, got '${format}'`);
      return 2;
    }
    const report = checkDataset(positionals[0], format);
    if (values.json) console.log(JSON.stringify(report, null, 2));
    else {
      if (report.summary) console.log(formatSummary(report.summary));
      for (const w of report.warnings) console.error(`warning: ${w}`);
    }
    if (report.problems.length > 0) {
      console.error(`${report.problems.length} problem(s):\n  ${report.problems.join('\n  ')}`);
      return 1;
    }
    if (!values.json) console.log('ok');
    return 0;
  }
  if (sub === 'phantom') {
    if (!values.out) {
      console.error(`iacnas dataset phantom: --out <dir> is required\n\n${usage}`);
      return 2;
    }
    const cases = values.cases === undefined ? PHANTOM_DEFAULT_CASES : Number(values.cases);
    const seed = values.seed === undefined ? 0 : Number(values.seed);
    if (!Number.isInteger(cases) || cases < 1) {
      console.error(`iacnas dataset phantom: --cases must be a positive whole number, got '${values.cases}'`);
      return 2;
    }
    if (!Number.isInteger(seed) || seed < 0) {
      console.error(`iacnas dataset phantom: --seed must be a whole number >= 0, got '${values.seed}'`);
      return 2;
    }
    writePhantomDataset(values.out, cases, seed);
    console.log(`wrote ${cases} phantom cases (seed ${seed}) to ${values.out} in nnU-Net v2 layout`);
    return 0;
  }
  console.error(`iacnas dataset: unknown subcommand '${sub}'\n\n${usage}`);
  return 2;
}
