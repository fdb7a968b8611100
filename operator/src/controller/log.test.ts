import { describe, expect, it } from 'vitest';
import { createLogger, parseLogLevel } from './log.ts';

describe('JSON logger', () => {
  it('writes one JSON object per line with the bound search and drops lower levels', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', write: (l) => lines.push(l), now: () => new Date('2026-01-01T00:00:00Z') });
    const searchLog = log.child({ namespace: 'lab', name: 'acdc' });
    searchLog.debug('not shown');
    searchLog.info('created', { kind: 'Pod', error: new Error('boom') });
    log.warn('plain');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0])).toEqual({
      time: '2026-01-01T00:00:00.000Z',
      level: 'info',
      msg: 'created',
      namespace: 'lab',
      name: 'acdc',
      kind: 'Pod',
      error: 'boom',
    });
    expect(JSON.parse(lines[1])).toMatchObject({ level: 'warn', msg: 'plain' });
  });

  it('rejects an unknown level naming the flag', () => {
    expect(parseLogLevel('debug')).toBe('debug');
    expect(() => parseLogLevel('verbose')).toThrow(/--log-level: expected one of debug, info, warn, error/);
  });
});
