/**
 * Where a proxied request's answer goes: the public visitor's HTTP response, the
 * raw socket of a visitor's Upgrade request, or (hop-listener.ts) another node's
 * hop exchange. The request object (proxy.ts) drives each the same way.
 */
import type { ServerResponse } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import { ReverstError } from '../shared/errors.js';
import type { ResponseHead } from '../shared/heads.js';
import { rawTextResponse, responseHeadText, stopsHere } from '../shared/http.js';
import type { ProxyError } from './proxy-errors.js';

export interface Visitor {
  /** The response began: the node can no longer answer by itself. */
  readonly started: boolean;
  /** The whole response went out. */
  readonly completed: boolean;
  /** `done` runs once, when the visitor's side of the exchange is over (answered, cut or gone). */
  onClose(done: () => void): void;
  /**
   * Relays the far side's response: its head, the bytes that came with it, then the
   * rest of `far` to its end. `fail` is called if the relay breaks.
   */
  respond(head: ResponseHead, rest: Buffer, far: Readable, expectBody: boolean, fail: (error: Error) => void): void;
  /** The node's own answer, when nothing was sent yet. */
  reply(error: ProxyError): void;
  /** Cuts a response under way, so the visitor cannot mistake it for a whole one. */
  cut(): void;
}

/** A response relayed in full or not at all: more or fewer bytes than its Content-Length is a broken one. */
export class LengthMismatchError extends ReverstError {
  override name = 'LengthMismatchError';
  constructor(message: string) {
    super('ERR_PROXY_LENGTH_MISMATCH', message);
  }
}

/** The body length a response head declares (checked by responseProblem), if it declares one. */
function declaredLength(head: ResponseHead): number | undefined {
  for (let i = 0; i < head.headers.length; i += 2) {
    if (head.headers[i]!.toLowerCase() === 'content-length') return Number(head.headers[i + 1]);
  }
  return undefined;
}

/**
 * Why a far side's response head cannot go to a visitor, if it cannot: a 101 to a request
 * that asked for no upgrade, or a Content-Length that is not one decimal number (RFC 9110
 * §8.6). Passed on, either would let the visitor, or a proxy in front of the node, read
 * the response's end somewhere else than the node does.
 */
export function responseProblem(head: ResponseHead, upgradeAsked: boolean): string | undefined {
  if (head.status === 101 && !upgradeAsked) return 'a 101 to a request that asked for no upgrade';
  let length: string | undefined;
  for (let i = 0; i < head.headers.length; i += 2) {
    if (head.headers[i]!.toLowerCase() !== 'content-length') continue;
    const value = head.headers[i + 1]!;
    if (!/^\d{1,15}$/.test(value)) return `Content-Length ${JSON.stringify(value.slice(0, 40))} is not a length`;
    if (length !== undefined && Number(value) !== Number(length)) return 'two different Content-Lengths';
    length = value;
  }
  return undefined;
}

/** What a response body is copied into: a ServerResponse, a socket, or the hop's chunk framing. */
export interface Sink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * Copies `far` into `to` after `first`, with backpressure: a plain pipe that also
 * holds the body to its declared length. Calls `end` when `far` ends whole.
 */
export function relay(first: Buffer, far: Readable, to: Sink, expected: number | undefined, end: () => void, fail: (error: Error) => void): void {
  let sent = 0;
  let waiting = false;
  const resume = (): void => {
    waiting = false;
    far.resume();
  };
  const write = (chunk: Buffer): void => {
    sent += chunk.length;
    if (expected !== undefined && sent > expected) {
      far.off('data', write);
      fail(new LengthMismatchError(`the response body ran past its Content-Length of ${expected}`));
      return;
    }
    if (!to.write(chunk) && !waiting) {
      waiting = true;
      far.pause();
      to.once('drain', resume);
    }
  };
  const onEnd = (): void => {
    if (expected !== undefined && sent < expected)
      fail(new LengthMismatchError(`the response body ended ${expected - sent} bytes short of its Content-Length`));
    else end();
  };
  if (first.length > 0) write(first);
  // The far side's FIN may have come with the head: then there is nothing more to wait for.
  if (far.readableEnded) {
    onEnd();
    return;
  }
  far.on('data', write);
  far.once('end', onEnd);
  if (!waiting) far.resume();
}

/**
 * node:http frames the visitor's response itself: the far side's framing headers stop here,
 * and a Content-Length repeated (with the same value: see responseProblem) goes out once.
 */
function forwardable(headers: string[], upgrade: boolean): string[] {
  const out: string[] = [];
  let length = false;
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase();
    if (stopsHere(lower, upgrade) || (lower === 'content-length' && length)) continue;
    length ||= lower === 'content-length';
    out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

/** The public visitor of an ordinary request: node:http's ServerResponse. */
export class ResponseVisitor implements Visitor {
  constructor(readonly res: ServerResponse) {}

  get started(): boolean {
    return this.res.headersSent;
  }

  get completed(): boolean {
    return this.res.writableFinished;
  }

  onClose(done: () => void): void {
    this.res.once('close', done);
  }

  respond(head: ResponseHead, rest: Buffer, far: Readable, expectBody: boolean, fail: (error: Error) => void): void {
    const { res } = this;
    // node:http sends the head with the first body bytes (or the end) in one write. Bytes that
    // came with the head go at once; a head that came alone (an event stream, a long poll)
    // goes now, so the visitor is not kept waiting for it.
    res.writeHead(head.status, head.reason || undefined, forwardable(head.headers, false));
    if (rest.length === 0 && !far.readableEnded) {
      // Checked after this turn: body bytes or a FIN right behind the head go with it.
      let body = false;
      far.once('data', () => (body = true));
      setImmediate(() => {
        if (!body && !res.writableEnded && !res.destroyed) res.flushHeaders();
      });
    }
    relay(rest, far, res, expectBody ? declaredLength(head) : undefined, () => res.end(), fail);
  }

  reply(error: ProxyError): void {
    const { res } = this;
    if (res.destroyed || res.headersSent) {
      this.cut();
      return;
    }
    const body = `${error.body}\n`;
    res.writeHead(error.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...error.headers });
    res.end(body);
  }

  cut(): void {
    this.res.destroy();
  }
}

/**
 * A visitor's Upgrade request, on the raw socket node:http handed over. A 101 turns
 * the socket into a pipe to the far side; any other answer is relayed and the
 * connection closed after it (its framing no longer holds once it left HTTP).
 */
export class SocketVisitor implements Visitor {
  #started = false;
  #completed = false;

  constructor(readonly socket: Duplex) {}

  get started(): boolean {
    return this.#started;
  }

  get completed(): boolean {
    return this.#completed;
  }

  onClose(done: () => void): void {
    this.socket.once('close', done);
  }

  respond(head: ResponseHead, rest: Buffer, far: Readable, _expectBody: boolean, fail: (error: Error) => void): void {
    const { socket } = this;
    this.#started = true;
    const upgraded = head.status === 101;
    const headers = forwardable(head.headers, upgraded);
    headers.push('Connection', upgraded ? 'Upgrade' : 'close');
    socket.write(responseHeadText(head.status, head.reason, headers));
    const end = (): void => {
      this.#completed = true;
      socket.end();
    };
    relay(rest, far, socket, undefined, end, fail);
  }

  reply(error: ProxyError): void {
    if (this.#started || this.socket.destroyed) {
      this.cut();
      return;
    }
    this.#started = true;
    this.socket.end(rawTextResponse(error.status, error.body, error.headers));
  }

  cut(): void {
    this.socket.destroy();
  }
}
