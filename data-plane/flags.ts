import { parseArgs } from 'node:util';
import { parseDuration } from '../shared/config/index.js';
import { ReverstError } from '../shared/errors.js';
import { parseLogLevel } from '../shared/log.js';
import { MIN_UNRESPONSIVE_TIMEOUT_MS } from '../shared/quic/index.js';

/** One flag of the node's command line; the long name also reads `REVERST_<LONG_NAME>`. */
interface FlagSpec {
  long: string;
  short?: string;
  kind: 'string' | 'boolean' | 'duration' | 'integer';
  value?: string;
  help: string;
  default?: string;
  required?: boolean;
}

// The seed's flags first, with its names and defaults; then ours.
export const NODE_FLAGS: FlagSpec[] = [
  { long: 'log', short: 'l', kind: 'string', value: 'LEVEL', help: 'debug, info, warn or error', default: 'INFO' },
  { long: 'tunnel-address', short: 'a', kind: 'string', value: 'STRING', help: 'address for accepting tunnelling quic connections', default: '127.0.0.1:7171' },
  { long: 'http-address', short: 's', kind: 'string', value: 'STRING', help: 'address for serving HTTP requests', default: '0.0.0.0:8181' },
  { long: 'server-name', short: 'n', kind: 'string', value: 'STRING', help: 'server name used to identify tunnel via TLS', required: true },
  { long: 'private-key-path', short: 'k', kind: 'string', value: 'STRING', help: 'path to TLS private key PEM file', required: true },
  { long: 'certificate-path', short: 'c', kind: 'string', value: 'STRING', help: 'path to TLS certificate PEM file', required: true },
  { long: 'tunnel-groups', short: 'g', kind: 'string', value: 'STRING', help: 'path to file or k8s configmap identifier', default: 'groups.yml' },
  { long: 'watch-groups', short: 'w', kind: 'boolean', help: 'watch tunnel groups sources for updates' },
  { long: 'management-address', kind: 'string', value: 'STRING', help: 'HTTP address for management API' },
  { long: 'max-idle-timeout', kind: 'duration', value: 'DURATION', help: 'maximum time a connection can be idle', default: '1m0s' },
  { long: 'keep-alive-period', kind: 'duration', value: 'DURATION', help: 'period between keep-alive events', default: '30s' },
  {
    long: 'unresponsive-timeout',
    kind: 'duration',
    value: 'DURATION',
    help: 'drop a tunnel that acknowledges nothing this long while data waits for it, 0 to rely on the idle timeout',
    default: '5s',
  },
  { long: 'standalone', kind: 'boolean', help: 'one node with embedded config and auth, in-memory membership (no Redis, NATS or control plane)' },
  { long: 'node-id', kind: 'string', value: 'STRING', help: "this node's id (default: random)" },
  {
    long: 'membership',
    kind: 'string',
    value: 'URL',
    help: 'where nodes share which groups they hold: memory, redis://HOST:PORT or nats://HOST:PORT',
    default: 'memory',
  },
  { long: 'membership-ttl', kind: 'duration', value: 'DURATION', help: 'how long a node that stops heartbeating stays in the route tables', default: '6s' },
  { long: 'internal-address', kind: 'string', value: 'STRING', help: 'address other nodes forward requests to (cluster only)' },
  { long: 'cluster-secret', kind: 'string', value: 'STRING', help: 'secret shared by the nodes of a cluster (cluster only)' },
  { long: 'cluster-secret-file', kind: 'string', value: 'STRING', help: 'file (or k8s://secret/<ns>/<name>/<key>) holding the cluster secret' },
  { long: 'request-timeout', kind: 'duration', value: 'DURATION', help: 'longest wait for a response head from a tunnel (504 after)', default: '1m0s' },
  { long: 'max-header-size', kind: 'integer', value: 'BYTES', help: 'largest request header section accepted (431 above)', default: '16384' },
  { long: 'max-body-size', kind: 'integer', value: 'BYTES', help: 'largest request body accepted, 0 for no limit (413 above)', default: '0' },
  { long: 'drain-timeout', kind: 'duration', value: 'DURATION', help: 'on SIGTERM, how long in-flight requests get to finish', default: '30s' },
  { long: 'help', short: 'h', kind: 'boolean', help: 'show this help' },
];

export interface NodeFlags {
  log: string;
  tunnelAddress: string;
  httpAddress: string;
  serverName: string;
  privateKeyPath: string;
  certificatePath: string;
  tunnelGroups: string;
  watchGroups: boolean;
  managementAddress?: string;
  maxIdleTimeoutMs: number;
  keepAlivePeriodMs: number;
  unresponsiveTimeoutMs: number;
  standalone: boolean;
  nodeId?: string;
  membership: string;
  membershipTtlMs: number;
  internalAddress?: string;
  clusterSecret?: string;
  clusterSecretFile?: string;
  requestTimeoutMs: number;
  maxHeaderSize: number;
  maxBodySize: number;
  drainTimeoutMs: number;
  help: boolean;
}

export const envName = (long: string): string => `REVERST_${long.toUpperCase().replace(/-/g, '_')}`;

export function usage(command = 'reverst'): string {
  const names = NODE_FLAGS.map((f) => `${f.short ? `-${f.short}, ` : '    '}--${f.long}${f.value ? ` ${f.value}` : ''}`);
  const width = Math.max(...names.map((n) => n.length));
  const rows = NODE_FLAGS.map((f, i) => {
    const extra = f.required ? ' (required)' : f.default ? ` (default: ${f.default})` : '';
    return `  ${names[i]!.padEnd(width)}   ${f.help}${extra}`;
  });
  return [
    'COMMAND',
    `  ${command}`,
    '',
    'USAGE',
    `  ${command} [FLAGS]`,
    `  ${command} http <port|url> [FLAGS]   expose a local HTTP server through a tunnel (see reverst http -h)`,
    '',
    'FLAGS',
    ...rows,
    '',
    'Every long flag can also be set as an environment variable: --tunnel-address is REVERST_TUNNEL_ADDRESS.',
    '',
  ].join('\n');
}

const camel = (long: string): string => long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Flags override environment variables, which override defaults. */
export function parseNodeFlags(argv: string[], env: NodeJS.ProcessEnv = process.env): NodeFlags {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        NODE_FLAGS.map((f) => [f.long, { type: f.kind === 'boolean' ? 'boolean' : 'string', ...(f.short ? { short: f.short } : {}) }]),
      ),
    });
  } catch (err) {
    throw new ReverstError('ERR_INVALID_OPTION', `${(err as Error).message} (see reverst -h)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const out: Record<string, unknown> = {};
  for (const f of NODE_FLAGS) {
    const fromEnv = env[envName(f.long)];
    const raw = values[f.long] ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined) ?? f.default;
    const key = f.kind === 'duration' ? `${camel(f.long)}Ms` : camel(f.long);
    if (raw === undefined) {
      out[key] = f.kind === 'boolean' ? false : undefined;
      continue;
    }
    const source = values[f.long] !== undefined ? `--${f.long}` : fromEnv !== undefined ? envName(f.long) : `--${f.long} default`;
    out[key] = convert(f, raw, source);
  }
  const flags = out as unknown as NodeFlags;
  if (flags.help) return flags;
  parseLogLevel(flags.log);
  const missing = NODE_FLAGS.filter((f) => f.required && !out[camel(f.long)]).map((f) => `-${f.short}/--${f.long} (or ${envName(f.long)})`);
  if (missing.length > 0) throw new ReverstError('ERR_INVALID_OPTION', `missing required flag${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`);
  if (flags.standalone && flags.membership !== 'memory') {
    throw new ReverstError('ERR_INVALID_OPTION', '--standalone keeps membership in memory: drop --membership, or drop --standalone to join a cluster');
  }
  if (flags.clusterSecret && flags.clusterSecretFile) {
    throw new ReverstError('ERR_INVALID_OPTION', 'give --cluster-secret or --cluster-secret-file, not both');
  }
  if (flags.unresponsiveTimeoutMs > 0 && flags.unresponsiveTimeoutMs < MIN_UNRESPONSIVE_TIMEOUT_MS) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      '--unresponsive-timeout below 1s would drop healthy tunnels on a slow path or a busy machine: give 0 (off) or at least 1s',
    );
  }
  if (flags.keepAlivePeriodMs >= flags.maxIdleTimeoutMs) {
    throw new ReverstError('ERR_INVALID_OPTION', '--keep-alive-period must be shorter than --max-idle-timeout, or idle tunnels time out between pings');
  }
  return flags;
}

function convert(f: FlagSpec, raw: string | boolean, source: string): unknown {
  if (f.kind === 'boolean') return raw === true || (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw));
  const text = String(raw);
  if (f.kind === 'duration') {
    const ms = parseDuration(text);
    if (ms === undefined) throw new ReverstError('ERR_INVALID_OPTION', `${source}: "${text}" is not a duration (e.g. 30s, 1m0s, 250ms)`);
    return ms;
  }
  if (f.kind === 'integer') {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 0) throw new ReverstError('ERR_INVALID_OPTION', `${source}: "${text}" is not a whole number of bytes`);
    return n;
  }
  return text;
}
