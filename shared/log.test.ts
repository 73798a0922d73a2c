import { describe, expect, it } from 'vitest';
import { createLogger, parseLogLevel, silentLogger } from './log.js';
import { ReverstError } from './errors.js';

function capture(level: string) {
  const lines: string[] = [];
  const logger = createLogger({ level, stream: { write: (line) => lines.push(line) }, now: () => new Date(0) });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, records };
}

describe('createLogger', () => {
  it('writes one JSON line per call with time, level, msg, bindings and fields', () => {
    const { logger, lines, records } = capture('debug');
    logger.child({ component: 'proxy' }).child({ group: 'g' }).info('request done', { status: 200 });
    expect(lines).toHaveLength(1);
    expect(lines[0]!.endsWith('\n')).toBe(true);
    expect(lines[0]!.trimEnd().includes('\n')).toBe(false);
    expect(records()[0]).toEqual({
      time: '1970-01-01T00:00:00.000Z',
      level: 'info',
      msg: 'request done',
      component: 'proxy',
      group: 'g',
      status: 200,
    });
  });

  it('drops lines below the threshold', () => {
    const { logger, records } = capture('WARN');
    logger.debug('a');
    logger.info('b');
    logger.warn('c');
    logger.error('d');
    expect(records().map((r) => r.level)).toEqual(['warn', 'error']);
  });

  it('serializes errors, their code and cause instead of logging {}', () => {
    const { logger, records } = capture('info');
    const error = new ReverstError('ERR_SERVER', 'boom', { cause: new Error('root') });
    logger.error('failed', { err: error });
    const logged = records()[0]!.err as Record<string, unknown>;
    expect(logged).toMatchObject({ name: 'ReverstError', message: 'boom', code: 'ERR_SERVER', cause: { message: 'root' } });
    expect(logged.stack).toContain('boom');
  });

  it('never throws on fields JSON cannot represent', () => {
    const { logger, records } = capture('info');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => logger.info('cyclic', { cyclic, big: 1n })).not.toThrow();
    expect(records()[0]).toMatchObject({ level: 'info', msg: 'cyclic', logError: expect.stringContaining('not serializable') });
    logger.info('bigint', { big: 10n });
    expect(records()[1]!.big).toBe('10');
  });

  it('silentLogger and its children write nothing', () => {
    expect(() => silentLogger.child({ a: 1 }).error('x', { y: 2 })).not.toThrow();
    expect(silentLogger.child({})).toBe(silentLogger);
  });
});

describe('parseLogLevel', () => {
  it('accepts levels in any case and surrounding spaces', () => {
    expect(['debug', 'INFO', ' Warn ', 'ERROR'].map(parseLogLevel)).toEqual(['debug', 'info', 'warn', 'error']);
  });

  it('rejects unknown levels naming the accepted ones', () => {
    expect(() => parseLogLevel('verbose')).toThrow(/unknown log level "verbose": use debug, info, warn or error/);
    expect(() => createLogger({ level: 'trace' })).toThrow(ReverstError);
  });
});
