import { describe, expect, it } from 'vitest';
import { normalizeHostPort } from './address.js';
import { ReverstError } from './errors.js';
import { LOG_FLAG, envName, parseBoolean, parseCommandLine, usage, type CommandSpec, type FlagSpec } from './flags.js';

const FLAGS = [
  LOG_FLAG,
  { long: 'listen-address', short: 'a', kind: 'string', help: 'where to listen', default: '127.0.0.1:7171', parse: (t: string) => normalizeHostPort(t) },
  { long: 'name', short: 'n', kind: 'string', value: 'NAME', help: 'a name', required: true },
  { long: 'watch', short: 'w', kind: 'boolean', help: 'watch things' },
  { long: 'idle-timeout', kind: 'duration', help: 'how long', default: '1m0s' },
  { long: 'max-size', kind: 'size', help: 'how big', default: '16KiB' },
  { long: 'count', kind: 'integer', help: 'how many', default: '3' },
  { long: 'peer', kind: 'list', value: 'HOST:PORT', help: 'peers', default: 'a:1,b:2' },
  { long: 'secret', kind: 'string', help: 'a secret', conflicts: { 'secret-file': 'give the secret one way' } },
  { long: 'secret-file', kind: 'string', value: 'PATH', help: 'a file holding the secret' },
  { long: 'user', kind: 'string', help: 'user', requires: ['password'] },
  { long: 'password', kind: 'string', help: 'password' },
  { long: 'id', kind: 'string', help: 'an id', defaultText: 'random' },
] as const satisfies readonly FlagSpec[];

const COMMAND = { name: 'demo', usage: ['demo [FLAGS]'], flags: FLAGS } as const satisfies CommandSpec;
const WITH_ARG = { ...COMMAND, name: 'demo run', positionals: { name: 'file to run', min: 1, max: 1 } } as const satisfies CommandSpec;

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const parsed = parseCommandLine(COMMAND, argv, env);
  if (parsed.help) throw new Error('unexpected help');
  return parsed;
};
const refusal = (argv: string[], env: NodeJS.ProcessEnv = {}, command: CommandSpec = COMMAND): ReverstError => {
  try {
    parseCommandLine(command, argv, env);
  } catch (err) {
    return err as ReverstError;
  }
  throw new Error(`accepted ${JSON.stringify(argv)}`);
};

describe('parseCommandLine', () => {
  it('applies every default, typed by kind', () => {
    expect(parse(['-n', 'x'])).toEqual({
      help: false,
      positionals: [],
      log: 'info',
      listenAddress: '127.0.0.1:7171',
      name: 'x',
      watch: false,
      idleTimeoutMs: 60_000,
      maxSize: 16_384,
      count: 3,
      peer: ['a:1', 'b:2'],
      secret: undefined,
      secretFile: undefined,
      user: undefined,
      password: undefined,
      id: undefined,
    });
  });

  it('takes --name value, --name=value, -n value and -n=value', () => {
    for (const argv of [['--name', 'x'], ['--name=x'], ['-n', 'x'], ['-n=x']]) expect(parse(argv).name).toBe('x');
    expect(parse(['-n', 'x', '--listen-address=[::1]:80', '-l', 'DEBUG'])).toMatchObject({ listenAddress: '[::1]:80', log: 'debug' });
  });

  it('reads REVERST_<LONG_NAME>, and a flag wins over its variable', () => {
    const env = { REVERST_NAME: 'env', REVERST_IDLE_TIMEOUT: '5s', REVERST_MAX_SIZE: '1MiB', REVERST_PEER: ' c:3 , d:4 ,', REVERST_COUNT: '7' };
    expect(parse([], env)).toMatchObject({ name: 'env', idleTimeoutMs: 5_000, maxSize: 1_048_576, peer: ['c:3', 'd:4'], count: 7 });
    expect(parse(['--name', 'flag', '--peer', 'e:5', '--peer', 'f:6'], env)).toMatchObject({ name: 'flag', peer: ['e:5', 'f:6'] });
    expect(envName('listen-address')).toBe('REVERST_LISTEN_ADDRESS');
  });

  it('ignores an empty variable, as if unset', () => {
    expect(parse(['-n', 'x'], { REVERST_COUNT: '' }).count).toBe(3);
  });

  it.each([
    ['true', true],
    ['1', true],
    ['YES', true],
    ['on', true],
    ['false', false],
    ['0', false],
    ['no', false],
    ['Off', false],
  ])('reads the boolean %j as %s, from a flag and from a variable', (text, value) => {
    expect(parseBoolean(text)).toBe(value);
    expect(parse(['-n', 'x', `--watch=${text}`]).watch).toBe(value);
    expect(parse(['-n', 'x'], { REVERST_WATCH: text }).watch).toBe(value);
  });

  it('takes a bare boolean flag as true without eating the next argument', () => {
    expect(parse(['-w', '-n', 'x'])).toMatchObject({ watch: true, name: 'x' });
  });

  it('keeps the last of a flag given twice, and collects a repeated list', () => {
    expect(parse(['-n', 'a', '-n', 'b']).name).toBe('b');
    expect(parse(['-n', 'x', '--peer', 'a:1', '--peer=b:2']).peer).toEqual(['a:1', 'b:2']);
  });

  it('answers help for -h or --help, whatever else is wrong', () => {
    expect(parseCommandLine(COMMAND, ['-h'], {})).toEqual({ help: true });
    expect(parseCommandLine(COMMAND, ['--bogus', '--help'], { REVERST_WATCH: 'maybe' })).toEqual({ help: true });
  });

  it('takes positionals where the command has them, before, between or after flags and after --', () => {
    const parsed = parseCommandLine(WITH_ARG, ['-n', 'x', 'main.js'], {});
    expect(!parsed.help && parsed.positionals).toEqual(['main.js']);
    const dashed = parseCommandLine(WITH_ARG, ['-n', 'x', '--', '--weird-name'], {});
    expect(!dashed.help && dashed.positionals).toEqual(['--weird-name']);
  });

  it.each([
    [['-n', 'x', '--bogus'], {}, 'unknown flag --bogus (see demo -h)'],
    [['-n', 'x', '-name', 'y'], {}, 'unknown flag -name (long flags take two dashes: --name) (see demo -h)'],
    [['-n'], {}, '-n/--name needs a value (see demo -h)'],
    [['-n', '--watch'], {}, '-n/--name needs a value; for one starting with "-", write --name=--watch (see demo -h)'],
    [[], {}, 'missing required flag: -n/--name (or REVERST_NAME) (see demo -h)'],
    [['-n', 'x', '--watch=maybe'], {}, '-w/--watch: expected true or false (or 1/0, yes/no, on/off), got "maybe" (see demo -h)'],
    [['-n', 'x'], { REVERST_WATCH: 'maybe' }, 'REVERST_WATCH: expected true or false (or 1/0, yes/no, on/off), got "maybe" (see demo -h)'],
    [['-n', 'x', '--idle-timeout', '30'], {}, '--idle-timeout: "30" is not a duration (e.g. 30s, 1m0s, 250ms) (see demo -h)'],
    [['-n', 'x'], { REVERST_IDLE_TIMEOUT: 'soon' }, 'REVERST_IDLE_TIMEOUT: "soon" is not a duration (e.g. 30s, 1m0s, 250ms) (see demo -h)'],
    [['-n', 'x', '--max-size', '16 parsecs'], {}, '--max-size: "16 parsecs" is not a size in bytes (e.g. 16384, 16KiB, 1MiB or 64kB) (see demo -h)'],
    [['-n', 'x', '--count', '-1'], {}, '--count needs a value; for one starting with "-", write --count=-1 (see demo -h)'],
    [['-n', 'x', '--count=-1'], {}, '--count: "-1" is not a whole number (see demo -h)'],
    [['-n', 'x', '--count', '2.5'], {}, '--count: "2.5" is not a whole number (see demo -h)'],
    [['-n', 'x', '-a', 'nonsense'], {}, '-a/--listen-address: expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "nonsense" (see demo -h)'],
    [['-n', 'x', '-l', 'loud'], {}, '-l/--log: unknown log level "loud": use debug, info, warn or error (see demo -h)'],
    [['-n', 'x', '--secret', 's', '--secret-file', 'f'], {}, '--secret and --secret-file conflict: give the secret one way (see demo -h)'],
    [['-n', 'x', '--secret', 's'], { REVERST_SECRET_FILE: 'f' }, '--secret and --secret-file conflict: give the secret one way (see demo -h)'],
    [['-n', 'x', '--user', 'u'], {}, '--user needs --password too (see demo -h)'],
    [['-n', 'x', 'stray'], {}, 'unexpected argument "stray" (see demo -h)'],
  ] as [string[], NodeJS.ProcessEnv, string][])('refuses %j %j: %s', (argv, env, message) => {
    const error = refusal(argv, env);
    expect(error).toBeInstanceOf(ReverstError);
    expect(error.code).toBe('ERR_INVALID_OPTION');
    expect(error.message).toBe(message);
  });

  it('names a missing positional and refuses extra ones', () => {
    expect(refusal(['-n', 'x'], {}, WITH_ARG).message).toBe('give the file to run (see demo run -h)');
    expect(refusal(['-n', 'x', 'a', 'b'], {}, WITH_ARG).message).toBe('expected one file to run, got a b (see demo run -h)');
  });

  it('lists every missing required flag at once', () => {
    const both = { ...COMMAND, flags: [...FLAGS, { long: 'other', kind: 'string', help: 'other', required: true }] } as const satisfies CommandSpec;
    expect(refusal([], {}, both).message).toBe('missing required flags: -n/--name (or REVERST_NAME), --other (or REVERST_OTHER) (see demo -h)');
  });

  it('checks defaults like given values, so a bad default cannot hide', () => {
    const bad = { ...COMMAND, flags: [{ long: 'wait', kind: 'duration', help: 'x', default: 'forever' }] } as const satisfies CommandSpec;
    expect(refusal([], {}, bad).message).toBe('--wait default: "forever" is not a duration (e.g. 30s, 1m0s, 250ms) (see demo -h)');
  });
});

describe('usage', () => {
  const text = usage({ ...COMMAND, description: 'Does a demo.' });
  const rows = text.split('\n');

  it('has one row per flag plus -h, with the help text starting in one column', () => {
    const flagRows = rows.slice(rows.indexOf('FLAGS') + 1, rows.indexOf('', rows.indexOf('FLAGS')));
    expect(flagRows).toHaveLength(FLAGS.length + 1);
    const column = (row: string) => {
      const gap = /\S {3,}(?=\S)/.exec(row)!;
      return gap.index + gap[0].length;
    };
    expect(new Set(flagRows.map(column)).size).toBe(1);
    expect(flagRows.at(-1)).toMatch(/^ {2}-h, --help +show this help$/);
  });

  it('shows placeholders, defaults, required and repeatable flags', () => {
    expect(text).toContain('  -l, --log LEVEL ');
    expect(text).toMatch(/-a, --listen-address STRING +where to listen \(default: 127\.0\.0\.1:7171\)\n/);
    expect(text).toMatch(/-n, --name NAME +a name \(required\)\n/);
    expect(text).toMatch(/-w, --watch +watch things\n/);
    expect(text).toMatch(/ {6}--idle-timeout DURATION +how long \(default: 1m0s\)\n/);
    expect(text).toMatch(/--max-size BYTES +how big \(default: 16KiB\)\n/);
    expect(text).toMatch(/--peer HOST:PORT +peers \(repeatable; default: a:1,b:2\)\n/);
    expect(text).toMatch(/--id STRING +an id \(default: random\)\n/);
  });

  it('names the environment variables', () => {
    expect(text).toContain('Every long flag can also be set as an environment variable: --listen-address is REVERST_LISTEN_ADDRESS.');
    expect(text).toContain('There, repeatable flags (--peer) take a comma-separated list.');
    expect(text).toMatch(/^COMMAND\n {2}demo\n\nUSAGE\n {2}demo \[FLAGS\]\n\n {2}Does a demo\.\n\nFLAGS\n/);
  });
});
