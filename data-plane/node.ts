/**
 * One data-plane node: QUIC tunnels in, public HTTP in, requests out through tunnels (or
 * over the hop to the node holding one). This file checks the options and puts the parts
 * together; listeners.ts opens the sockets, cluster.ts holds membership and the hop,
 * lifecycle.ts drains and stops.
 */
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { ADVERTISED, LISTEN, formatHostPort, parseHostPort, type HostPort } from '../shared/address.js';
import { groupsSourceFromUrl, matchHost, type GroupsSource } from '../shared/config/index.js';
import { ReverstError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { rateLimited } from '../shared/log-limits.js';
import { checkKeyPair } from '../shared/pem.js';
import { ALPN, CloseCode, outdatedClientClose } from '../shared/protocol.js';
import type { QuicConnection } from '../shared/quic/index.js';
import { redactUrl } from '../shared/redact.js';
import { Cluster } from './cluster.js';
import { TrustedProxies } from './forwarding.js';
import { GroupsState } from './groups-state.js';
import { Intake, NodeLifecycle } from './lifecycle.js';
import { LISTENER_FLAGS, createPublicServer, listen, listenTunnels } from './listeners.js';
import { createManagementServer, type Readiness } from './management.js';
import type { Membership } from './membership/index.js';
import { Metrics } from './metrics.js';
import { createProxy } from './proxy.js';
import { DEFAULT_REGISTRATION_TIMEOUT_MS, register } from './registration.js';
import { TunnelRegistry } from './tunnels.js';

export { HANDOVER_WAIT_MS } from './cluster.js';
export { DEFAULT_DRAIN_DEADLINE_MS, DEFAULT_DRAIN_TIMEOUT_MS } from './lifecycle.js';
export { DEFAULT_HEADERS_TIMEOUT_MS } from './listeners.js';

export interface NodeOptions {
  /** QUIC listener for tunnels, `host:port` (`[::1]:7171` for IPv6; port 0 picks one). */
  tunnelAddress: string;
  /** Public HTTP listener, `host:port`. */
  httpAddress: string;
  /** Management listener (/metrics, /healthz, /readyz), `host:port`; none when unset. */
  managementAddress?: string | undefined;
  /** The TLS name clients verify; logged and used as this node's identity in errors. */
  serverName: string;
  key: string | Buffer;
  cert: string | Buffer;
  /** `-g`: a path, `file://…`, a control plane's `http(s)://…/v1/groups`, or a ready source. */
  groups: string | GroupsSource;
  watchGroups: boolean;
  /** The control plane's API token (`-g http(s)://…`). */
  controlPlaneToken?: string | undefined;
  /** Where the last config from a control plane is kept, for a start while it is down. */
  groupsCache?: string | undefined;
  maxIdleTimeoutMs: number;
  keepAlivePeriodMs: number;
  /** Drop a tunnel whose client acknowledges nothing this long while data waits (default 5 s; 0: idle timeout only). */
  unresponsiveTimeoutMs?: number | undefined;
  requestTimeoutMs: number;
  /** Longest wait for a visitor's request head (408 after); Node's default, 60 s, when unset. */
  headersTimeoutMs?: number | undefined;
  maxHeaderSize: number;
  /** Largest request body accepted (413 above); 0 or unset for no limit. */
  maxBodySize?: number | undefined;
  nodeId?: string | undefined;
  /** Where nodes publish which groups they hold: `memory` (default: this node alone), `redis://…`, `nats://…`. */
  membership?: string | undefined;
  /** Keeps this cluster apart from others sharing the store (default `reverst`; or `?namespace=` on the URL). */
  membershipNamespace?: string | undefined;
  /** How long a node that stops heartbeating stays in the route tables (default 6 s). */
  membershipTtlMs?: number | undefined;
  /** The internal hop listener other nodes forward requests to, `host:port` (cluster only). */
  internalAddress?: string | undefined;
  /** Shared by every node of a cluster; the hop refuses requests without it. */
  clusterSecret?: string | undefined;
  /** Addresses (CIDR blocks) of proxies in front of the node whose X-Forwarded-*, Forwarded and X-Real-IP are kept. */
  trustedProxies?: string | readonly string[] | undefined;
  registrationTimeoutMs?: number | undefined;
  /** How long tunnels get, after the drain frame, to connect elsewhere before this node closes them. */
  drainDeadlineMs?: number | undefined;
  /** How long in-flight requests get to finish on drain. */
  drainTimeoutMs?: number | undefined;
  logger: Logger;
}

export interface DataPlaneNode {
  readonly nodeId: string;
  readonly tunnelAddress: HostPort;
  readonly httpAddress: HostPort;
  readonly managementAddress: HostPort | undefined;
  readonly internalAddress: HostPort | undefined;
  readonly registry: TunnelRegistry;
  readonly membership: Membership;
  readonly metrics: Metrics;
  /** Stop taking requests, tell tunnels to move, let in-flight requests finish, then stop. */
  drain(): Promise<void>;
  /** Close everything now. */
  stop(): Promise<void>;
  /** Resolves once the node has stopped. */
  readonly closed: Promise<void>;
}

/** A listener's address, or a one-line error naming its flag. */
function listenerAddress(text: string, flag: string, rules = LISTEN): HostPort {
  try {
    return parseHostPort(text, rules);
  } catch (err) {
    throw new ReverstError('ERR_INVALID_OPTION', `${flag}: ${(err as Error).message}`);
  }
}

/** What startNode checked before opening anything. */
interface Checked {
  nodeId: string;
  log: Logger;
  at: { tunnel: HostPort; http: HostPort; management: HostPort | undefined };
  source: GroupsSource;
  registry: TunnelRegistry;
  metrics: Metrics;
  cluster: Cluster;
  trustedProxies: TrustedProxies;
}

/** Start one data-plane node. Every option is checked before anything loads or listens. */
export async function startNode(options: NodeOptions): Promise<DataPlaneNode> {
  const nodeId = options.nodeId ?? randomBytes(6).toString('hex');
  const log = options.logger.child({ node: nodeId });
  const at = {
    tunnel: listenerAddress(options.tunnelAddress, LISTENER_FLAGS.tunnel),
    http: listenerAddress(options.httpAddress, LISTENER_FLAGS.http),
    management: options.managementAddress ? listenerAddress(options.managementAddress, LISTENER_FLAGS.management) : undefined,
  };
  // Published for other nodes to dial: "any address" would send their hops to themselves.
  const internalAddress = options.internalAddress ? listenerAddress(options.internalAddress, LISTENER_FLAGS.internal, ADVERTISED) : undefined;
  checkKeyPair({ pem: options.key, name: 'key' }, { pem: options.cert, name: 'cert' });
  const trustedProxies = TrustedProxies.parse(options.trustedProxies);
  const source =
    typeof options.groups === 'string'
      ? groupsSourceFromUrl(options.groups, { watch: options.watchGroups, token: options.controlPlaneToken, cachePath: options.groupsCache, logger: log })
      : options.groups;
  const registry = new TunnelRegistry();
  const metrics = new Metrics();
  const cluster = new Cluster({
    nodeId,
    membership: options.membership ?? 'memory',
    namespace: options.membershipNamespace,
    ttlMs: options.membershipTtlMs,
    internalAddress,
    clusterSecret: options.clusterSecret,
    registry,
    metrics,
    logger: log,
  });

  // What is open so far, closed again (last first) if a later step fails (a port in use, a store URL).
  const opened: Array<() => unknown> = [() => cluster.close()];
  try {
    return await openNode(options, { nodeId, log, at, source, registry, metrics, cluster, trustedProxies }, opened);
  } catch (err) {
    for (const close of opened.reverse())
      await Promise.resolve()
        .then(close)
        .catch(() => {});
    throw err;
  }
}

async function openNode(options: NodeOptions, checked: Checked, opened: Array<() => unknown>): Promise<DataPlaneNode> {
  const { nodeId, log, at, source, registry, metrics, cluster, trustedProxies } = checked;
  const groups = await GroupsState.load(source, registry, log, options.watchGroups);
  opened.push(() => groups.close());
  registry.on('change', (group: string, count: number) => metrics.activeConnections.set({ group }, count));
  const intake = new Intake();

  const quic = await listenTunnels(at.tunnel, {
    key: options.key,
    cert: options.cert,
    idleTimeoutMs: options.maxIdleTimeoutMs,
    keepAliveMs: options.keepAlivePeriodMs,
    unresponsiveTimeoutMs: options.unresponsiveTimeoutMs,
  });
  opened.push(() => quic.close());
  const registrationLog = log.child({ component: 'registration' });
  const refusals = rateLimited(registrationLog, { summary: 'registration failures not logged (rate limit)' });
  quic.on('connection', (conn: QuicConnection) => {
    if (intake.draining) {
      void conn.close({ code: CloseCode.ServerError, reason: 'node is draining' });
      return;
    }
    if (conn.alpn !== ALPN) {
      void conn.close(outdatedClientClose(conn.alpn));
      return;
    }
    void register(conn, {
      nodeId,
      authenticator: (group) => groups.authenticatorFor(group),
      registry,
      metrics,
      logger: registrationLog,
      refusals,
      timeoutMs: options.registrationTimeoutMs ?? DEFAULT_REGISTRATION_TIMEOUT_MS,
      isDraining: () => intake.draining,
    });
  });

  // The request path: the one place the proxy is built.
  const proxy = createProxy({
    route: (host) => matchHost(groups.config, host),
    picker: registry,
    metrics,
    logger: log,
    requestTimeoutMs: options.requestTimeoutMs,
    maxBodySize: options.maxBodySize ?? 0,
    maxHeaderSize: options.maxHeaderSize,
    trustedProxies,
    remote: cluster.remote,
    awaitHolder: (group, tried) => cluster.awaitHolder(group, tried),
  });

  await cluster.listen(proxy, intake.track);
  // A start that fails from here on takes this node's record out at once: others would hop to it until its TTL.
  opened.push(() => cluster.leave());
  await cluster.join();
  const publicServer = createPublicServer(
    { maxHeaderSize: options.maxHeaderSize, headersTimeoutMs: options.headersTimeoutMs },
    (req: http.IncomingMessage, res: http.ServerResponse) => {
      intake.track(res);
      proxy.onRequest(req, res);
    },
    // An upgraded connection is a request in flight until it closes: a drain gives it its time too.
    (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      intake.track(socket);
      proxy.onUpgrade(req, socket, head);
    },
  );
  const httpAddress = await listen(publicServer, at.http, LISTENER_FLAGS.http);
  opened.push(() => publicServer.close());

  let management: http.Server | undefined;
  let managementAddress: HostPort | undefined;
  if (at.management) {
    management = createManagementServer(metrics, (): Readiness => {
      const store = cluster.membership.health();
      // A store outage degrades cross-node routing only: the node stays ready for its own tunnels.
      // A source without any config yet (a control plane never reached) leaves it not ready.
      const source = groups.sourceStatus();
      return {
        ready: !intake.draining && source.ready,
        details: {
          status: intake.draining ? 'draining' : source.ready ? 'serving' : 'waiting for tunnel groups',
          groupsSource: source.detail,
          membership: store.ok ? 'ok' : `degraded: ${store.detail}`,
          nodes: cluster.membership.nodes().map((n) => n.id),
          groups: Object.fromEntries([...groups.config.groups.keys()].map((g) => [g, cluster.membership.nodesFor(g).map((n) => n.id)])),
        },
      };
    });
    managementAddress = await listen(management, at.management, LISTENER_FLAGS.management);
    opened.push(() => management!.close());
  }

  const lifecycle = new NodeLifecycle({ registry, groups, quic, publicServer, management, cluster }, intake, log, options);
  log.info('node ready', {
    serverName: options.serverName,
    tunnelAddress: formatHostPort(quic.address()),
    httpAddress: formatHostPort(httpAddress),
    managementAddress: managementAddress ? formatHostPort(managementAddress) : undefined,
    internalAddress: cluster.internalAddress ? formatHostPort(cluster.internalAddress) : undefined,
    membership: redactUrl(options.membership ?? 'memory'),
  });

  return {
    nodeId,
    tunnelAddress: quic.address(),
    httpAddress,
    managementAddress,
    internalAddress: cluster.internalAddress,
    registry,
    membership: cluster.membership,
    metrics,
    drain: () => lifecycle.drain(),
    stop: () => lifecycle.stop(),
    closed: lifecycle.closed,
  };
}
