// JSON-lines logger: one object per line with time, level, msg and the context fields
// (a search's namespace and name are bound with child()).

export const LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export function parseLogLevel(value: string): LogLevel {
  if ((LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new Error(`--log-level: expected one of ${LEVELS.join(', ')}, got '${value}'`);
}

export function createLogger(opts: { level?: LogLevel; write?: (line: string) => void; fields?: LogFields; now?: () => Date } = {}): Logger {
  const min = LEVELS.indexOf(opts.level ?? 'info');
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = opts.now ?? (() => new Date());
  const base = opts.fields ?? {};
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (LEVELS.indexOf(level) < min) return;
    const record: LogFields = { time: now().toISOString(), level, msg, ...base, ...fields };
    for (const [k, v] of Object.entries(record)) if (v instanceof Error) record[k] = v.message;
    write(JSON.stringify(record));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger({ ...opts, fields: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger({ write: () => {} });
