import { ADVERTISED, LISTEN, normalizeHostPort } from '../shared/address.js';
import { GROUPS_SOURCE_FLAGS } from '../shared/config/index.js';
import { ReverstError } from '../shared/errors.js';
import { LOG_FLAG, parseCommandLine, usage as commandUsage, type CommandLine, type CommandSpec, type FlagSpec, type FlagValues } from '../shared/flags.js';
import { MIN_UNRESPONSIVE_TIMEOUT_MS } from '../shared/quic/index.js';
import { checkTrustedProxies } from './forwarding.js';
import { DEFAULT_NAMESPACE, checkNamespace } from './membership/options.js';

/** Checked and written canonically before anything starts: `-s nonsense` fails at once, naming the flag. */
const listenAddress = (text: string): string => normalizeHostPort(text, LISTEN);

// The seed's flags first, with its names and defaults; then ours.
export const NODE_FLAGS = [
  LOG_FLAG,
  {
    long: 'tunnel-address',
    short: 'a',
    kind: 'string',
    help: 'address for accepting tunnelling quic connections',
    default: '127.0.0.1:7171',
    parse: listenAddress,
  },
  { long: 'http-address', short: 's', kind: 'string', help: 'address for serving HTTP requests', default: '0.0.0.0:8181', parse: listenAddress },
  { long: 'server-name', short: 'n', kind: 'string', help: 'server name used to identify tunnel via TLS', required: true },
  { long: 'private-key-path', short: 'k', kind: 'string', help: 'path to TLS private key PEM file', required: true },
  { long: 'certificate-path', short: 'c', kind: 'string', help: 'path to TLS certificate PEM file', required: true },
  ...GROUPS_SOURCE_FLAGS,
  { long: 'management-address', kind: 'string', help: 'HTTP address for management API', parse: listenAddress },
  { long: 'max-idle-timeout', kind: 'duration', help: 'maximum time a connection can be idle', default: '1m0s' },
  { long: 'keep-alive-period', kind: 'duration', help: 'period between keep-alive events', default: '30s' },
  {
    long: 'unresponsive-timeout',
    kind: 'duration',
    help: 'drop a tunnel that acknowledges nothing this long while data waits for it, 0 to rely on the idle timeout',
    default: '5s',
  },
  {
    long: 'standalone',
    kind: 'boolean',
    help: 'one node with embedded config and auth, in-memory membership (no Redis, NATS or control plane)',
    conflicts: { membership: 'a standalone node keeps membership in memory (drop --standalone to join a cluster)' },
  },
  { long: 'node-id', kind: 'string', help: "this node's id", defaultText: 'random' },
  {
    long: 'membership',
    kind: 'string',
    value: 'URL',
    help: 'where nodes share which groups they hold: memory, redis://HOST:PORT or nats://HOST:PORT (?namespace=NAME to share a store)',
    default: 'memory',
  },
  {
    long: 'membership-namespace',
    kind: 'string',
    value: 'NAME',
    help: 'keeps this cluster apart from others in the same store: Redis key prefix, NATS bucket <NAME>-membership',
    defaultText: DEFAULT_NAMESPACE,
    parse: checkNamespace,
  },
  { long: 'membership-ttl', kind: 'duration', help: 'how long a node that stops heartbeating stays in the route tables', default: '6s' },
  {
    long: 'internal-address',
    kind: 'string',
    help: 'address other nodes forward requests to, as they dial it (cluster only; not 0.0.0.0)',
    parse: (text: string) => normalizeHostPort(text, ADVERTISED),
  },
  {
    long: 'cluster-secret',
    kind: 'string',
    help: 'secret shared by the nodes of a cluster (cluster only)',
    conflicts: { 'cluster-secret-file': 'give the secret one way' },
  },
  { long: 'cluster-secret-file', kind: 'string', value: 'PATH', help: 'file (or k8s://secret/<ns>/<name>/<key>) holding the cluster secret' },
  {
    long: 'request-timeout',
    kind: 'duration',
    help: 'longest wait for a response head, counted from the last request byte sent on (504 after)',
    default: '1m0s',
  },
  { long: 'max-header-size', kind: 'size', help: 'largest request header section accepted (431 above)', default: '16KiB' },
  { long: 'max-body-size', kind: 'size', help: 'largest request body accepted, 0 for no limit (413 above)', default: '0' },
  { long: 'drain-timeout', kind: 'duration', help: 'on SIGTERM, how long in-flight requests get to finish', default: '30s' },
  { long: 'control-plane-token-file', kind: 'string', value: 'PATH', help: "file holding the control plane's API token (-g http(s)://…)" },
  {
    long: 'groups-cache',
    kind: 'string',
    value: 'PATH',
    help: 'file keeping the last config from the control plane, so a restart while it is down starts from it',
  },
  {
    long: 'trusted-proxies',
    kind: 'list',
    value: 'CIDR,…',
    help: 'proxies in front of the node (addresses or CIDR blocks) whose X-Forwarded-*, Forwarded and X-Real-IP are kept; for others the node sets them',
    defaultText: 'none',
    parse: checkTrustedProxies,
  },
] as const satisfies readonly FlagSpec[];

export const NODE_COMMAND = {
  name: 'reverst',
  usage: [
    'reverst [FLAGS]',
    'reverst http <port|url> [FLAGS]   expose a local HTTP server through a tunnel (see reverst http -h)',
    'reverst control-plane [FLAGS]     serve tunnel groups and external auth to nodes (see reverst control-plane -h)',
  ],
  flags: NODE_FLAGS,
} as const satisfies CommandSpec;

export type NodeFlags = FlagValues<typeof NODE_FLAGS>;

export function usage(): string {
  return commandUsage(NODE_COMMAND);
}

const invalid = (message: string) => new ReverstError('ERR_INVALID_OPTION', `${message} (see reverst -h)`);

/** The node's flags, checked one by one and against each other. */
export function parseNodeFlags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CommandLine<typeof NODE_COMMAND> {
  const flags = parseCommandLine(NODE_COMMAND, argv, env);
  if (flags.help) return flags;
  if (flags.unresponsiveTimeoutMs > 0 && flags.unresponsiveTimeoutMs < MIN_UNRESPONSIVE_TIMEOUT_MS) {
    throw invalid('--unresponsive-timeout below 1s would drop healthy tunnels on a slow path or a busy machine: give 0 (off) or at least 1s');
  }
  if (flags.keepAlivePeriodMs >= flags.maxIdleTimeoutMs) {
    throw invalid('--keep-alive-period must be shorter than --max-idle-timeout, or idle tunnels time out between pings');
  }
  // Both belong to a control plane source: with any other -g they would be ignored without a word.
  const controlPlaneOnly = [flags.controlPlaneTokenFile && '--control-plane-token-file', flags.groupsCache && '--groups-cache'].filter(Boolean);
  if (controlPlaneOnly.length > 0 && !/^https?:\/\//i.test(flags.tunnelGroups)) {
    throw invalid(
      `${controlPlaneOnly.join(' and ')} ${controlPlaneOnly.length > 1 ? 'are' : 'is'} for a control plane source (-g http(s)://…/v1/groups) only, not for ${JSON.stringify(flags.tunnelGroups)}`,
    );
  }
  return flags;
}
