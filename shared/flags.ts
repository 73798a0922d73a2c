/**
 * Command lines for every reverst command, each from one table of flags. A row gives the
 * flag's parsing, its `REVERST_<LONG_NAME>` variable, its check and its line in `-h`, so the
 * commands cannot drift apart. Flags win over the environment, which wins over defaults.
 *
 * Accepted forms: `--name value`, `--name=value`, `-n value`, `-n=value`; a boolean flag
 * alone means true and takes `--name=false` too; `--` ends the flags.
 */
import { parseDuration } from './config/duration.js';
import { SIZE_EXAMPLES, parseSize } from './config/size.js';
import { ReverstError } from './errors.js';
import { LOG_LEVELS, parseLogLevel } from './log.js';

/**
 * What a flag's value is: `duration` (Go style, `1m30s`) becomes milliseconds under the key
 * `<camelName>Ms`; `size` is bytes (`16KiB`, `1MiB`, `64kB`); `integer` a whole number;
 * `list` is repeatable (comma-separated in the environment).
 */
export type FlagKind = 'string' | 'boolean' | 'duration' | 'size' | 'integer' | 'list';

export interface FlagSpec {
  /** `--long`, and `REVERST_<LONG>` (upper case, `-` as `_`) in the environment. */
  readonly long: string;
  readonly short?: string;
  readonly kind: FlagKind;
  /** The placeholder in `-h` (default: one per kind). */
  readonly value?: string;
  /** One line for `-h`; a function when it depends on what this build has (e.g. registered sources). */
  readonly help: string | (() => string);
  /** As a user would type it; parsed and checked like a given value. */
  readonly default?: string;
  /** Shown in `-h` for a default worked out elsewhere (e.g. "random"); never parsed. */
  readonly defaultText?: string;
  readonly required?: boolean;
  /** Flags (long names) this one cannot be given with, each with the reason. */
  readonly conflicts?: Readonly<Record<string, string>>;
  /** Flags (long names) this one is useless without. */
  readonly requires?: readonly string[];
  /** For `string` and `list` flags: checks and converts each value; throws to refuse it. */
  readonly parse?: (text: string) => unknown;
}

export interface CommandSpec {
  /** As typed: `reverst`, `reverst http`. */
  readonly name: string;
  /** The lines under USAGE in `-h`. */
  readonly usage: readonly string[];
  /** A paragraph under the usage lines. */
  readonly description?: string;
  readonly flags: readonly FlagSpec[];
  /** Arguments that are not flags, e.g. `reverst http <port|url>`; refused when unset. */
  readonly positionals?: { readonly name: string; readonly min: number; readonly max: number };
}

// The parsed values' type, worked out from the table (declare it `as const satisfies …`).
type Camel<S extends string> = S extends `${infer Head}-${infer Tail}` ? `${Head}${Capitalize<Camel<Tail>>}` : S;
type KeyOf<F extends FlagSpec> = F extends { kind: 'duration' } ? `${Camel<F['long']>}Ms` : Camel<F['long']>;
type Parsed<F extends FlagSpec> = F extends { parse: (text: string) => infer R } ? R : string;
type ValueOf<F extends FlagSpec> = F extends { kind: 'boolean' }
  ? boolean
  : F extends { kind: 'duration' | 'size' | 'integer' }
    ? number
    : F extends { kind: 'list' }
      ? Parsed<F>[]
      : Parsed<F>;
type AlwaysSet<F extends FlagSpec> = F extends { kind: 'boolean' | 'list' } | { required: true } | { default: string } ? true : false;

/** The values of a command's flags, by camel-cased long name (durations as `<name>Ms`). */
export type FlagValues<Flags extends readonly FlagSpec[]> = {
  [F in Flags[number] as KeyOf<F>]: AlwaysSet<F> extends true ? ValueOf<F> : ValueOf<F> | undefined;
};

/** `-h` was given (honoured whatever else is wrong), or the flags' values and the positionals. */
export type CommandLine<C extends CommandSpec> = { help: true } | ({ help: false; positionals: string[] } & FlagValues<C['flags']>);

const PLACEHOLDER: Record<FlagKind, string> = {
  string: 'STRING',
  boolean: '',
  duration: 'DURATION',
  size: 'BYTES',
  integer: 'N',
  list: 'STRING',
};

const HELP_ROW: FlagSpec = { long: 'help', short: 'h', kind: 'boolean', help: 'show this help' };

/** The environment variable for a long flag name: `tunnel-address` is `REVERST_TUNNEL_ADDRESS`. */
export const envName = (long: string): string => `REVERST_${long.toUpperCase().replace(/-/g, '_')}`;

const camel = (long: string): string => long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The key a flag's value is stored under. */
export const flagKey = (flag: FlagSpec): string => (flag.kind === 'duration' ? `${camel(flag.long)}Ms` : camel(flag.long));

/** How messages name a flag: `-s/--http-address`. */
export const flagName = (flag: FlagSpec): string => `${flag.short ? `-${flag.short}/` : ''}--${flag.long}`;

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

/** A boolean as flags and variables spell it; undefined if `text` is not one. */
export function parseBoolean(text: string): boolean | undefined {
  const word = text.trim().toLowerCase();
  return TRUE.has(word) ? true : FALSE.has(word) ? false : undefined;
}

/** The `-l/--log` row every command shares. */
export const LOG_FLAG = {
  long: 'log',
  short: 'l',
  kind: 'string',
  value: 'LEVEL',
  help: `${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}`,
  default: 'INFO',
  parse: parseLogLevel,
} as const satisfies FlagSpec;

/** Where a value came from, for messages. */
type Origin = { kind: 'flag' | 'env' | 'default'; name: string };

/** Parses `argv` and `env` by `command`'s table; throws a ReverstError (ERR_INVALID_OPTION) that says what to change. */
export function parseCommandLine<C extends CommandSpec>(command: C, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CommandLine<C> {
  const invalid = (message: string) => new ReverstError('ERR_INVALID_OPTION', `${message} (see ${command.name} -h)`);
  const flags = command.flags;
  const byLong = new Map(flags.map((f) => [f.long, f]));
  const byShort = new Map(flags.filter((f) => f.short).map((f) => [f.short!, f]));

  // Asking for help is honoured even next to a mistake.
  const end = argv.indexOf('--');
  if ((end < 0 ? argv : argv.slice(0, end)).some((a) => a === '-h' || a === '--help')) return { help: true };

  const given = new Map<FlagSpec, string[]>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const long = arg.startsWith('--');
    const eq = arg.indexOf('=');
    const name = arg.slice(long ? 2 : 1, eq < 0 ? undefined : eq);
    const flag = long ? byLong.get(name) : byShort.get(name);
    if (!flag) {
      const hint = !long && byLong.has(name) ? ` (long flags take two dashes: --${name})` : '';
      throw invalid(`unknown flag ${arg.slice(0, eq < 0 ? undefined : eq)}${hint}`);
    }
    let text: string;
    if (eq >= 0) text = arg.slice(eq + 1);
    else if (flag.kind === 'boolean') text = 'true';
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('-') && next.length > 1)) {
        throw invalid(`${flagName(flag)} needs a value${next === undefined ? '' : `; for one starting with "-", write --${flag.long}=${next}`}`);
      }
      text = next;
      i++;
    }
    // A list collects every occurrence; any other flag given twice keeps the last, as Go's flag package does.
    given.set(flag, flag.kind === 'list' ? [...(given.get(flag) ?? []), text] : [text]);
  }

  // What the command is about comes first; then its flags.
  const { name, min, max } = command.positionals ?? { name: 'argument', min: 0, max: 0 };
  if (positionals.length < min) throw invalid(`give the ${name}`);
  if (positionals.length > max) {
    throw invalid(max === 0 ? `unexpected argument ${JSON.stringify(positionals[0])}` : `expected one ${name}, got ${positionals.join(' ')}`);
  }

  const values: Record<string, unknown> = { help: false, positionals };
  const set = new Set<FlagSpec>();
  for (const flag of flags) {
    const fromFlag = given.get(flag);
    const fromEnv = env[envName(flag.long)];
    let origin: Origin;
    let texts: string[];
    if (fromFlag) {
      origin = { kind: 'flag', name: flagName(flag) };
      texts = fromFlag;
    } else if (fromEnv !== undefined && fromEnv !== '') {
      origin = { kind: 'env', name: envName(flag.long) };
      texts = flag.kind === 'list' ? splitList(fromEnv) : [fromEnv];
    } else if (flag.default !== undefined) {
      origin = { kind: 'default', name: `${flagName(flag)} default` };
      texts = flag.kind === 'list' ? splitList(flag.default) : [flag.default];
    } else {
      values[flagKey(flag)] = flag.kind === 'boolean' ? false : flag.kind === 'list' ? [] : undefined;
      continue;
    }
    const value = convert(flag, texts, origin, invalid);
    values[flagKey(flag)] = value;
    if (origin.kind !== 'default' && value !== false) set.add(flag);
  }

  const missing = flags.filter((f) => f.required && values[flagKey(f)] === undefined);
  if (missing.length > 0) {
    const names = missing.map((f) => `${flagName(f)} (or ${envName(f.long)})`).join(', ');
    throw invalid(`missing required flag${missing.length > 1 ? 's' : ''}: ${names}`);
  }
  for (const flag of set) {
    for (const [other, why] of Object.entries(flag.conflicts ?? {})) {
      const otherFlag = byLong.get(other);
      if (otherFlag && set.has(otherFlag)) throw invalid(`${flagName(flag)} and ${flagName(otherFlag)} conflict: ${why}`);
    }
    for (const other of flag.requires ?? []) {
      const otherFlag = byLong.get(other);
      if (otherFlag && values[flagKey(otherFlag)] === undefined) throw invalid(`${flagName(flag)} needs ${flagName(otherFlag)} too`);
    }
  }

  return values as CommandLine<C>;
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function convert(flag: FlagSpec, texts: string[], origin: Origin, invalid: (message: string) => ReverstError): unknown {
  const text = texts.at(-1)!;
  const bad = (what: string) => invalid(`${origin.name}: ${JSON.stringify(text)} is not ${what}`);
  switch (flag.kind) {
    case 'boolean': {
      const value = parseBoolean(text);
      if (value === undefined) throw invalid(`${origin.name}: expected true or false (or 1/0, yes/no, on/off), got ${JSON.stringify(text)}`);
      return value;
    }
    case 'duration': {
      const ms = parseDuration(text.trim());
      if (ms === undefined) throw bad('a duration (e.g. 30s, 1m0s, 250ms)');
      return ms;
    }
    case 'size': {
      const bytes = parseSize(text);
      if (bytes === undefined) throw bad(`a size in bytes (e.g. ${SIZE_EXAMPLES})`);
      return bytes;
    }
    case 'integer': {
      const n = Number(text.trim());
      if (text.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw bad('a whole number');
      return n;
    }
    case 'list':
      return texts.map((item) => check(flag, item, origin, invalid));
    case 'string':
      return check(flag, text, origin, invalid);
  }
}

function check(flag: FlagSpec, text: string, origin: Origin, invalid: (message: string) => ReverstError): unknown {
  if (!flag.parse) return text;
  try {
    return flag.parse(text);
  } catch (err) {
    throw invalid(`${origin.name}: ${(err as Error).message}`);
  }
}

/** `-h`: the command, its usage, and one aligned row per flag with its default. */
export function usage(command: CommandSpec): string {
  const rows = [...command.flags, HELP_ROW];
  const names = rows.map((f) => {
    const placeholder = f.value ?? PLACEHOLDER[f.kind];
    return `${f.short ? `-${f.short}, ` : '    '}--${f.long}${placeholder ? ` ${placeholder}` : ''}`;
  });
  const width = Math.max(...names.map((n) => n.length));
  const lines = rows.map((f, i) => {
    const help = typeof f.help === 'function' ? f.help() : f.help;
    const notes = [
      f.kind === 'list' ? 'repeatable' : undefined,
      f.required ? 'required' : undefined,
      f.default !== undefined ? `default: ${f.default}` : f.defaultText !== undefined ? `default: ${f.defaultText}` : undefined,
    ].filter(Boolean);
    return `  ${names[i]!.padEnd(width)}   ${help}${notes.length > 0 ? ` (${notes.join('; ')})` : ''}`;
  });
  const example = command.flags.find((f) => f.long.includes('-')) ?? command.flags[0];
  const lists = command.flags.filter((f) => f.kind === 'list').map((f) => `--${f.long}`);
  const environment = [
    example ? `Every long flag can also be set as an environment variable: --${example.long} is ${envName(example.long)}.` : undefined,
    lists.length > 0 ? `There, repeatable flags (${lists.join(', ')}) take a comma-separated list.` : undefined,
  ].filter(Boolean);
  return [
    'COMMAND',
    `  ${command.name}`,
    '',
    'USAGE',
    ...command.usage.map((line) => `  ${line}`),
    ...(command.description ? ['', ...command.description.split('\n').map((line) => `  ${line}`)] : []),
    '',
    'FLAGS',
    ...lines,
    '',
    ...environment,
    '',
  ].join('\n');
}
