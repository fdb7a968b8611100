// Option parsing of every `iacnas` command: node:util parseArgs with -h/--help, the
// usage printed with every mistake, and the exit status of both.
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';
import { EXIT_BAD_INPUT, EXIT_OK } from './exit-codes.ts';

export interface CommandIO {
  stdout?: { write(text: string): unknown };
  stderr?: { write(text: string): unknown };
}

const HELP = { help: { type: 'boolean', short: 'h', default: false } } as const;

type Parsed<O extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<{ args: string[]; allowPositionals: true; options: O }>>;

/**
 * The options and positional arguments of `iacnas <command>`, or the exit status when
 * the command is answered here: 0 after printing the usage for --help, 2 after a
 * usage error (an unknown option, a missing value) with the usage on stderr.
 */
export function parseCommandLine<const O extends ParseArgsOptionsConfig>(
  command: string,
  usage: string,
  argv: string[],
  options: O,
  io: CommandIO = {},
): number | { values: Parsed<O>['values']; positionals: string[] } {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, options: { ...options, ...HELP } }) as Parsed<O>;
  } catch (e) {
    stderr.write(`iacnas ${command}: ${(e as Error).message}\n\n${usage}\n`);
    return EXIT_BAD_INPUT;
  }
  if ((parsed.values as { help?: boolean }).help) {
    stdout.write(`${usage}\n`);
    return EXIT_OK;
  }
  return { values: parsed.values, positionals: parsed.positionals };
}
