import type dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { ReverstError } from '../errors.js';
import { buildConfig } from './config.js';
import { QuicConnection, type CloseOptions, type HostPort, type PacketSink } from './connection.js';
import { QuicError } from './errors.js';
import { quiche, PACKET_TYPE_INITIAL, type Config } from './native.js';
import { isLoopback, parseQuicOptions, type QuicTransportOptions, type QuicTransportOverrides, type TlsOptions } from './options.js';
import { RETRY_TOKEN_LIFETIME_MS, RetryTokens } from './retry-token.js';
import { randomId } from './buffers.js';
import { bindUdp } from './socket.js';

/** Length of the connection ids we issue; short-header packets are routed by it. */
const CID_LEN = 20;
/** RFC 9000 §14.1: a client's first datagram is padded to at least 1200 bytes. */
const MIN_INITIAL_SIZE = 1200;
/**
 * Handshakes in progress at once, and how long one may take: an Initial that
 * is accepted allocates quiche state before the peer has proved anything.
 */
export const MAX_PENDING_HANDSHAKES = 1024;
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Above this many handshakes in progress, a new client must first prove its
 * address with a stateless Retry (one more round trip, no state kept). Spoofed
 * Initials then cannot fill the handshake slots, while a burst of real clients
 * (every tunnel of a restarted node dialling back at once) still gets in.
 */
export const DEFAULT_RETRY_ABOVE_PENDING = 256;
/**
 * Datagrams that may open a connection wait here for their turn instead of being handled as
 * they are read: each costs a TLS handshake step, and a burst of thousands (every tunnel of a
 * restarted node dialling back) handled inline overflows the socket's receive buffer, so most
 * are dropped and their clients back off for seconds. Beyond this many, new ones are dropped.
 */
const MAX_QUEUED_OPENINGS = 16_384;
/** Initials answered with a Retry that are remembered (about 3 MB at most). */
const MAX_RETRIED_REMEMBERED = 65_536;
/** Handshake work per loop turn before the socket is read again. */
const OPENING_BUDGET_MS = 0.5;
/**
 * libuv reads at most this many datagrams from a socket per turn of the loop. A turn that got
 * that many likely left more in the socket: then only one opening is handled before reading
 * again, so a burst is taken into the queue (cheap) before its handshakes (dear) are done.
 */
const READS_PER_TURN = 32;

/**
 * Connection turns run per loop turn before the socket is read again. Normally all of them fit;
 * in a storm of handshakes thousands are due at once, and running them all before reading again
 * overflows the socket's receive buffer.
 */
const TURN_BUDGET_MS = 2;

interface Opening {
  msg: Buffer;
  rinfo: dgram.RemoteInfo;
  key: string;
  /** When it arrived (Date.now()): a token is judged as of then, not after its wait here. */
  at: number;
}

export interface QuicServerOptions extends QuicTransportOverrides, TlsOptions {
  alpn: string[];
  host?: string | undefined;
  port?: number | undefined;
  /** Handshakes in progress above which new clients get a Retry first (0: always; MAX_PENDING_HANDSHAKES or more: never). */
  retryAbovePending?: number | undefined;
}

/**
 * A QUIC server endpoint: one UDP socket, connections routed by destination
 * connection id. Emits 'connection' once a handshake completes.
 */
export class QuicServer extends EventEmitter implements PacketSink {
  readonly #socket: dgram.Socket;
  /** For peers across a network, and for peers on this machine (larger packets). */
  readonly #config: Config;
  readonly #loopbackConfig: Config;
  readonly #options: QuicTransportOptions;
  readonly #local: HostPort;
  readonly #routes = new Map<string, QuicConnection>();
  readonly #routeKeys = new Map<QuicConnection, string[]>();
  readonly #connections = new Set<QuicConnection>();
  readonly #tokens = new RetryTokens();
  readonly #retryAbove: number;
  #closing = false;
  #pending = 0;
  // Openings waiting (a queue read from #openingsHead), and their routing keys, so a client's
  // retransmissions of an Initial still waiting are not queued again.
  #openings: (Opening | undefined)[] = [];
  #openingsHead = 0;
  readonly #queuedKeys = new Set<string>();
  #openingsScheduled = false;
  // Ids of Initials answered with a Retry, and until when that holds (see #accept).
  readonly #retried = new Map<string, number>();
  #readsSinceOpenings = 0;
  // Connections waiting for their turn (see runSoon), a queue read from #turnsHead.
  #turns: (QuicConnection | undefined)[] = [];
  #turnsHead = 0;
  #turnsScheduled = false;

  private constructor(socket: dgram.Socket, configs: { network: Config; loopback: Config }, options: QuicTransportOptions, retryAbove: number) {
    super();
    this.#socket = socket;
    this.#config = configs.network;
    this.#loopbackConfig = configs.loopback;
    this.#options = options;
    this.#retryAbove = retryAbove;
    const a = socket.address();
    this.#local = { host: a.address, port: a.port };
    socket.on('message', this.#onMessage);
    // ICMP errors for one client's address must not take the endpoint down.
    socket.on('error', () => {});
  }

  static async listen(opts: QuicServerOptions): Promise<QuicServer> {
    if (!opts.key || !opts.cert) throw new ReverstError('ERR_INVALID_OPTION', 'QUIC server: key and cert (PEM) are required');
    const options = parseQuicOptions(opts);
    const retryAbove = opts.retryAbovePending ?? DEFAULT_RETRY_ABOVE_PENDING;
    if (!Number.isInteger(retryAbove) || retryAbove < 0)
      throw new ReverstError('ERR_INVALID_OPTION', `retryAbovePending: expected a non-negative integer, got ${String(retryAbove)}`);
    const configs = {
      network: buildConfig(options, opts, true, options.maxUdpPayload),
      loopback: buildConfig(options, opts, true, options.loopbackUdpPayload),
    };
    const socket = await bindUdp(opts.host ?? '127.0.0.1', opts.port ?? 0, options.socketBuffer);
    return new QuicServer(socket, configs, options, retryAbove);
  }

  address(): HostPort {
    return { ...this.#local };
  }

  get connections(): ReadonlySet<QuicConnection> {
    return this.#connections;
  }

  /** Handshakes started and not yet finished or given up. */
  get pendingHandshakes(): number {
    return this.#pending;
  }

  /** Stop accepting, close every connection (after `graceMs` for open streams), then the socket. */
  async close(options: CloseOptions = {}): Promise<void> {
    this.#closing = true;
    this.#openings = [];
    this.#openingsHead = 0;
    this.#queuedKeys.clear();
    await Promise.all(
      [...this.#connections].map((c) => {
        // Failed or half-done handshakes, and connections already draining, have
        // nothing left to finish: don't wait out their drain period.
        if (!c.established || c.isClosing) c.abort(new QuicError('ERR_QUIC_CLOSED', 'server closed'));
        return c.close(options);
      }),
    );
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }

  sendPacket(buf: Buffer, offset: number, length: number, to: HostPort): void {
    this.#socket.send(buf, offset, length, to.port, to.host);
  }

  runSoon(conn: QuicConnection): void {
    this.#turns.push(conn);
    if (this.#turnsScheduled) return;
    this.#turnsScheduled = true;
    setImmediate(this.#runTurns);
  }

  /** Runs the connections' turns for TURN_BUDGET_MS; those scheduled meanwhile wait for the next loop turn, as with setImmediate. */
  readonly #runTurns = (): void => {
    this.#turnsScheduled = false;
    const until = performance.now() + TURN_BUDGET_MS;
    const end = this.#turns.length;
    while (this.#turnsHead < end) {
      const conn = this.#turns[this.#turnsHead]!;
      this.#turns[this.#turnsHead++] = undefined;
      conn.runTurn();
      if (performance.now() >= until) break;
    }
    if (this.#turnsHead === this.#turns.length) {
      this.#turns = [];
      this.#turnsHead = 0;
      return;
    }
    if (this.#turnsHead > 1024 && this.#turnsHead * 2 > this.#turns.length) {
      this.#turns = this.#turns.slice(this.#turnsHead);
      this.#turnsHead = 0;
    }
    this.#turnsScheduled = true;
    setImmediate(this.#runTurns);
  };

  release(conn: QuicConnection): void {
    this.#connections.delete(conn);
    for (const key of this.#routeKeys.get(conn) ?? []) this.#routes.delete(key);
    this.#routeKeys.delete(conn);
  }

  readonly #onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    this.#readsSinceOpenings++;
    const key = routingKey(msg);
    if (key === undefined) return;
    const conn = this.#routes.get(key);
    if (conn) {
      conn.receive(msg, { host: rinfo.address, port: rinfo.port });
      return;
    }
    // Short-header packets for unknown ids (a connection we dropped) are ignored.
    if (this.#closing || (msg[0]! & 0x80) === 0 || this.#queuedKeys.has(key)) return;
    if (this.#openings.length - this.#openingsHead >= MAX_QUEUED_OPENINGS) return;
    this.#openings.push({ msg, rinfo, key, at: Date.now() });
    this.#queuedKeys.add(key);
    this.#scheduleOpenings();
  };

  #scheduleOpenings(): void {
    if (this.#openingsScheduled || this.#openingsHead === this.#openings.length) return;
    this.#openingsScheduled = true;
    setImmediate(this.#handleOpenings);
  }

  /** Works through waiting openings for OPENING_BUDGET_MS, while handshake slots are free. */
  readonly #handleOpenings = (): void => {
    this.#openingsScheduled = false;
    const until = this.#readsSinceOpenings >= READS_PER_TURN ? 0 : performance.now() + OPENING_BUDGET_MS;
    this.#readsSinceOpenings = 0;
    // A full set of handshakes resumes this when one of them settles.
    while (this.#openingsHead < this.#openings.length && this.#pending < MAX_PENDING_HANDSHAKES && !this.#closing) {
      const { msg, rinfo, key, at } = this.#openings[this.#openingsHead]!;
      this.#openings[this.#openingsHead++] = undefined;
      this.#queuedKeys.delete(key);
      const conn = this.#routes.get(key) ?? this.#accept(msg, rinfo, key, at);
      conn?.receive(msg, { host: rinfo.address, port: rinfo.port });
      if (performance.now() >= until) break;
    }
    if (this.#openingsHead === this.#openings.length) {
      this.#openings = [];
      this.#openingsHead = 0;
    } else if (this.#openingsHead > 1024 && this.#openingsHead * 2 > this.#openings.length) {
      this.#openings = this.#openings.slice(this.#openingsHead);
      this.#openingsHead = 0;
    }
    if (this.#pending < MAX_PENDING_HANDSHAKES) this.#scheduleOpenings();
  };

  #accept(msg: Buffer, rinfo: dgram.RemoteInfo, key: string, arrivedAt: number): QuicConnection | undefined {
    let header;
    try {
      header = quiche.Header.fromSlice(msg, CID_LEN);
    } catch {
      return undefined; // not QUIC
    }
    if (!quiche.versionIsSupported(header.version)) {
      const out = Buffer.allocUnsafe(this.#options.maxUdpPayload);
      const len = quiche.negotiateVersion(header.scid, header.dcid, out);
      this.#socket.send(out, 0, len, rinfo.port, rinfo.address);
      return undefined;
    }
    if (header.ty !== PACKET_TYPE_INITIAL || msg.length < MIN_INITIAL_SIZE) return undefined;
    const remote = { host: rinfo.address, port: rinfo.port };
    // The answer to our Retry carries its token and is addressed to the id the Retry gave,
    // which stays ours. A token we cannot vouch for (forged, stale, from before a restart)
    // counts as none: such a client gets what any other would.
    const odcid = header.token && header.token.length > 0 ? (this.#tokens.validate(header.token, header.dcid, remote, arrivedAt) ?? null) : null;
    // A client that was sent a Retry expects the handshake to name it; a copy of its first
    // Initial accepted later (its retransmission, once fewer handshakes are in progress) would
    // not, and the client would fail it (TRANSPORT_PARAMETER_ERROR). Such copies get the Retry again.
    if (!odcid && (this.#pending >= this.#retryAbove || this.#wasRetried(key))) {
      this.#sendRetry(header, remote, key);
      return undefined;
    }
    const scid = odcid ? Buffer.from(header.dcid) : randomId(CID_LEN);
    const onThisMachine = isLoopback(remote.host);
    let native;
    try {
      native = quiche.Connection.accept(scid, odcid, this.#local, remote, onThisMachine ? this.#loopbackConfig : this.#config);
    } catch {
      return undefined; // quiche refused the Initial: nothing to keep
    }
    const conn = new QuicConnection(native, {
      isServer: true,
      options: this.#options,
      sink: this,
      remote,
      local: this.#local,
      sendPayload: onThisMachine ? this.#options.loopbackUdpPayload : this.#options.maxUdpPayload,
    });
    // Initials keep arriving on the client's chosen id; later packets use ours (after a Retry, one and the same).
    const keys = odcid ? [key] : [key, scid.toString('latin1')];
    for (const k of keys) this.#routes.set(k, conn);
    this.#routeKeys.set(conn, keys);
    this.#connections.add(conn);
    this.#pending++;
    const timer = setTimeout(
      () => conn.abort(new QuicError('ERR_QUIC_CONNECT_TIMEOUT', `handshake with ${remote.host}:${remote.port} not done within ${HANDSHAKE_TIMEOUT_MS} ms`)),
      HANDSHAKE_TIMEOUT_MS,
    );
    timer.unref();
    const settled = (): void => {
      clearTimeout(timer);
      this.#pending--;
      this.#scheduleOpenings();
    };
    conn.once('established', () => {
      settled();
      this.emit('connection', conn);
    });
    void conn.closed.then(() => {
      if (!conn.established) settled();
    });
    return conn;
  }

  /** Answer an Initial with a Retry: a new id to use and a token that proves the address. */
  /** Whether an Initial on this id was answered with a Retry recently (RETRY_TOKEN_LIFETIME_MS). */
  #wasRetried(key: string): boolean {
    const until = this.#retried.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#retried.delete(key);
    return false;
  }

  #sendRetry(header: { scid: Uint8Array; dcid: Uint8Array; version: number }, remote: HostPort, key: string): void {
    // Oldest first out: a flood of spoofed Initials cannot grow this past its cap.
    if (this.#retried.size >= MAX_RETRIED_REMEMBERED) this.#retried.delete(this.#retried.keys().next().value!);
    this.#retried.set(key, Date.now() + RETRY_TOKEN_LIFETIME_MS);
    if (header.dcid.length > CID_LEN) return;
    const out = Buffer.allocUnsafe(this.#options.maxUdpPayload);
    const retryScid = randomId(CID_LEN);
    let len: number;
    try {
      len = quiche.retry(header.scid, header.dcid, retryScid, this.#tokens.issue(header.dcid, retryScid, remote), header.version, out);
    } catch {
      return;
    }
    this.#socket.send(out, 0, len, remote.port, remote.host);
  }
}

/** The destination connection id as a map key, parsed without calling into quiche. */
function routingKey(msg: Buffer): string | undefined {
  if (msg.length < 1 + CID_LEN) return undefined;
  if ((msg[0]! & 0x80) === 0) return msg.toString('latin1', 1, 1 + CID_LEN);
  const len = msg[5]!;
  if (len > CID_LEN || msg.length < 6 + len) return undefined;
  return msg.toString('latin1', 6, 6 + len);
}
