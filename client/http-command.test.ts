// Flag parsing and the failures that need no node. Running against a real node is in
// test/e2e/http-command.test.ts.
import { describe, expect, it } from 'vitest';
import { DEFAULT_ADDRESS, USAGE, parseHttpCommand, runHttpCommand, type HttpCommand } from './http-command.js';

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}) => parseHttpCommand(argv, env) as HttpCommand;

describe('reverst http flags', () => {
  it('reads the origin and flags, with defaults', () => {
    const command = parse(['3000', '--group', 'g']);
    expect(command.origin.href).toBe('http://localhost:3000/');
    expect(command.connect).toEqual({
      addresses: [DEFAULT_ADDRESS],
      serverName: undefined,
      insecure: false,
      group: 'g',
      auth: undefined,
      retryNotFound: false,
    });
    expect(command).toMatchObject({ preserveHost: false, originTimeoutMs: 60_000, logLevel: 'info', caPath: undefined });
  });

  it('takes every flag from the command line', () => {
    const command = parse([
      'https://127.0.0.1:8443/app',
      '--address',
      'a:7171',
      '--address',
      '[::1]:7172',
      '--server-name',
      'tunnel.example',
      '--ca',
      'ca.pem',
      '--group',
      'g',
      '--username',
      'u',
      '--password',
      'p',
      '--preserve-host',
      '--origin-timeout',
      '1m30s',
      '-l',
      'DEBUG',
      '--retry-not-found',
    ]);
    expect(command.origin.href).toBe('https://127.0.0.1:8443/app');
    expect(command.connect).toEqual({
      addresses: ['a:7171', '[::1]:7172'],
      serverName: 'tunnel.example',
      insecure: false,
      group: 'g',
      auth: { scheme: 'Basic', credentials: Buffer.from('u:p').toString('base64') },
      retryNotFound: true,
    });
    expect(command).toMatchObject({ caPath: 'ca.pem', preserveHost: true, originTimeoutMs: 90_000, logLevel: 'debug' });
  });

  it('takes each flag from REVERST_<LONG_NAME>, with a comma-separated address list', () => {
    const command = parse(['localhost:8080'], {
      REVERST_ADDRESS: 'a:1, b:2',
      REVERST_SERVER_NAME: 'n',
      REVERST_GROUP: 'g',
      REVERST_TOKEN: 't0k',
      REVERST_INSECURE: 'true',
      REVERST_PRESERVE_HOST: '1',
      REVERST_ORIGIN_TIMEOUT: '5s',
      REVERST_LOG: 'warn',
    });
    expect(command.origin.href).toBe('http://localhost:8080/');
    expect(command.connect).toEqual({
      addresses: ['a:1', 'b:2'],
      serverName: 'n',
      insecure: true,
      group: 'g',
      auth: { scheme: 'Bearer', credentials: 't0k' },
      retryNotFound: false,
    });
    expect(command).toMatchObject({ preserveHost: true, originTimeoutMs: 5_000, logLevel: 'warn' });
  });

  it('lets the command line win over the environment', () => {
    const command = parse(['1', '--group', 'flag', '--address', 'c:3'], { REVERST_GROUP: 'env', REVERST_ADDRESS: 'a:1' });
    expect(command.connect.group).toBe('flag');
    expect(command.connect.addresses).toEqual(['c:3']);
  });

  it('returns help for -h, whatever else is wrong', () => {
    expect(parseHttpCommand(['-h'], {})).toBe('help');
    expect(parseHttpCommand(['--help', '--bogus'], {})).toBe('help');
  });

  it.each([
    [[], {}, /give the local port or URL/],
    [['1', '2', '--group', 'g'], {}, /expected one local port or URL to expose, got 1 2/],
    [['1'], {}, /missing required flag: --group \(or REVERST_GROUP\)/],
    [['1', '--group', 'g', '--bogus'], {}, /unknown flag --bogus/],
    [['1', '--group', 'g', '--address', 'nope'], {}, /--address: expected HOST:PORT/],
    [['1', '--group', 'g', '--address', '[::1]:7171', '--address', 'a:0'], {}, /--address: port 0 is out of range 1-65535/],
    [['1', '--group', 'g', '--token', 't', '--username', 'u', '--password', 'p'], {}, /--username and --token conflict: give one kind of credentials/],
    [['1', '--group', 'g', '--username', 'u'], {}, /--username needs --password too/],
    [['1', '--group', 'g', '--password', 'p'], {}, /--password needs --username too/],
    [['1', '--group', 'g', '--ca', 'x', '--insecure'], {}, /--ca and --insecure conflict/],
    [['1', '--group', 'g', '--origin-timeout', '30'], {}, /--origin-timeout: "30" is not a duration/],
    [['1', '--group', 'g', '--origin-timeout', '0'], {}, /--origin-timeout: give a duration above 0/],
    [['1', '--group', 'g', '--insecure=perhaps'], {}, /--insecure: expected true or false/],
    [['1', '--group', 'g', '-l', 'loud'], {}, /unknown log level/],
    [['ftp://x', '--group', 'g'], {}, /origin must be http or https/],
    [['1'], { REVERST_GROUP: 'g', REVERST_INSECURE: 'maybe' }, /REVERST_INSECURE: expected true or false/],
  ] as [string[], NodeJS.ProcessEnv, RegExp][])('rejects %j %j with a message that says what to change', (argv, env, message) => {
    expect(() => parseHttpCommand(argv, env)).toThrow(message);
  });
});

describe('running reverst http', () => {
  function io() {
    const out: string[] = [];
    return { out, io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: () => true } } };
  }

  it('prints usage for -h', async () => {
    const { out, io: streams } = io();
    await runHttpCommand(['-h'], {}, streams);
    expect(out.join('')).toBe(USAGE);
  });

  it('names the file when the CA cannot be read', async () => {
    const { io: streams } = io();
    await expect(runHttpCommand(['3000', '--group', 'g', '--ca', '/nonexistent/ca.pem'], {}, streams)).rejects.toThrow(
      /--ca: cannot read \/nonexistent\/ca\.pem: ENOENT/,
    );
  });
});
