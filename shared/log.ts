import { ReverstError } from './errors.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;
type LogMethod = (msg: string, fields?: LogFields) => void;

export interface Logger {
  debug: LogMethod;
  info: LogMethod;
  warn: LogMethod;
  error: LogMethod;
  /** A logger that adds `bindings` to every line, e.g. `{ component: 'proxy' }`. */
  child(bindings: LogFields): Logger;
}

export interface LogSink {
  write(line: string): unknown;
}

export interface LoggerOptions {
  /** Case-insensitive: `-l INFO` and `REVERST_LOG=debug` both work, as in the seed. */
  level: string;
  /** Defaults to stderr so that stdout stays free for command output. */
  stream?: LogSink | undefined;
  now?: (() => Date) | undefined;
}

export function parseLogLevel(value: string): LogLevel {
  const level = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new ReverstError('ERR_INVALID_OPTION', `unknown log level ${JSON.stringify(value)}: use debug, info, warn or error`);
}

export function createLogger(options: LoggerOptions): Logger {
  const threshold = LOG_LEVELS.indexOf(parseLogLevel(options.level));
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => new Date());

  const build = (bindings: LogFields): Logger => {
    // The level is fixed per logger: a disabled one costs nothing per call.
    const method = (level: LogLevel): LogMethod =>
      LOG_LEVELS.indexOf(level) < threshold
        ? noop
        : (msg, fields) => {
            stream.write(`${serialize({ time: now().toISOString(), level, msg, ...bindings, ...fields })}\n`);
          };
    return {
      debug: method('debug'),
      info: method('info'),
      warn: method('warn'),
      error: method('error'),
      child: (more) => build({ ...bindings, ...more }),
    };
  };
  return build({});
}

const noop: LogMethod = () => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => silentLogger };

// Errors have no enumerable properties, so JSON.stringify would log them as `{}`.
function jsonValue(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const { code } = value as { code?: unknown };
    return {
      name: value.name,
      message: value.message,
      ...(code === undefined ? {} : { code }),
      ...(value.cause === undefined ? {} : { cause: value.cause }),
      stack: value.stack,
    };
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

// A log call must never throw, whatever the caller put in `fields` (cycles, throwing getters).
function serialize(record: LogFields): string {
  try {
    return JSON.stringify(record, jsonValue);
  } catch (err) {
    const { time, level, msg } = record;
    return JSON.stringify({ time, level, msg, logError: `fields not serializable: ${(err as Error).message}` });
  }
}
