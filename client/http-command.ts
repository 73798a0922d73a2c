/**
 * `reverst http <port|url>`: expose a local HTTP server through a tunnel, like the seed's
 * client. Each flag can also come from `REVERST_<LONG_NAME>` (upper case, `-` → `_`);
 * the command line wins. The repeatable --address takes a comma-separated list in env.
 */
import { normalizeHostPort } from '../shared/address.js';
import { readFlagFile } from '../shared/flag-file.js';
import { BadRequestError, NotFoundError, RegistrationError, ReverstError, ServerNameError, UnauthorizedError } from '../shared/errors.js';
import { LOG_FLAG, parseCommandLine, usage, type CommandSpec, type FlagSpec } from '../shared/flags.js';
import { createLogger, type LogLevel } from '../shared/log.js';
import { basic, bearer } from './auth.js';
import { createForwarder } from './forwarder.js';
import type { ConnectOptions } from './options.js';
import { connect, type Tunnel } from './tunnel.js';

export const DEFAULT_ADDRESS = '127.0.0.1:7171';

const HTTP_FLAGS = [
  LOG_FLAG,
  {
    long: 'address',
    kind: 'list',
    value: 'HOST:PORT',
    help: 'node to dial; repeat for failover, tried in order',
    default: DEFAULT_ADDRESS,
    parse: (text: string) => normalizeHostPort(text),
  },
  { long: 'server-name', kind: 'string', value: 'NAME', help: "name the node's certificate must carry", defaultText: "the address's host" },
  {
    long: 'ca',
    kind: 'string',
    value: 'FILE',
    help: 'PEM CA bundle to verify the node with',
    defaultText: 'public roots',
    conflicts: { insecure: '--insecure skips the verification the CA is for' },
  },
  { long: 'insecure', kind: 'boolean', help: "do not verify the node's certificate (local experiments only)" },
  { long: 'group', kind: 'string', value: 'NAME', help: 'tunnel group to register on', required: true },
  {
    long: 'username',
    kind: 'string',
    value: 'USER',
    help: 'basic authentication, with --password',
    requires: ['password'],
    conflicts: { token: 'give one kind of credentials' },
  },
  { long: 'password', kind: 'string', value: 'PASS', help: 'basic authentication, with --username', requires: ['username'] },
  { long: 'token', kind: 'string', value: 'TOKEN', help: 'bearer authentication' },
  { long: 'preserve-host', kind: 'boolean', help: "send the visitor's Host to the origin instead of the origin's own" },
  { long: 'origin-timeout', kind: 'duration', help: 'give up on an origin silent this long', default: '1m0s' },
  { long: 'retry-not-found', kind: 'boolean', help: 'keep retrying while the node does not know the group (it may appear on a reload)' },
] as const satisfies readonly FlagSpec[];

export const HTTP_COMMAND = {
  name: 'reverst http',
  usage: ['reverst http <port|url> [FLAGS]'],
  description: [
    'Exposes a local HTTP server through a tunnel: requests to the tunnel group are',
    'forwarded to <url> (a bare port means http://localhost:<port>). WebSocket and other',
    'Upgrade requests pass through. Prefer the environment for secrets (REVERST_PASSWORD).',
  ].join('\n'),
  flags: HTTP_FLAGS,
  positionals: { name: 'local port or URL to expose', min: 1, max: 1 },
} as const satisfies CommandSpec;

/** `reverst http -h`. */
export const USAGE = usage(HTTP_COMMAND);

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

/** Parses argv and env into what the command runs; 'help' if -h was given. */
export function parseHttpCommand(argv: string[], env: NodeJS.ProcessEnv = process.env): HttpCommand | 'help' {
  const flags = parseCommandLine(HTTP_COMMAND, argv, env);
  if (flags.help) return 'help';
  const origin = parseOrigin(flags.positionals[0]!);
  if (flags.address.length === 0) throw invalid('--address: give at least one HOST:PORT');
  if (flags.originTimeoutMs <= 0) throw invalid('--origin-timeout: give a duration above 0, such as 30s or 2m');
  const { username, password, token } = flags;
  return {
    origin,
    connect: {
      addresses: flags.address,
      serverName: flags.serverName,
      insecure: flags.insecure,
      group: flags.group,
      auth: token ? bearer(token) : username !== undefined && password !== undefined ? basic(username, password) : undefined,
      retryNotFound: flags.retryNotFound,
    },
    caPath: flags.ca,
    preserveHost: flags.preserveHost,
    originTimeoutMs: flags.originTimeoutMs,
    logLevel: flags.log,
  };
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
  const ca = command.caPath === undefined ? undefined : await readFlagFile(command.caPath, '--ca');
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

/** One line that says what to change. */
function refusal(error: RegistrationError): ReverstError {
  const hint =
    error instanceof UnauthorizedError
      ? ' (check --username/--password or --token)'
      : error instanceof NotFoundError
        ? ' (check --group, or give --retry-not-found to wait for it)'
        : error instanceof ServerNameError
          ? ' (check --server-name)'
          : error instanceof BadRequestError
            ? ' (check --group; the node may speak another protocol version)'
            : '';
  // A wrong server name fails before any registration: its message says what happened.
  const what = error instanceof ServerNameError ? error.message : `registration failed: ${error.message}`;
  return new ReverstError(error.code, `${what}${hint}`, { cause: error });
}
