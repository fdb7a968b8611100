#!/usr/bin/env node
// The `iacnas` command. Subcommands are dispatched to the part of the project that owns
// them; each module is imported lazily so that `iacnas trainer ...` never loads the
// operator and `iacnas operator` never loads TensorFlow.js.
const usage = `usage: iacnas <command> [options]

commands:
  run <IACSearch.yaml> [--out runs/]   run a whole search (search, prune, retrain, evaluate) on this machine
  run <IACSearchSet.yaml> [--parallel n]  run a fleet's children on this machine, with a table of them
  trainer <phase> ...                  one trainer phase: search | prune | derive | retrain | evaluate
  predict <run> <scans...> [--out d]   segment new scans (NIfTI) with a finished run, on each scan's own grid
  evaluate <run> --data <dir> --out d  evaluate a finished run on another labelled dataset (all of its cases)
  export <run> [--out f.onnx]          export a finished run's model as ONNX
  dataset <check|phantom> ...          validate a dataset, or write the synthetic phantom dataset
  operator [options]                   run the Kubernetes operator

Run 'iacnas <command> --help' for the options of a command.`;

const [command, ...rest] = process.argv.slice(2);

async function main(): Promise<number> {
  switch (command) {
    case 'run':
      return (await import('../operator/src/local/cli.ts')).main(rest);
    case 'operator':
      return (await import('../operator/src/main.ts')).main(rest);
    case 'trainer':
      return (await import('../trainer/src/cli.ts')).trainerMain(rest);
    case 'dataset':
      return (await import('../trainer/src/data/cli.ts')).datasetMain(rest);
    case 'predict':
      return (await import('../trainer/src/predict/cli.ts')).predictMain(rest);
    case 'evaluate':
      return (await import('../trainer/src/eval/cli.ts')).evaluateMain(rest);
    case 'export':
      return (await import('../trainer/src/export/cli.ts')).exportMain(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      console.log(usage);
      return command === undefined ? 2 : 0;
    default:
      console.error(`iacnas: unknown command '${command}'\n\n${usage}`);
      return 2;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(`iacnas: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  },
);
