/**
 * `reverst http <port|url>`: expose a local HTTP server through a tunnel, like the seed's
 * client. Each flag can also come from `REVERST_<LONG_NAME>` (upper case, `-` → `_`);
 * the command line wins. The repeatable --address takes a comma-separated list in env.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseDuration } from '../shared/config/duration.js';
import { BadRequestError, RegistrationError, ReverstError, UnauthorizedError } from '../shared/errors.js';
import { createLogger, parseLogLevel, type LogLevel } from '../shared/log.js';
import { basic, bearer } from './auth.js';
import { DEFAULT_ORIGIN_TIMEOUT_MS, createForwarder } from './forwarder.js';
import { parseAddress, type ConnectOptions } from './options.js';
import { connect, type Tunnel } from './tunnel.js';

export const DEFAULT_ADDRESS = '127.0.0.1:7171';

export const USAGE = `COMMAND
  reverst http

USAGE
  reverst http <port|url> [FLAGS]

  Exposes a local HTTP server through a tunnel: requests to the tunnel group are
  forwarded to <url> (a bare port means http://localhost:<port>). WebSocket and other
  Upgrade requests pass through.

FLAGS
  -l, --log LEVEL                debug, info, warn or error (default: info)
      --address HOST:PORT        node to dial; repeat for failover, tried in order (default: ${DEFAULT_ADDRESS})
      --server-name NAME         name the node's certificate must carry (default: the address's host)
      --ca FILE                  PEM CA bundle to verify the node with (default: public roots)
      --insecure                 do not verify the node's certificate (local experiments only)
      --group NAME               tunnel group to register on (required)
      --username USER            basic authentication, with --password
      --password PASS
      --token TOKEN              bearer authentication
      --preserve-host            send the visitor's Host to the origin (default: the origin's host)
      --origin-timeout DURATION  give up on an origin silent this long (default: ${DEFAULT_ORIGIN_TIMEOUT_MS / 1000}s)
  -h, --help                     show this help

Each flag can also be set as REVERST_<LONG_NAME>, e.g. REVERST_GROUP, REVERST_PASSWORD;
REVERST_ADDRESS takes a comma-separated list. Prefer the environment for secrets.
`;

const FLAGS = {
  log: { type: 'string', short: 'l' },
  address: { type: 'string', multiple: true },
  'server-name': { type: 'string' },
  ca: { type: 'string' },
  insecure: { type: 'boolean' },
  group: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  token: { type: 'string' },
  'preserve-host': { type: 'boolean' },
  'origin-timeout': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

type FlagName = keyof typeof FLAGS;

export interface HttpCommand {
  origin: URL;
  /** Everything connect() needs but the handler, the CA's contents and the logger. */
  connect: Omit<ConnectOptions, 'handler' | 'ca' | 'logger' | 'signal'>;
  caPath?: string | undefined;
  preserveHost: boolean;
  originTimeoutMs: number;
  logLevel: LogLevel;
}

const invalid = (message: string) => new ReverstError('ERR_INVALID_OPTION', `${message} (see reverst http -h)`);

const envName = (flag: string) => `REVERST_${flag.toUpperCase().replace(/-/g, '_')}`;

/** Parses argv and env into what the command runs; 'help' if -h was given. */
export function parseHttpCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): HttpCommand | 'help' {
  // Asking for help is honoured even next to a mistake.
  if (parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: false }).values.help === true) return 'help';
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: FLAGS, allowPositionals: true, strict: true });
  } catch (err) {
    throw invalid((err as Error).message);
  }
  const { values, positionals } = parsed;

  const text = (flag: Exclude<FlagName, 'address' | 'insecure' | 'preserve-host' | 'help'>): string | undefined =>
    values[flag] ?? (env[envName(flag)] || undefined);
  const flag = (name: 'insecure' | 'preserve-host'): boolean => values[name] ?? envBoolean(env, name);

  if (positionals.length !== 1)
    throw invalid(positionals.length === 0 ? 'give the local port or URL to expose' : `expected one port or URL, got ${positionals.join(' ')}`);
  const origin = parseOrigin(positionals[0]!);

  const addresses = values.address ??
    env[envName('address')]
      ?.split(',')
      .map((a) => a.trim())
      .filter(Boolean) ?? [DEFAULT_ADDRESS];
  if (addresses.length === 0) throw invalid('--address: give at least one HOST:PORT');
  for (const address of addresses) parseAddress(address);

  const group = text('group');
  if (!group) throw invalid(`--group (or ${envName('group')}) is required: the tunnel group to register on`);

  const [username, password, token] = [text('username'), text('password'), text('token')];
  if (token && (username || password)) throw invalid('--token and --username/--password conflict: give one kind of credentials');
  if ((username === undefined) !== (password === undefined)) throw invalid('--username and --password go together');

  const caPath = text('ca');
  const insecure = flag('insecure');
  if (caPath && insecure) throw invalid('--ca and --insecure conflict: --insecure skips the verification the CA is for');

  const timeout = text('origin-timeout');
  const originTimeoutMs = timeout === undefined ? DEFAULT_ORIGIN_TIMEOUT_MS : parseDuration(timeout);
  if (!originTimeoutMs) throw invalid(`--origin-timeout: expected a duration such as 30s or 2m, got ${JSON.stringify(timeout)}`);

  return {
    origin,
    connect: {
      addresses,
      serverName: text('server-name'),
      insecure,
      group,
      auth: token ? bearer(token) : username !== undefined ? basic(username, password!) : undefined,
    },
    caPath,
    preserveHost: flag('preserve-host'),
    originTimeoutMs,
    logLevel: parseLogLevel(text('log') ?? 'info'),
  };
}

function envBoolean(env: NodeJS.ProcessEnv, flag: string): boolean {
  const value = env[envName(flag)]?.trim().toLowerCase();
  if (value === undefined || value === '' || value === 'false' || value === '0') return false;
  if (value === 'true' || value === '1') return true;
  throw invalid(`${envName(flag)}: expected true or false, got ${JSON.stringify(value)}`);
}

/** A bare port means the local machine; `localhost` lets Node try both IPv4 and IPv6. */
function parseOrigin(value: string): URL {
  const text = /^\d+$/.test(value) ? `http://localhost:${value}` : value.includes('://') ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw invalid(`${JSON.stringify(value)} is not a port or an http(s) URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`origin must be http or https, got ${url.protocol}`);
  if (url.search || url.hash) throw invalid('the origin URL takes a path prefix but no query or fragment');
  return url;
}

export interface HttpCommandIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** Stops the command as SIGINT or SIGTERM would. */
  signal?: AbortSignal | undefined;
}

/**
 * Runs until SIGINT/SIGTERM (in-flight requests get a short grace), or throws a one-line
 * ReverstError when the flags are wrong or the node refuses the registration for good.
 */
export async function runHttpCommand(argv: string[], env: NodeJS.ProcessEnv = process.env, io: HttpCommandIo = process): Promise<void> {
  const command = parseHttpCommand(argv, env);
  if (command === 'help') {
    io.stdout.write(USAGE);
    return;
  }
  const ca = command.caPath === undefined ? undefined : await readCa(command.caPath);
  const logger = createLogger({ level: command.logLevel, stream: io.stderr });
  const forwarder = createForwarder({ origin: command.origin, preserveHost: command.preserveHost, timeoutMs: command.originTimeoutMs, logger });

  const stop = new AbortController();
  const onSignal = () => stop.abort();
  io.signal?.addEventListener('abort', onSignal, { once: true });
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    let tunnel: Tunnel;
    try {
      tunnel = await connect({ ...command.connect, ca, handler: forwarder, logger, signal: stop.signal });
    } catch (err) {
      if (stop.signal.aborted) return;
      throw err instanceof RegistrationError ? refusal(err) : err;
    }
    const [first] = tunnel.tunnels;
    io.stdout.write(`forwarding ${command.connect.group} → ${command.origin.href} via ${first?.nodeId ?? 'unknown'} (${first?.address ?? '?'})\n`);
    const error = await tunnel.closed;
    if (error) throw refusal(error);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    io.signal?.removeEventListener('abort', onSignal);
    await forwarder.close();
  }
}

async function readCa(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw invalid(`--ca: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** One line that says what to change. */
function refusal(error: RegistrationError): ReverstError {
  const hint =
    error instanceof UnauthorizedError
      ? ' (check --username/--password or --token)'
      : error instanceof BadRequestError
        ? ' (check --group; the node may speak another protocol version)'
        : '';
  return new ReverstError(error.code, `registration failed: ${error.message}${hint}`, { cause: error });
}
