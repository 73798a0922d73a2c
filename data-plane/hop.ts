/**
 * The sending end of the internal hop: a node with no tunnel for a group hands the
 * request to a node holding one. Connections to each node are pooled and carry one
 * exchange at a time in the framing of hop-wire.ts; the request's v2 head travels
 * as it would on a tunnel stream, so the far node only splices it into one.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import { parseHostPort } from '../shared/address.js';
import { sameDigest, sha256 } from '../shared/auth/index.js';
import { ReverstError } from '../shared/errors.js';
import { type RequestHead, splitHead } from '../shared/heads.js';
import type { Logger } from '../shared/log.js';
import type { Far } from './far.js';
import { Answer, ChunkReader, HOP_KEEPALIVE_MS, WireReader, chunkHeader, endOfBody, preamble, shortString } from './hop-wire.js';
import type { HopTarget } from './proxy.js';

export type { HopTarget } from './proxy.js';

/** A constant-time check of the cluster secret (digests hide its length), the secret hashed once. */
export function secretChecker(secret: string): (given: string | undefined) => boolean {
  const expected = sha256(secret);
  return (given) => typeof given === 'string' && sameDigest(given, expected);
}

/** Idle connections to one node kept for reuse; more than this are closed when they come back. */
const MAX_IDLE_PER_NODE = 128;
/** An idle connection unused this long is closed (the far node never closes one itself). */
const IDLE_TIMEOUT_MS = 30_000;
/** A node that accepts no TCP connection within this long is treated as unreachable. */
const CONNECT_TIMEOUT_MS = 5_000;

/** The far node held no tunnel for the group (its route was stale): nothing was processed there. */
export class HopNoTunnelError extends ReverstError {
  override name = 'HopNoTunnelError';
  constructor(node: string) {
    super('ERR_HOP_NO_TUNNEL', `node ${node} holds no tunnel for the group`);
  }
}

/** The far node refused the connection (wrong cluster secret): nothing was processed there. */
export class HopRefusedError extends ReverstError {
  override name = 'HopRefusedError';
  constructor(node: string, reason: string) {
    super('ERR_HOP_REFUSED', `node ${node} refused the hop: ${reason}`);
  }
}

type ReadState = 'answer' | 'head' | 'body' | 'raw' | 'refused' | 'idle';

/** One pooled TCP connection to a node, read by a small state machine for the exchange it carries. */
class HopConnection {
  readonly socket: net.Socket;
  /** Not yet used: the first write carries the preamble. */
  fresh = true;
  idleSince = 0;
  #exchange: HopExchange | undefined;
  #state: ReadState = 'idle';
  readonly #reader = new WireReader();
  #chunks = new ChunkReader();

  constructor(
    socket: net.Socket,
    readonly target: HopTarget,
    private readonly onIdle: (conn: HopConnection) => void,
  ) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => {});
    // The far node ends a connection only as an upgrade's half-close; otherwise it went away (a killed
    // process's connections end with a FIN), and the exchange on it is lost.
    socket.on('end', () => {
      if (this.#state === 'raw') this.#exchange?.responseEnded();
      else socket.destroy();
    });
    socket.on('close', () => this.#exchange?.lost(new Error(`hop connection to ${target.id} closed`)));
  }

  begin(exchange: HopExchange): void {
    this.#exchange = exchange;
    this.#state = 'answer';
    this.#chunks = new ChunkReader();
    this.socket.resume();
  }

  /** The exchange is over both ways: the connection goes back to the pool. */
  release(): void {
    this.#exchange = undefined;
    this.#state = 'idle';
    this.idleSince = performance.now();
    this.onIdle(this);
  }

  #onData(chunk: Buffer): void {
    const exchange = this.#exchange;
    if (!exchange || this.#state === 'idle') {
      // Nothing is asked of the far node: anything it sends breaks the framing.
      this.socket.destroy();
      return;
    }
    if (this.#state === 'raw') {
      exchange.deliver(chunk);
      return;
    }
    if (this.#state === 'body') {
      this.#body(exchange, chunk);
      return;
    }
    this.#reader.push(chunk);
    if (this.#state === 'answer') {
      const kind = this.#reader.takeByte();
      if (kind === undefined) return;
      if (kind === Answer.Response) this.#state = 'head';
      else if (kind === Answer.NoTunnel) {
        this.#state = 'idle';
        exchange.noTunnel();
        // Nothing may follow that answer: bytes that do show the far node out of step, and the connection with it.
        if (this.#reader.drain().length > 0) this.socket.destroy();
        return;
      } else if (kind === Answer.Refused) this.#state = 'refused';
      else {
        exchange.lost(new Error(`node ${this.target.id} sent an unknown hop answer 0x${kind.toString(16)}`));
        return;
      }
    }
    if (this.#state === 'refused') {
      const reason = this.#reader.takeString();
      if (reason !== undefined) exchange.lost(new HopRefusedError(this.target.id, reason));
      return;
    }
    if (this.#state === 'head') {
      let head: Buffer | undefined;
      try {
        head = this.#reader.takeHead(splitHead);
      } catch (error) {
        exchange.lost(error as Error);
        return;
      }
      if (!head) return;
      exchange.deliver(head);
      this.#state = exchange.upgrade ? 'raw' : 'body';
      const rest = this.#reader.drain();
      if (rest.length > 0) this.#onData(rest);
    }
  }

  #body(exchange: HopExchange, chunk: Buffer): void {
    const after = this.#chunks.feed(chunk, (data) => exchange.deliver(data));
    if (after === undefined) return;
    this.#state = 'idle';
    if (after.length > 0) return void this.socket.destroy();
    exchange.responseEnded();
  }
}

/**
 * One request's exchange on a pooled connection, as the duplex the request object
 * writes its head and body to and reads the response head and body from.
 */
class HopExchange extends Duplex {
  readonly upgrade: boolean;
  readonly #conn: HopConnection;
  readonly #prefix: Buffer;
  readonly #bodied: boolean;
  #headSent = false;
  #requestDone = false;
  #responseDone = false;
  #released = false;

  constructor(conn: HopConnection, group: string, head: RequestHead, secret: string, selfId: string) {
    super({ allowHalfOpen: true });
    this.#conn = conn;
    this.upgrade = head.upgrade;
    this.#bodied = head.body && !head.upgrade;
    const group_ = shortString(group);
    this.#prefix = conn.fresh ? Buffer.concat([preamble(secret, selfId), group_]) : group_;
    conn.fresh = false;
    conn.begin(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    const { socket } = this.#conn;
    let ok: boolean;
    if (!this.#headSent) {
      // The first write is the request head: with the group (and a new connection's preamble) in one packet.
      this.#headSent = true;
      ok = socket.write(Buffer.concat([this.#prefix, chunk]));
    } else if (!this.#bodied) ok = socket.write(chunk);
    else {
      socket.cork();
      socket.write(chunkHeader(chunk.length));
      ok = socket.write(chunk);
      socket.uncork();
    }
    if (ok) cb();
    else socket.once('drain', () => cb());
  }

  override _final(cb: (error?: Error | null) => void): void {
    const { socket } = this.#conn;
    if (this.upgrade) socket.end();
    else if (this.#bodied) socket.write(endOfBody());
    this.#requestDone = true;
    this.#maybeRelease();
    cb();
  }

  override _read(): void {
    this.#conn.socket.resume();
  }

  override _destroy(error: Error | null, cb: (error?: Error | null) => void): void {
    // Abandoned before both directions completed: the framing is lost, and so is the connection.
    if (!this.#released) this.#conn.socket.destroy();
    cb(error);
  }

  deliver(data: Buffer): void {
    if (!this.push(data)) this.#conn.socket.pause();
  }

  responseEnded(): void {
    this.#responseDone = true;
    this.push(null);
    this.#maybeRelease();
  }

  noTunnel(): void {
    this.#responseDone = true;
    // Nothing was served: if the request went out whole, the connection is still in step and can be reused.
    this.#maybeRelease();
    this.destroy(new HopNoTunnelError(this.#conn.target.id));
  }

  lost(error: Error): void {
    if (!this.destroyed) this.destroy(error);
  }

  #maybeRelease(): void {
    if (this.#released || !this.#requestDone || !this.#responseDone || this.upgrade) return;
    this.#released = true;
    this.#conn.release();
  }
}

class HopFar implements Far {
  readonly kind = 'hop';

  constructor(
    readonly stream: HopExchange,
    readonly label: string,
  ) {
    // Failures are seen by the request reading it; one arriving between its listeners must not crash the node.
    stream.on('error', () => {});
  }

  unprocessed(error: unknown): boolean {
    return error instanceof HopNoTunnelError || error instanceof HopRefusedError;
  }

  abandon(): void {
    if (!this.stream.destroyed) this.stream.destroy();
  }
}

/** Sends requests to other nodes over pooled connections, one exchange per connection at a time. */
export class HopClient {
  readonly #idle = new Map<string, HopConnection[]>();
  readonly #open = new Set<net.Socket>();
  readonly #sweep: NodeJS.Timeout;
  #closed = false;

  constructor(
    private readonly selfId: string,
    private readonly secret: string,
    private readonly log: Logger,
  ) {
    this.#sweep = setInterval(() => this.#closeIdle(), IDLE_TIMEOUT_MS / 3).unref();
  }

  /** A connection to `target` (pooled or new) carrying the exchange for `head`. Rejects if the node cannot be reached. */
  async open(target: HopTarget, group: string, head: RequestHead): Promise<Far> {
    const conn = this.#takeIdle(target) ?? (await this.#dial(target));
    return new HopFar(new HopExchange(conn, group, head, this.secret, this.selfId), `node ${target.id}`);
  }

  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const socket of this.#open) socket.destroy();
    this.#idle.clear();
    return Promise.resolve();
  }

  #takeIdle(target: HopTarget): HopConnection | undefined {
    const idle = this.#idle.get(target.address);
    // Last in, first out: the connection least likely to have gone stale.
    for (let conn = idle?.pop(); conn; conn = idle?.pop()) if (!conn.socket.destroyed) return conn;
    return undefined;
  }

  #dial(target: HopTarget): Promise<HopConnection> {
    if (this.#closed) return Promise.reject(new Error('hop client closed'));
    const { host, port } = parseHostPort(target.address);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: HOP_KEEPALIVE_MS });
      const timer = setTimeout(
        () => socket.destroy(new Error(`no connection to node ${target.id} at ${target.address} within ${CONNECT_TIMEOUT_MS} ms`)),
        CONNECT_TIMEOUT_MS,
      );
      const failed = (error: Error): void => {
        clearTimeout(timer);
        this.log.debug('hop connection failed', { node: target.id, error: error.message });
        reject(error);
      };
      socket.once('error', failed);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', failed);
        this.#open.add(socket);
        socket.once('close', () => {
          this.#open.delete(socket);
          const idle = this.#idle.get(target.address);
          const at = idle?.findIndex((c) => c.socket === socket) ?? -1;
          if (at >= 0) idle!.splice(at, 1);
        });
        resolve(new HopConnection(socket, target, (conn) => this.#toIdle(conn)));
      });
    });
  }

  #toIdle(conn: HopConnection): void {
    let idle = this.#idle.get(conn.target.address);
    if (!idle) this.#idle.set(conn.target.address, (idle = []));
    if (this.#closed || idle.length >= MAX_IDLE_PER_NODE) conn.socket.destroy();
    else idle.push(conn);
  }

  #closeIdle(): void {
    const cutoff = performance.now() - IDLE_TIMEOUT_MS;
    for (const idle of this.#idle.values()) {
      for (const conn of idle.filter((c) => c.idleSince < cutoff)) conn.socket.destroy();
    }
  }
}
