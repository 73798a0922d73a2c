/**
 * The receiving end of the internal hop: requests other nodes forward here for a
 * group whose tunnel this node holds, served from local tunnels only. Each
 * connection proves the cluster secret once (constant-time) and then carries one
 * exchange at a time in the framing of hop-wire.ts.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Readable } from 'node:stream';
import { ProtocolError } from '../shared/errors.js';
import { type RequestHead, type ResponseHead, decodeRequestHead, encodeResponseHead, splitHead } from '../shared/heads.js';
import { type Logger, silentLogger } from '../shared/log.js';
import { clip, type RateLimitedLog, rateLimited } from '../shared/log-limits.js';
import { secretChecker } from './hop.js';
import { Answer, ChunkReader, HOP_KEEPALIVE_MS, HOP_MAGIC, WireReader, chunkHeader, endOfBody, shortString } from './hop-wire.js';
import type { Metrics } from './metrics.js';
import type { PublicProxy } from './proxy.js';
import type { ProxyError } from './proxy-errors.js';
import { type Visitor, relay } from './visitors.js';

/** How long a new connection has to prove the cluster secret before it is closed. */
export const DEFAULT_PREAMBLE_TIMEOUT_MS = 10_000;

export interface HopListenerDeps {
  /** Shared by the cluster's nodes; a connection without it is refused and carries nothing. */
  secret: string;
  /** DEFAULT_PREAMBLE_TIMEOUT_MS when unset. */
  preambleTimeoutMs?: number | undefined;
  metrics: Metrics;
  proxy: Pick<PublicProxy, 'serveHop'>;
  /** Called for each request served, so a drain can wait for it. */
  track(request: { once(event: 'close', listener: () => void): unknown }): void;
  logger?: Logger | undefined;
}

/** The hop's TCP listener; `closeAllConnections()` drops every hop connection (as http.Server's does). */
export class HopListener extends net.Server {
  readonly #sockets = new Set<net.Socket>();

  constructor(deps: HopListenerDeps) {
    // Keep-alive probes: a sender whose host vanished without a FIN or RST would otherwise
    // leave its pooled connections open here for good.
    super({ allowHalfOpen: true, noDelay: true, keepAlive: true, keepAliveInitialDelay: HOP_KEEPALIVE_MS });
    const secretMatches = secretChecker(deps.secret);
    // Anyone who can reach the port can make these: a flood of them costs a few lines.
    const warnings = rateLimited(deps.logger ?? silentLogger, { summary: 'hop warnings not logged (rate limit)' });
    const preambleTimeoutMs = deps.preambleTimeoutMs ?? DEFAULT_PREAMBLE_TIMEOUT_MS;
    this.on('connection', (socket: net.Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
      new HopSession(socket, deps, secretMatches, warnings, preambleTimeoutMs);
    });
  }

  closeAllConnections(): void {
    for (const socket of this.#sockets) socket.destroy();
  }
}

export function createHopListener(deps: HopListenerDeps): HopListener {
  return new HopListener(deps);
}

type SessionState = 'preamble' | 'request' | 'body' | 'raw' | 'busy';

/** One hop connection: its preamble, then requests one after another. */
class HopSession {
  #state: SessionState = 'preamble';
  readonly #reader = new WireReader();
  #chunks = new ChunkReader();
  #body: Readable | undefined;
  #visitor: HopVisitor | undefined;
  #requestDone = false;

  readonly #preambleTimer: NodeJS.Timeout;

  constructor(
    readonly socket: net.Socket,
    private readonly deps: HopListenerDeps,
    private readonly secretMatches: (given: string | undefined) => boolean,
    private readonly warnings: RateLimitedLog,
    preambleTimeoutMs: number,
  ) {
    // A connection that never proves the secret holds a socket for nothing.
    this.#preambleTimer = setTimeout(() => socket.destroy(), preambleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    // The sending node half-closes only an upgrade's stream; any other end means it went away.
    socket.on('end', () => {
      if (this.#state === 'raw') this.#body?.push(null);
      else socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(this.#preambleTimer);
      this.#body?.destroy();
      this.#visitor?.gone();
    });
  }

  #onData(chunk: Buffer): void {
    try {
      if (this.#state === 'raw') return void this.#deliver(chunk);
      if (this.#state === 'body') {
        this.#bodyData(chunk);
        return;
      }
      if (this.#state === 'busy') throw new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', 'hop request before the previous one finished');
      this.#reader.push(chunk);
      if (this.#state === 'preamble' && !this.#preamble()) return;
      if (this.#state === 'request') this.#request();
    } catch (error) {
      this.deps.metrics.hopReceived.inc({ result: 'bad_request' });
      this.warnings.warn('malformed hop request: connection closed', { remote: this.socket.remoteAddress, error: clip((error as Error).message, 200) });
      this.socket.destroy();
    }
  }

  /** True once the preamble is read and the secret checked. */
  #preamble(): boolean {
    const r = this.#reader;
    const start = r.checkpoint();
    const magic = r.takeBytes(HOP_MAGIC.length);
    if (magic && !magic.equals(HOP_MAGIC)) {
      this.#refuse('not a reverst hop peer (expected the RVSTHOP2 preamble)');
      return false;
    }
    const secret = magic && r.takeString();
    const from = secret === undefined ? undefined : r.takeString();
    if (from === undefined || secret === undefined) {
      r.rollback(start);
      return false;
    }
    if (!this.secretMatches(secret)) {
      this.deps.metrics.hopReceived.inc({ result: 'unauthorized' });
      this.warnings.warn('hop connection refused: wrong cluster secret', { remote: this.socket.remoteAddress, from: clip(from) });
      this.#refuse('wrong cluster secret');
      return false;
    }
    clearTimeout(this.#preambleTimer);
    this.#state = 'request';
    return true;
  }

  #refuse(reason: string): void {
    this.#state = 'busy';
    this.socket.end(Buffer.concat([Buffer.from([Answer.Refused]), shortString(reason)]));
  }

  #request(): void {
    const r = this.#reader;
    const start = r.checkpoint();
    const group = r.takeString();
    const frame = group === undefined ? undefined : r.takeHead(splitHead);
    if (group === undefined || frame === undefined) {
      r.rollback(start);
      return;
    }
    this.#start(group, decodeRequestHead(splitHead(frame)!.payload), frame);
    const rest = r.drain();
    if (rest.length > 0) this.#onData(rest);
  }

  #start(group: string, head: RequestHead, headBytes: Buffer): void {
    const visitor = new HopVisitor(this, head.upgrade);
    this.#visitor = visitor;
    this.#requestDone = !head.body && !head.upgrade;
    this.#body = this.#requestDone ? undefined : new Readable({ read: () => void this.socket.resume() });
    this.#chunks = new ChunkReader();
    this.#state = head.upgrade ? 'raw' : head.body ? 'body' : 'busy';
    this.deps.metrics.hopReceived.inc({ result: 'served' });
    this.deps.track(visitor);
    this.deps.proxy.serveHop({ group, head, headBytes, body: this.#body, visitor });
  }

  #deliver(data: Buffer): void {
    if (this.#body && !this.#body.push(data)) this.socket.pause();
  }

  #bodyData(chunk: Buffer): void {
    const after = this.#chunks.feed(chunk, (data) => this.#deliver(data));
    if (after === undefined) return;
    this.#body?.push(null);
    this.#requestDone = true;
    this.#state = 'busy';
    if (after.length > 0) throw new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', 'hop request before the previous one finished');
    this.#maybeNext();
  }

  /** The response went out whole. */
  responseEnded(): void {
    this.#visitor = undefined;
    this.#maybeNext();
  }

  #maybeNext(): void {
    if (!this.#requestDone || this.#visitor) return;
    this.#body = undefined;
    this.#state = 'request';
    this.socket.resume();
  }
}

/** The answer to a hop request, written back on its connection. */
class HopVisitor extends EventEmitter implements Visitor {
  #started = false;
  #completed = false;
  #closed = false;

  constructor(
    private readonly session: HopSession,
    private readonly raw: boolean,
  ) {
    super();
  }

  get started(): boolean {
    return this.#started;
  }

  get completed(): boolean {
    return this.#completed;
  }

  onClose(done: () => void): void {
    this.once('close', done);
  }

  respond(head: ResponseHead, rest: Buffer, far: Readable, _expectBody: boolean, fail: (error: Error) => void): void {
    const { socket } = this.session;
    this.#started = true;
    // The answer, the head and what follows within this turn (often the whole body and its end) in one write.
    socket.cork();
    setImmediate(() => socket.uncork());
    socket.write(Buffer.concat([ANSWER_RESPONSE, encodeResponseHead(head)]));
    if (this.raw) {
      relay(rest, far, socket, undefined, () => this.#complete(() => socket.end()), fail);
      return;
    }
    const sink = {
      write: (chunk: Buffer): boolean => {
        socket.cork();
        socket.write(chunkHeader(chunk.length));
        const ok = socket.write(chunk);
        socket.uncork();
        return ok;
      },
      once: (event: 'drain', listener: () => void) => socket.once(event, listener),
    };
    relay(rest, far, sink, undefined, () => this.#complete(() => socket.write(endOfBody())), fail);
  }

  reply(error: ProxyError): void {
    const { socket } = this.session;
    if (this.#started || socket.destroyed) {
      this.cut();
      return;
    }
    this.#started = true;
    if (error.noTunnelHere) {
      this.#complete(() => socket.write(Buffer.from([Answer.NoTunnel])));
      return;
    }
    const body = Buffer.from(`${error.body}\n`);
    const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(body.length)];
    for (const [name, value] of Object.entries(error.headers)) headers.push(name, value);
    const head = encodeResponseHead({ status: error.status, reason: '', headers });
    this.#complete(() =>
      socket.write(Buffer.concat(this.raw ? [ANSWER_RESPONSE, head, body] : [ANSWER_RESPONSE, head, chunkHeader(body.length), body, endOfBody()])),
    );
    if (this.raw) socket.end();
  }

  cut(): void {
    this.session.socket.destroy();
  }

  /** The connection closed before the response was whole. */
  gone(): void {
    this.#close();
  }

  #complete(write: () => void): void {
    write();
    this.#completed = true;
    this.#close();
    if (!this.raw) this.session.responseEnded();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close');
  }
}

const ANSWER_RESPONSE = Buffer.from([Answer.Response]);
