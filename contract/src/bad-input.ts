// "Bad input": a configuration, a dataset or a file that retrying cannot fix. Every
// command exits EXIT_BAD_INPUT for one, and the operator fails the search at once.
// Each issue names where the problem is (a configuration field path, or a file) and its
// fix, so that the operator can map configuration paths onto the IACSearch spec without
// reading message text.

/** One problem: a dotted configuration path (`search.maxEpochs`, `dataset.classes[1]`) or a file, and what is wrong with it. */
export interface BadInputIssue {
  /** Configuration field path, relative to the trainer configuration; absent for an issue that is about a file or no single field. */
  path?: string;
  /** The file the issue is about, when it is one. */
  file?: string;
  /** What is wrong and how to fix it, without the path (`message` of the error repeats both). */
  message: string;
}

/** The kind of input at fault: the trainer configuration, a dataset, a file the command reads (checkpoint, model, genotype), or the command line. */
export type BadInputKind = 'config' | 'data' | 'file' | 'usage';

/**
 * A failure retrying cannot fix. `message` is what a person reads (one line per issue,
 * after an optional heading); `issues` is the same as data.
 */
export class BadInputError extends Error {
  override name = 'BadInputError';
  readonly kind: BadInputKind;
  readonly issues: readonly BadInputIssue[];

  constructor(kind: BadInputKind, message: string, issues?: readonly BadInputIssue[], options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.issues = issues ?? [{ message }];
  }

  /** One issue per line: `heading` then `<path>: <message>` for each. */
  static fromIssues(kind: BadInputKind, heading: string | undefined, issues: readonly BadInputIssue[]): BadInputError {
    const lines = issues.map(issueLine);
    return new BadInputError(kind, heading ? [heading, ...lines].join('\n') : lines.join('\n'), issues);
  }
}

/** `<path>: <message>` (or the file's, or the message alone). */
export function issueLine(issue: BadInputIssue): string {
  const where = issue.path ?? issue.file;
  return where ? `${where}: ${issue.message}` : issue.message;
}

export function isBadInput(e: unknown): e is BadInputError {
  return e instanceof BadInputError;
}
