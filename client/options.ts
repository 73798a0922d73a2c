import { rootCertificates } from 'node:tls';
import { parseHostPort } from '../shared/address.js';
import { ReverstError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { MIN_UNRESPONSIVE_TIMEOUT_MS } from '../shared/quic/index.js';
import { authorizationValue, type Auth } from './auth.js';
import { toStreamServer, type Handler, type StreamServer } from './handler.js';

/** The first retry comes quickly: a restarting node is usually back within moments. */
export const DEFAULT_MIN_DELAY_MS = 100;
/** Long enough not to hammer a node that is down for good, short enough to notice it is back. */
export const DEFAULT_MAX_DELAY_MS = 30_000;
/** The seed client's idle timeout: a dead node is noticed within 20 s. */
export const DEFAULT_IDLE_TIMEOUT_MS = 20_000;
/** The seed client's keep-alive, at half the idle timeout so one lost ping is not fatal. */
export const DEFAULT_KEEP_ALIVE_MS = 10_000;
/**
 * A node that acknowledges nothing this long while responses wait for it is
 * gone (a machine that vanished sends no ICMP): reconnect then, not after the
 * idle timeout. Longer than the node's own 5 s, so a node that stalls briefly
 * does not send all its clients re-registering at once.
 */
export const DEFAULT_UNRESPONSIVE_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** A node that completed the handshake but never answers the registration is as good as dead. */
export const DEFAULT_REGISTRATION_TIMEOUT_MS = 10_000;
/** A connection that lived this long was healthy: the next failure starts the backoff afresh. */
export const HEALTHY_AFTER_MS = 10_000;
/** How long close() lets in-flight requests finish before resetting them. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;

export interface ConnectOptions {
  /** Nodes to dial as `host:port` (IPv6 as `[::1]:7171`), tried in order. */
  addresses: string[];
  /** Name the node's certificate must carry (default: each address's host). */
  serverName?: string | undefined;
  /** PEM CA bundle the node's certificate must chain to (default: Node's public roots). */
  ca?: string | Buffer | undefined;
  /** Skip certificate verification: for local experiments only. */
  insecure?: boolean | undefined;
  group: string;
  auth?: Auth | undefined;
  handler: Handler;
  /** Tunnels to hold at once, on distinct nodes where the addresses allow it. */
  connections?: number | undefined;
  minDelayMs?: number | undefined;
  maxDelayMs?: number | undefined;
  idleTimeoutMs?: number | undefined;
  keepAliveMs?: number | undefined;
  /** Reconnect when the node acknowledges nothing this long while data waits for it; 0 leaves it to the idle timeout. */
  unresponsiveTimeoutMs?: number | undefined;
  connectTimeoutMs?: number | undefined;
  registrationTimeoutMs?: number | undefined;
  /**
   * Keep retrying while the node does not know the group (it may be added by a reload). By
   * default a "not found" stops the tunnel with NotFoundError, as a misspelt group never appears.
   */
  retryNotFound?: boolean | undefined;
  /** Aborting stops the tunnel, like close(); a pending connect() rejects. */
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
}

export interface Address {
  host: string;
  port: number;
  /** As given, for logs and events. */
  text: string;
}

/** Everything a tunnel needs, validated and with defaults applied. */
export interface TunnelOptions {
  addresses: Address[];
  serverName?: string | undefined;
  ca?: string | Buffer | undefined;
  insecure: boolean;
  group: string;
  authorization?: string | undefined;
  /** Serves each request that arrives (the handler, in whichever form it was given). */
  serve: StreamServer;
  connections: number;
  minDelayMs: number;
  maxDelayMs: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
  unresponsiveTimeoutMs: number;
  connectTimeoutMs: number;
  registrationTimeoutMs: number;
  retryNotFound: boolean;
  signal?: AbortSignal | undefined;
  logger: Logger;
}

const invalid = (message: string) => new ReverstError('ERR_INVALID_OPTION', message);

/** A node address to dial (`host:port`, `[::1]:7171`); throws a ReverstError naming the problem. */
export function parseAddress(text: string): Address {
  try {
    return { ...parseHostPort(text), text: text.trim() };
  } catch (err) {
    throw invalid(`addresses: ${(err as Error).message}`);
  }
}

function positive(name: string, value: number | undefined, fallback: number, { integer = false } = {}): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw invalid(`${name}: expected a positive ${integer ? 'integer' : 'number'}, got ${String(value)}`);
  }
  return value;
}

export function parseConnectOptions(options: ConnectOptions): TunnelOptions {
  if (!Array.isArray(options.addresses) || options.addresses.length === 0) {
    throw invalid('addresses: give at least one node address as host:port');
  }
  if (typeof options.group !== 'string' || options.group === '') throw invalid('group: give the tunnel group to register on');
  if (options.insecure && options.ca) throw invalid('ca and insecure conflict: a CA is only used to verify, and insecure skips verifying');
  if (!options.handler) throw invalid('handler: give a fetch handler, a Node request listener or an http.Server');

  const logger = (options.logger ?? silentLogger).child({ component: 'tunnel', group: options.group });
  const minDelayMs = positive('minDelayMs', options.minDelayMs, DEFAULT_MIN_DELAY_MS);
  const maxDelayMs = positive('maxDelayMs', options.maxDelayMs, DEFAULT_MAX_DELAY_MS);
  if (maxDelayMs < minDelayMs) throw invalid(`maxDelayMs (${maxDelayMs}) must not be below minDelayMs (${minDelayMs})`);
  const idleTimeoutMs = positive('idleTimeoutMs', options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS);
  const keepAliveMs = options.keepAliveMs ?? Math.min(DEFAULT_KEEP_ALIVE_MS, Math.floor(idleTimeoutMs / 2));
  if (!Number.isFinite(keepAliveMs) || keepAliveMs < 0) throw invalid(`keepAliveMs: expected 0 (off) or a positive number, got ${keepAliveMs}`);
  if (keepAliveMs >= idleTimeoutMs) {
    throw invalid(`keepAliveMs (${keepAliveMs}) must be shorter than idleTimeoutMs (${idleTimeoutMs}), or the connection idles out between pings`);
  }
  const unresponsiveTimeoutMs = options.unresponsiveTimeoutMs ?? DEFAULT_UNRESPONSIVE_TIMEOUT_MS;
  if (
    !Number.isFinite(unresponsiveTimeoutMs) ||
    unresponsiveTimeoutMs < 0 ||
    (unresponsiveTimeoutMs > 0 && unresponsiveTimeoutMs < MIN_UNRESPONSIVE_TIMEOUT_MS)
  ) {
    throw invalid(
      `unresponsiveTimeoutMs: expected 0 (off) or at least ${MIN_UNRESPONSIVE_TIMEOUT_MS} (shorter would drop a healthy node on a slow path), got ${unresponsiveTimeoutMs}`,
    );
  }

  return {
    addresses: options.addresses.map(parseAddress),
    serverName: options.serverName || undefined,
    // quiche does not load the system's trust store: without a CA, use Node's bundled roots.
    ca: options.insecure ? undefined : (options.ca ?? rootCertificates.join('\n')),
    insecure: options.insecure ?? false,
    group: options.group,
    authorization: options.auth ? authorizationValue(options.auth) : undefined,
    serve: toStreamServer(options.handler, logger.child({ component: 'handler' })),
    connections: positive('connections', options.connections, 1, { integer: true }),
    minDelayMs,
    maxDelayMs,
    idleTimeoutMs,
    keepAliveMs,
    unresponsiveTimeoutMs,
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    registrationTimeoutMs: positive('registrationTimeoutMs', options.registrationTimeoutMs, DEFAULT_REGISTRATION_TIMEOUT_MS),
    retryNotFound: options.retryNotFound ?? false,
    signal: options.signal,
    logger,
  };
}
