/**
 * The compatibility path: a Node request listener or a user's http.Server (its own
 * 'request', 'upgrade' and 'checkContinue' listeners included) served from a tunnel
 * request. The request is handed to the server over an in-memory connection through
 * node:http's own client, which writes it as HTTP/1.1 and parses the answer back, so
 * the server sees exactly what a socket would bring it. This costs an HTTP round in
 * process that the fetch and forwarder paths do not pay.
 */
import http from 'node:http';
import { Duplex } from 'node:stream';
import type { Logger } from '../shared/log.js';
import { type StreamServer, type TunnelRequest, discardBody, writeResponseHead, writeTextResponse } from './tunnel-request.js';

/** One end of an in-memory connection; what is written to one end is read from the other. */
class PipeEnd extends Duplex {
  peer!: PipeEnd;
  #pendingWrite: (() => void) | undefined;

  constructor(
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {
    super({ allowHalfOpen: true });
  }

  // net.Socket look-alikes that node:http reads or calls.
  readonly localAddress = '127.0.0.1';
  readonly localPort = 0;
  get remoteFamily(): string {
    return this.remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (error?: Error | null) => void): void {
    if (this.peer.destroyed) {
      cb();
      return;
    }
    if (this.peer.push(chunk)) cb();
    else this.#pendingWrite = () => cb();
  }

  override _final(cb: (error?: Error | null) => void): void {
    cb();
    // Both sides done: the connection is over. A FIN to a peer that has finished writing would
    // only make node:http end that side a second time (an error object, stack trace included, per request).
    if (this.peer.writableEnded || this.peer.destroyed) this.destroy();
    else this.peer.push(null);
  }

  override _read(): void {
    // The peer was waiting for us to take more.
    const wake = this.peer.#pendingWrite;
    this.peer.#pendingWrite = undefined;
    wake?.();
  }

  override _destroy(error: Error | null, cb: (error?: Error | null) => void): void {
    const wake = this.#pendingWrite;
    this.#pendingWrite = undefined;
    wake?.();
    // Like a connection reset: the other end goes too.
    if (!this.peer.destroyed) this.peer.destroy();
    cb(error);
  }
}

function pipePair(remoteAddress: string, remotePort: number): [PipeEnd, PipeEnd] {
  const a = new PipeEnd(remoteAddress, remotePort);
  const b = new PipeEnd('127.0.0.1', 0);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/** Serves tunnel requests with `server`'s listeners, as if each came on a connection of its own. */
export function httpServerStreams(server: http.Server, logger: Logger): StreamServer {
  return (request) => serve(server, request, logger);
}

function serve(server: http.Server, { head, stream }: TunnelRequest, logger: Logger): void {
  const address = stream as Duplex & { remoteAddress?: string; remotePort?: number };
  const [client, serverSide] = pipePair(address.remoteAddress ?? '127.0.0.1', address.remotePort ?? 0);
  server.emit('connection', serverSide);

  const headers = [...head.headers, 'Host', head.authority];
  if (head.upgrade) headers.push('Connection', 'Upgrade');
  else if (head.body && !headers.some((h, i) => i % 2 === 0 && h.toLowerCase() === 'content-length')) headers.push('Transfer-Encoding', 'chunked');
  const req = http.request({
    method: head.method,
    path: head.target,
    headers,
    setHost: false,
    createConnection: () => client,
    // The answer is the handler's: whatever header section it writes is relayed.
    maxHeaderSize: 1 << 20,
  });

  let answered = false;
  // The server's answer is over: what it left unread of the body is read and dropped.
  const done = (): void => {
    stream.unpipe(req);
    discardBody(stream);
  };
  const fail = (error: Error): void => {
    // A connection torn down after the answer went out whole (see 'end' below) cuts nothing.
    if (stream.writableEnded) return;
    if (answered) return void stream.destroy();
    answered = true;
    logger.warn('the request handler failed', { method: head.method, url: head.target, error: error.message });
    writeTextResponse(stream, 502, 'bad gateway: the request handler failed');
    done();
  };
  req.on('error', fail);
  // The visitor left (the node reset the stream): the handler's request goes too.
  stream.once('close', () => {
    if (!stream.writableFinished) client.destroy();
  });

  req.on('response', (res: http.IncomingMessage) => {
    answered = true;
    writeResponseHead(stream, res.statusCode ?? 502, res.statusMessage ?? '', res.rawHeaders);
    res.on('data', (chunk: Buffer) => {
      if (!stream.write(chunk)) res.pause();
    });
    stream.on('drain', () => res.resume());
    res.once('end', () => {
      stream.end();
      client.destroy();
      done();
    });
    res.once('error', () => stream.destroy());
  });

  req.on('upgrade', (res: http.IncomingMessage, socket: Duplex, early: Buffer) => {
    answered = true;
    writeResponseHead(stream, 101, res.statusMessage ?? '', res.rawHeaders, true);
    if (early.length > 0) stream.write(early);
    socket.pipe(stream);
    stream.pipe(socket);
    socket.on('error', () => stream.destroy());
    socket.once('close', () => stream.destroy());
  });

  if (head.body) {
    stream.pipe(req);
  } else req.end();
}
