import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { groupsSourceFromUrl, matchHost, type GroupsSource } from '../shared/config/index.js';
import { rawTextResponse } from '../shared/http.js';
import { ReverstError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { rateLimited } from '../shared/log-limits.js';
import { ALPN, encodeFrame } from '../shared/protocol.js';
import { QuicServer, type HostPort, type QuicConnection } from '../shared/quic/index.js';
import { GroupsState } from './groups-state.js';
import { HopClient, type HopTarget } from './hop.js';
import { createHopListener } from './hop-listener.js';
import { createManagementServer } from './management.js';
import { DEFAULT_RESYNC_MS, DEFAULT_TTL_MS, createMembership, type Membership } from './membership/index.js';
import { Metrics } from './metrics.js';
import { createProxy } from './proxy.js';
import { DEFAULT_REGISTRATION_TIMEOUT_MS, register } from './registration.js';
import { TunnelRegistry } from './tunnels.js';

export interface NodeOptions {
  /** QUIC listener for tunnels, `host:port`. */
  tunnelAddress: string;
  /** Public HTTP listener, `host:port`. */
  httpAddress: string;
  /** Management listener (/metrics, /healthz, /readyz), `host:port`; none when unset. */
  managementAddress?: string | undefined;
  /** The TLS name clients verify; logged and used as this node's identity in errors. */
  serverName: string;
  key: string | Buffer;
  cert: string | Buffer;
  /** `-g`: a path, `file://…`, or a ready source. */
  groups: string | GroupsSource;
  watchGroups: boolean;
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
  /** How long a node that stops heartbeating stays in the route tables (default 6 s). */
  membershipTtlMs?: number | undefined;
  /** The internal hop listener other nodes forward requests to, `host:port` (cluster only). */
  internalAddress?: string | undefined;
  /** Shared by every node of a cluster; the hop refuses requests without it. */
  clusterSecret?: string | undefined;
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

export const DEFAULT_DRAIN_DEADLINE_MS = 10_000;
/** How long a request waits for a moving tunnel (see ProxyDeps.awaitHolder): a reconnect or hand-over takes well under this. */
export const HANDOVER_WAIT_MS = 2_000;

/** Polls `done` until it holds or `ms` pass (drains only: rare, and a 25 ms poll costs nothing). */
async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** Node's own default: a slow visitor's head is waited on this long before a 408. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;

export function parseHostPort(value: string, flag: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new TypeError(`${flag}: expected HOST:PORT (e.g. 127.0.0.1:7171), got "${value}"`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function listen(server: http.Server, at: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** Start one data-plane node: QUIC tunnels in, public HTTP in, requests out through tunnels. */
export async function startNode(options: NodeOptions): Promise<DataPlaneNode> {
  const membershipUrl = options.membership ?? 'memory';
  const clustered = !/^memory(:|$)/.test(membershipUrl);
  if (clustered && (!options.internalAddress || !options.clusterSecret)) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      '--membership with a shared store needs --internal-address (where other nodes reach this one) and --cluster-secret or --cluster-secret-file',
    );
  }
  // What is open so far, closed again (last first) if a later step fails (a port in use, a bad store URL).
  const opened: Array<() => unknown> = [];
  try {
    return await openNode(options, { membershipUrl, clustered }, opened);
  } catch (err) {
    for (const close of opened.reverse())
      await Promise.resolve()
        .then(close)
        .catch(() => {});
    throw err;
  }
}

async function openNode(
  options: NodeOptions,
  { membershipUrl, clustered }: { membershipUrl: string; clustered: boolean },
  opened: Array<() => unknown>,
): Promise<DataPlaneNode> {
  const nodeId = options.nodeId ?? randomBytes(6).toString('hex');
  const log = options.logger.child({ node: nodeId });
  const metrics = new Metrics();
  const source = typeof options.groups === 'string' ? groupsSourceFromUrl(options.groups) : options.groups;

  const registry = new TunnelRegistry();
  const groups = await GroupsState.load(source, registry, log, options.watchGroups);
  opened.push(() => groups.close());
  registry.on('change', (group: string, count: number) => metrics.activeConnections.set({ group }, count));

  const tunnelAt = parseHostPort(options.tunnelAddress, '--tunnel-address');
  const quic = await QuicServer.listen({
    alpn: [ALPN],
    host: tunnelAt.host,
    port: tunnelAt.port,
    key: options.key,
    cert: options.cert,
    idleTimeoutMs: options.maxIdleTimeoutMs,
    keepAliveMs: options.keepAlivePeriodMs,
    unresponsiveTimeoutMs: options.unresponsiveTimeoutMs,
  });
  opened.push(() => quic.close());
  let draining = false;
  const registrationLog = log.child({ component: 'registration' });
  const refusals = rateLimited(registrationLog, { summary: 'registration failures not logged (rate limit)' });
  quic.on('connection', (conn: QuicConnection) => {
    if (draining) {
      void conn.close({ code: 0x1, reason: 'node is draining' });
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
      isDraining: () => draining,
    });
  });

  // Requests in flight (public and hop), so a drain can wait for them.
  let inFlight = 0;
  const track = (res: http.ServerResponse): void => {
    inFlight++;
    res.once('close', () => inFlight--);
  };

  // Cluster: which node holds which group, and the hop between nodes.
  const ttlMs = options.membershipTtlMs ?? DEFAULT_TTL_MS;
  const membership = createMembership(membershipUrl, {
    ttlMs,
    heartbeatMs: Math.max(1, Math.floor(ttlMs / 3)),
    resyncMs: Math.min(DEFAULT_RESYNC_MS, ttlMs),
    logger: log.child({ component: 'membership' }),
  });
  opened.push(() => membership.stop({ leave: false }));
  const hopClient = clustered ? new HopClient(nodeId, options.clusterSecret!, log.child({ component: 'hop' })) : undefined;
  if (hopClient) opened.push(() => hopClient.close());
  const turns = new Map<string, number>();
  /** Other nodes holding the group, rotated per request so load spreads over them. */
  const hopTargets = (group: string): HopTarget[] => {
    const nodes = membership.nodesFor(group).filter((n) => n.id !== nodeId);
    if (nodes.length < 2) return nodes;
    const turn = (turns.get(group) ?? 0) % nodes.length;
    turns.set(group, turn + 1);
    return [...nodes.slice(turn), ...nodes.slice(0, turn)];
  };
  registry.on('change', () => membership.setGroups(registry.groups()));
  membership.on('change', () => metrics.membershipEvents.inc({ type: 'change' }));
  membership.on('health', (h: { ok: boolean; detail: string }) => {
    metrics.membershipEvents.inc({ type: h.ok ? 'store_ok' : 'store_degraded' });
    if (h.ok) log.info('membership store reachable again', { detail: h.detail });
    else log.warn('membership store unreachable: local tunnels keep serving, cross-node routing uses the last known table', { detail: h.detail });
  });

  const proxy = createProxy({
    route: (host) => matchHost(groups.config, host),
    picker: registry,
    metrics,
    logger: log,
    requestTimeoutMs: options.requestTimeoutMs,
    maxBodySize: options.maxBodySize ?? 0,
    remote: hopClient ? { targets: hopTargets, hop: hopClient } : undefined,
    awaitHolder: (group) => {
      const held = (): boolean => registry.count(group) > 0 || (clustered && membership.nodesFor(group).some((n) => n.id !== nodeId));
      if (held()) return Promise.resolve(true);
      // Woken by the route changes below, not by a timer per request: a hand-over can park many requests.
      return new Promise<boolean>((resolve) => {
        const waiter = (): void => {
          if (!held()) return;
          holderWaiters.delete(waiter);
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          holderWaiters.delete(waiter);
          resolve(false);
        }, HANDOVER_WAIT_MS);
        holderWaiters.add(waiter);
      });
    },
  });
  const holderWaiters = new Set<() => void>();
  const wakeHolderWaiters = (): void => {
    for (const w of [...holderWaiters]) w();
  };
  registry.on('change', wakeHolderWaiters);
  membership.on('change', wakeHolderWaiters);

  let internal: http.Server | undefined;
  let internalAddress: HostPort | undefined;
  if (clustered) {
    internal = createHopListener({ secret: options.clusterSecret!, maxHeaderSize: options.maxHeaderSize, metrics, proxy, track });
    internalAddress = await listen(internal, parseHostPort(options.internalAddress!, '--internal-address'));
    opened.push(() => internal!.close());
  }
  // A node alone has no hop listener: nobody forwards to it.
  await membership.start({ id: nodeId, address: internalAddress ? `${internalAddress.host}:${internalAddress.port}` : 'standalone' });
  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  // Node looks for timed-out request heads only this often (30 s by default).
  const connectionsCheckingInterval = Math.min(30_000, Math.max(100, Math.floor(headersTimeout / 4)));
  const httpServer = http.createServer({ maxHeaderSize: options.maxHeaderSize, headersTimeout, connectionsCheckingInterval }, (req, res) => {
    track(res);
    proxy.onRequest(req, res);
  });
  httpServer.on('upgrade', proxy.onUpgrade);
  httpServer.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Node answers 431 for an oversized header section and 408 for a head that never completes; other parse errors get a 400.
    if (!socket.writable) return socket.destroy();
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      socket.end(rawTextResponse(431, '431 Request Header Fields Too Large: the header section is over the limit'));
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      socket.end(rawTextResponse(408, '408 Request Timeout: the request head did not arrive in time'));
    } else {
      socket.end(rawTextResponse(400, '400 Bad Request: malformed HTTP request'));
    }
  });
  const httpAddress = await listen(httpServer, parseHostPort(options.httpAddress, '--http-address'));
  opened.push(() => httpServer.close());

  let management: http.Server | undefined;
  let managementAddress: HostPort | undefined;
  if (options.managementAddress) {
    // A store outage degrades cross-node routing only: the node stays ready for its own tunnels.
    management = createManagementServer(metrics, () => {
      const store = membership.health();
      return {
        ready: !draining,
        details: {
          status: draining ? 'draining' : 'serving',
          membership: store.ok ? 'ok' : `degraded: ${store.detail}`,
          nodes: membership.nodes().map((n) => n.id),
          groups: Object.fromEntries([...groups.config.groups.keys()].map((g) => [g, membership.nodesFor(g).map((n) => n.id)])),
        },
      };
    });
    managementAddress = await listen(management, parseHostPort(options.managementAddress, '--management-address'));
    opened.push(() => management!.close());
  }

  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let stopping: Promise<void> | undefined;

  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      draining = true;
      groups.close();
      httpServer.closeAllConnections();
      // Leave first, so other nodes stop sending requests here.
      await membership.stop({ leave: true });
      internal?.closeAllConnections();
      await Promise.all([
        new Promise<void>((r) => httpServer.close(() => r())),
        quic.close({ code: 0, reason: 'node stopped' }),
        management ? new Promise<void>((r) => management!.close(() => r())) : undefined,
        internal ? new Promise<void>((r) => internal!.close(() => r())) : undefined,
        hopClient?.close(),
      ]);
      log.info('node stopped');
      resolveClosed();
    })());

  const drain = async (): Promise<void> => {
    if (draining) return stop();
    draining = true;
    const deadlineMs = options.drainDeadlineMs ?? DEFAULT_DRAIN_DEADLINE_MS;
    log.info('draining', { tunnels: registry.all().length, inFlight });
    for (const t of registry.all()) t.control.write(encodeFrame({ Type: 'drain', DeadlineMs: deadlineMs }));
    // New visitors go elsewhere; requests already here finish.
    httpServer.close();
    httpServer.closeIdleConnections();
    const started = Date.now();
    // In a cluster, keep serving (hops included) until the clients have moved
    // their tunnels to other nodes; a node alone has nowhere to send them.
    if (clustered) await waitUntil(() => registry.all().length === 0, deadlineMs);
    await waitUntil(() => inFlight === 0, Math.max(0, (options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS) - (Date.now() - started)));
    await stop();
  };

  log.info('node ready', {
    serverName: options.serverName,
    tunnelAddress: `${quic.address().host}:${quic.address().port}`,
    httpAddress: `${httpAddress.host}:${httpAddress.port}`,
    managementAddress: managementAddress ? `${managementAddress.host}:${managementAddress.port}` : undefined,
    internalAddress: internalAddress ? `${internalAddress.host}:${internalAddress.port}` : undefined,
    membership: membershipUrl.replace(/\/\/[^@/]*@/, '//***@'),
  });

  return {
    nodeId,
    tunnelAddress: quic.address(),
    httpAddress,
    managementAddress,
    internalAddress,
    registry,
    membership,
    metrics,
    drain,
    stop,
    closed,
  };
}
