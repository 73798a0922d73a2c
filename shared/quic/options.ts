// Transport options with the defaults we chose and why. parseQuicOptions()
// normalises a partial object and rejects values quiche would misbehave on.
import { ReverstError } from '../errors.js';

/** Keep the handshake and every packet under the path MTU of ordinary networks. */
export const DEFAULT_MAX_UDP_PAYLOAD = 1350;
/**
 * Packets to a peer on this machine (loopback: no MTU to respect, nothing to fragment) carry up
 * to this much: each costs a send, a receive and a wake-up whatever its size, so 12x fewer of
 * them move bulk data at several times the rate for a fraction of the CPU. quiche caps packets
 * at 16383 bytes once the handshake is done.
 */
export const DEFAULT_LOOPBACK_UDP_PAYLOAD = 16_383;
/** A node keeps an idle tunnel for a minute (the seed's --max-idle-timeout). */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
/** Ping well inside the idle timeout so NATs and the peer keep the path (the seed's --keep-alive-period). */
export const DEFAULT_KEEP_ALIVE_MS = 30_000;
/**
 * A peer that dies without a word (a killed process behind NAT, a machine gone)
 * would otherwise hold its connection, and every request sent into it, until the
 * idle timeout. A live peer acknowledges what we send within a round trip and its
 * ack delay, so this long with data unacknowledged and nothing heard means it is
 * gone. Long enough for a brief network outage or a busy peer to recover.
 */
export const DEFAULT_UNRESPONSIVE_TIMEOUT_MS = 5_000;
/** Below this (other than 0, off), a slow path or a busy peer would pass for a dead one; the node's flag and the client refuse it. */
export const MIN_UNRESPONSIVE_TIMEOUT_MS = 1_000;
/**
 * A packet that needs only an acknowledgement waits this long for data to ride with: a request's
 * answer usually follows within it, and every packet saved is a send, a receive and a wake-up of
 * the peer. Far inside the 25 ms a peer allows for acknowledgements (max_ack_delay).
 */
export const DEFAULT_ACK_DELAY_MS = 2;
/** The longest ackDelayMs: the peer expects acknowledgements within 25 ms (max_ack_delay). */
export const MAX_ACK_DELAY_MS = 20;
/** A dial to nothing must fail, not wait forever. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/**
 * Initial per-stream receive window. Small enough that a stream whose reader
 * stalls pins little of the connection window; quiche grows it (up to the max
 * below) for streams whose reader keeps up.
 */
export const DEFAULT_STREAM_WINDOW = 1 << 20;
export const DEFAULT_MAX_STREAM_WINDOW = 8 << 20;
/**
 * Connection receive window: several stalled streams' windows fit in it with
 * room left for the others, so one stalled reader cannot freeze the tunnel.
 */
export const DEFAULT_CONNECTION_WINDOW = 24 << 20;
export const DEFAULT_MAX_CONNECTION_WINDOW = 48 << 20;
/**
 * Concurrent streams the peer may open; openStream() waits for credit beyond it.
 * A finished stream holds its credit until the peer's (delayed) ACKs let quiche
 * collect it, ~25 ms: 256 capped 64-way round trips near 10k/s, 4096 lifts that
 * cap (measured with npm run bench:transport). Streams cost memory only once used.
 */
export const DEFAULT_MAX_STREAMS = 4096;
/** cubic gave the best throughput on loopback and over loss; bbr was slower. */
export const DEFAULT_CONGESTION_CONTROL = 'cubic';
/** Bytes a stream buffers in JS before write() reports backpressure. */
export const DEFAULT_STREAM_WRITE_BUFFER = 256 << 10;
/** How long close() lets open streams finish before resetting them. */
export const DEFAULT_CLOSE_GRACE_MS = 0;
/** After CONNECTION_CLOSE, quiche drains for 3 PTO; never wait longer than this. */
export const CLOSE_DRAIN_LIMIT_MS = 3_000;

export type CongestionControl = 'cubic' | 'reno' | 'bbr';

/** Transport options a caller may leave out (or pass as undefined) to get the defaults. */
export type QuicTransportOverrides = { [K in keyof QuicTransportOptions]?: QuicTransportOptions[K] | undefined };

export interface QuicTransportOptions {
  /** ALPN protocols offered (client) or accepted (server). Required. */
  alpn: string[];
  idleTimeoutMs: number;
  /** 0 disables keep-alive pings. */
  keepAliveMs: number;
  /** Drop the connection when sent data waits this long with nothing heard from the peer; 0 disables. */
  unresponsiveTimeoutMs: number;
  /** How long an acknowledgement may wait for data to ride with (0: at the next turn of the loop). */
  ackDelayMs: number;
  streamWindow: number;
  maxStreamWindow: number;
  connectionWindow: number;
  maxConnectionWindow: number;
  /** Bidirectional streams the peer may have open at once. */
  maxStreams: number;
  congestionControl: CongestionControl;
  /** Largest UDP payload sent to a peer across a network. */
  maxUdpPayload: number;
  /** Largest UDP payload sent to a peer on a loopback address (at least maxUdpPayload). */
  loopbackUdpPayload: number;
  streamWriteBuffer: number;
  /** Socket buffer sizes (bytes); the kernel caps them at net.core.[rw]mem_max. */
  socketBuffer: number;
}

export interface TlsOptions {
  /** PEM private key and certificate chain (required on the server). */
  key?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  /** PEM CA bundle the peer's certificate must chain to. */
  ca?: string | Buffer | undefined;
  /** Verify the peer's certificate (clients: default true). */
  verifyPeer?: boolean | undefined;
}

export const DEFAULT_SOCKET_BUFFER = 4 << 20;

export function parseQuicOptions(partial: QuicTransportOverrides & { alpn?: string[] }, defaults: QuicTransportOverrides = {}): QuicTransportOptions {
  const o: QuicTransportOptions = {
    alpn: [],
    idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS,
    keepAliveMs: DEFAULT_KEEP_ALIVE_MS,
    unresponsiveTimeoutMs: DEFAULT_UNRESPONSIVE_TIMEOUT_MS,
    ackDelayMs: DEFAULT_ACK_DELAY_MS,
    streamWindow: DEFAULT_STREAM_WINDOW,
    maxStreamWindow: DEFAULT_MAX_STREAM_WINDOW,
    connectionWindow: DEFAULT_CONNECTION_WINDOW,
    maxConnectionWindow: DEFAULT_MAX_CONNECTION_WINDOW,
    maxStreams: DEFAULT_MAX_STREAMS,
    congestionControl: DEFAULT_CONGESTION_CONTROL,
    maxUdpPayload: DEFAULT_MAX_UDP_PAYLOAD,
    loopbackUdpPayload: DEFAULT_LOOPBACK_UDP_PAYLOAD,
    streamWriteBuffer: DEFAULT_STREAM_WRITE_BUFFER,
    socketBuffer: DEFAULT_SOCKET_BUFFER,
    ...stripUndefined(defaults),
    ...stripUndefined(partial),
  };
  if (!Array.isArray(o.alpn) || o.alpn.length === 0 || o.alpn.some((p) => typeof p !== 'string' || p.length === 0 || p.length > 255)) {
    throw new ReverstError('ERR_INVALID_OPTION', 'alpn: give at least one protocol name of 1-255 bytes');
  }
  for (const key of [
    'idleTimeoutMs',
    'keepAliveMs',
    'unresponsiveTimeoutMs',
    'ackDelayMs',
    'streamWindow',
    'maxStreamWindow',
    'connectionWindow',
    'maxConnectionWindow',
    'maxStreams',
    'maxUdpPayload',
    'loopbackUdpPayload',
    'streamWriteBuffer',
    'socketBuffer',
  ] as const) {
    const v = o[key];
    if (!Number.isFinite(v) || v < 0) throw new ReverstError('ERR_INVALID_OPTION', `${key}: expected a non-negative number, got ${String(v)}`);
  }
  if (o.ackDelayMs > MAX_ACK_DELAY_MS) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      `ackDelayMs: at most ${MAX_ACK_DELAY_MS} (the peer expects acknowledgements within 25 ms), got ${o.ackDelayMs}`,
    );
  }
  if (o.idleTimeoutMs === 0) throw new ReverstError('ERR_INVALID_OPTION', 'idleTimeoutMs: 0 would never notice a dead peer; give a timeout');
  if (o.keepAliveMs >= o.idleTimeoutMs) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      `keepAliveMs (${o.keepAliveMs}) must be shorter than idleTimeoutMs (${o.idleTimeoutMs}), or the connection idles out between pings`,
    );
  }
  if (o.maxUdpPayload < 1200 || o.maxUdpPayload > 65527) throw new ReverstError('ERR_INVALID_OPTION', 'maxUdpPayload: QUIC needs 1200..65527 bytes');
  if (o.loopbackUdpPayload > 65527) throw new ReverstError('ERR_INVALID_OPTION', 'loopbackUdpPayload: at most 65527 bytes fit in a UDP datagram');
  // A loopback path carries at least what any path does.
  if (o.loopbackUdpPayload < o.maxUdpPayload) o.loopbackUdpPayload = o.maxUdpPayload;
  if (o.maxStreamWindow < o.streamWindow) o.maxStreamWindow = o.streamWindow;
  if (o.maxConnectionWindow < o.connectionWindow) o.maxConnectionWindow = o.connectionWindow;
  if (o.connectionWindow < o.streamWindow) {
    throw new ReverstError('ERR_INVALID_OPTION', 'connectionWindow must be at least streamWindow, or one stream can use up the whole connection');
  }
  if (!['cubic', 'reno', 'bbr'].includes(o.congestionControl)) {
    throw new ReverstError('ERR_INVALID_OPTION', `congestionControl: one of cubic, reno, bbr (got ${String(o.congestionControl)})`);
  }
  return o;
}

/** The largest UDP payload to send to `host` (an IP literal). */
export function udpPayloadFor(o: QuicTransportOptions, host: string): number {
  return isLoopback(host) ? o.loopbackUdpPayload : o.maxUdpPayload;
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped form: a peer on this machine. */
export function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1' || host.startsWith('::ffff:127.');
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}
