// Bad input as the trainer raises it: the contract's BadInputError with one issue that
// names the configuration field or the file it is about. The message a person reads is
// given whole; the issue repeats it without the leading `<path or file>: `.
import { BadInputError, type BadInputKind } from '../../../contract/src/index.ts';

/** A BadInputError of `kind` about `where` (a configuration field path, or a file). */
export function badInput(kind: BadInputKind, message: string, where: { path?: string; file?: string } = {}): BadInputError {
  const prefix = where.path ?? where.file;
  const rest = prefix !== undefined && message.startsWith(`${prefix}: `) ? message.slice(prefix.length + 2) : message;
  return new BadInputError(kind, message, [
    { ...(where.path !== undefined && { path: where.path }), ...(where.file !== undefined && { file: where.file }), message: rest },
  ]);
}
