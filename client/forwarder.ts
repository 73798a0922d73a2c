/**
 * Forwards the requests a tunnel receives to a local HTTP origin (`reverst http`):
 * each request's v2 head goes straight to an undici Pool (no HTTP parsing on the
 * tunnel side), bodies stream both ways with backpressure, and `Upgrade` requests
 * become a raw pipe once the origin answers 101.
 *
 * Two rules keep a tunnel from freezing (shared/notes/quiche-native.md): when the visitor
 * goes away mid-response, the origin request is aborted so nothing keeps reading into a
 * stream nobody drains; and no origin request waits without a timeout.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import { ReverstError } from '../shared/errors.js';
import { HOP_BY_HOP } from '../shared/http.js';
import { type Logger, silentLogger } from '../shared/log.js';
import { type TunnelHandler, type TunnelRequest, discardBody, writeResponseHead, writeTextResponse } from './tunnel-request.js';

/** An origin silent this long (no bytes either way) is given up on: 504 before the response, a cut after. */
export const DEFAULT_ORIGIN_TIMEOUT_MS = 60_000;

export interface ForwarderOptions {
  /** `http:` or `https:`; a path prefix, if any, is prepended to every request path. */
  origin: URL;
  /** Send the visitor's Host to the origin instead of the origin's own (for origins that route by name). */
  preserveHost?: boolean | undefined;
  timeoutMs?: number | undefined;
  logger?: Logger | undefined;
}

export interface Forwarder extends TunnelHandler {
  /** Drop the pooled origin connections. */
  close(): Promise<void>;
}

// A keep-alive connection the origin closed just as it was reused fails with one of these before any response.
const STALE_CONNECTION_CODES = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

const errorCode = (error: Error): string => {
  const { code, cause } = error as Error & { code?: string; cause?: { code?: string } };
  return (code === 'UND_ERR_SOCKET' ? cause?.code : undefined) ?? code ?? error.message;
};

function latin1(value: Buffer | string): string {
  return typeof value === 'string' ? value : value.toString('latin1');
}

/** The origin's raw headers (Buffers from undici) as a flat list of strings. */
function rawHeaders(raw: Dispatcher.DispatchController['rawHeaders']): string[] {
  if (!Array.isArray(raw)) return [];
  return raw.map((value) => latin1(value as Buffer | string));
}

export function createForwarder(options: ForwarderOptions): Forwarder {
  const { origin, preserveHost = false, timeoutMs = DEFAULT_ORIGIN_TIMEOUT_MS } = options;
  if (origin.protocol !== 'http:' && origin.protocol !== 'https:')
    throw new ReverstError('ERR_INVALID_OPTION', `origin must be http: or https:, got ${origin.protocol}`);
  const logger = (options.logger ?? silentLogger).child({ component: 'forwarder', origin: origin.origin });
  // Keep-alive saves a TCP (and TLS) handshake per request; the pool hands out the connection least likely to have idled out.
  const pool = new Pool(origin.origin, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: Math.min(timeoutMs, 10_000) });
  const prefix = origin.pathname.replace(/\/+$/, '');

  const forward = ({ head, stream }: TunnelRequest, retried = false): void => {
    const headers: string[] = [];
    let upgrade: string | undefined;
    for (let i = 0; i < head.headers.length; i += 2) {
      const name = head.headers[i]!;
      const lower = name.toLowerCase();
      if (lower === 'upgrade') upgrade = head.headers[i + 1];
      // undici frames the request itself and refuses these.
      else if (!HOP_BY_HOP.has(lower) && lower !== 'expect' && lower !== 'host') headers.push(name, head.headers[i + 1]!);
    }
    headers.push('host', preserveHost ? head.authority : origin.host);
    // The tunnel stream also carries the response: undici may destroy a body it was given, so it gets its own.
    const body = head.body && !head.upgrade ? requestBody(stream) : null;
    const exchange = new OriginExchange(stream, head, logger, origin.host, (error) => {
      // A bodiless request on a keep-alive connection the origin had just closed is safe to send again.
      if (!retried && !body && IDEMPOTENT.has(head.method) && STALE_CONNECTION_CODES.has((error as { code?: string }).code ?? '')) {
        forward({ head, stream }, true);
        return true;
      }
      return false;
    });
    pool.dispatch(
      {
        path: prefix + (head.target === '*' ? '/' : head.target),
        method: head.method,
        headers,
        body,
        ...(head.upgrade ? { upgrade: upgrade ?? 'websocket' } : {}),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      },
      exchange,
    );
  };

  return {
    serveTunnelRequest: (request) => forward(request),
    close: () => pool.destroy(),
  };
}

/** The request body as a Readable of its own, fed from the tunnel stream with backpressure. */
function requestBody(stream: Readable): Readable {
  const body = new Readable({ read: () => void stream.resume() });
  const feed = (chunk: Buffer): void => {
    if (!body.push(chunk)) stream.pause();
  };
  stream.on('data', feed);
  stream.once('end', () => body.push(null));
  stream.once('close', () => {
    if (!stream.readableEnded) body.destroy(new Error('the visitor went away'));
  });
  // undici lets go of the body when the exchange ends, read or not (an origin may answer first).
  body.once('close', () => {
    stream.off('data', feed);
    discardBody(stream);
  });
  return body;
}

/** One request to the origin, as undici's dispatch handler: its answer is written onto the tunnel stream. */
class OriginExchange implements Dispatcher.DispatchHandler {
  #answered = false;

  constructor(
    private readonly stream: TunnelRequest['stream'],
    private readonly head: TunnelRequest['head'],
    private readonly logger: Logger,
    private readonly originHost: string,
    /** True if the failed attempt was sent again. */
    private readonly retry: (error: Error) => boolean,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // The visitor left (the node reset the stream): stop the origin, so nothing keeps reading.
    this.stream.once('close', () => {
      if (!this.stream.writableFinished) controller.abort(new Error('the visitor went away'));
    });
    this.stream.on('drain', () => controller.resume());
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, _headers: IncomingHttpHeaders, statusMessage?: string): void {
    // Informational answers (100, 103) are the origin's business with us; the visitor gets the final one.
    if (statusCode < 200) return;
    this.#answered = true;
    try {
      writeResponseHead(this.stream, statusCode, statusMessage ?? '', rawHeaders(controller.rawHeaders));
    } catch (error) {
      controller.abort(error as Error);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.stream.write(chunk)) controller.pause();
  }

  onResponseEnd(): void {
    this.stream.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const { stream, head } = this;
    if (stream.destroyed) return;
    // Mid-response there is nothing to say: cut it, so the visitor cannot mistake it for a whole one.
    if (this.#answered) {
      this.logger.debug('response cut short', { url: head.target, error: error.message });
      stream.destroy();
      return;
    }
    if (this.retry(error)) return;
    const code = errorCode(error);
    const timedOut = TIMEOUT_CODES.has((error as { code?: string }).code ?? '');
    this.logger.warn('origin request failed', { method: head.method, url: head.target, error: code });
    writeTextResponse(stream, timedOut ? 504 : 502, `${timedOut ? 'gateway timeout' : 'bad gateway'}: ${this.originHost}: ${code}`);
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, _statusCode: number, _headers: IncomingHttpHeaders, socket: import('node:stream').Duplex): void {
    const { stream } = this;
    this.#answered = true;
    writeResponseHead(stream, 101, '', rawHeaders(controller.rawHeaders), true);
    // pipe() carries each side's end as a half-close to the other.
    socket.pipe(stream);
    stream.pipe(socket);
    socket.on('error', (error) => {
      this.logger.debug('origin side of an upgrade failed', { url: this.head.target, error });
      stream.destroy();
    });
    stream.once('close', () => socket.destroy());
  }
}
