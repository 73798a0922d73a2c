/**
 * What serves the requests that arrive through a tunnel. Each request stream begins
 * with a v2 head (shared/heads.ts); every handler form becomes a StreamServer that
 * takes that head and the stream, which carries the body in and the response out.
 *
 * Which form a bare function is: `handler.length >= 2` (it declares `(req, res)`) means a
 * Node request listener; anything else is a fetch handler `(request) => Response`. A
 * listener written as `(...args)` has length 0, so say what you mean with
 * `{ listener }` or `{ fetch }` when in doubt.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { ReverstError } from '../shared/errors.js';
import { replyText } from '../shared/http.js';
import type { Logger } from '../shared/log.js';
import { type FetchHandler, fetchServer } from './fetch-adapter.js';
import { httpServerStreams } from './http-compat.js';
import type { StreamServer, TunnelHandler } from './tunnel-request.js';

export type { StreamServer, TunnelHandler, TunnelRequest } from './tunnel-request.js';

export type NodeListener = (req: IncomingMessage, res: ServerResponse) => unknown;

export type Handler = FetchHandler | NodeListener | http.Server | TunnelHandler | { fetch: FetchHandler } | { listener: NodeListener };

/** The StreamServer for any handler form. */
export function toStreamServer(handler: Handler, logger: Logger): StreamServer {
  if (handler instanceof http.Server) return httpServerStreams(handler, logger);
  if (typeof handler === 'function') {
    return handler.length >= 2 ? listenerStreams(handler as NodeListener, logger) : fetchServer(handler as FetchHandler, logger);
  }
  if ('serveTunnelRequest' in handler && typeof handler.serveTunnelRequest === 'function') return handler.serveTunnelRequest.bind(handler);
  if ('fetch' in handler && typeof handler.fetch === 'function') return fetchServer(handler.fetch.bind(handler), logger);
  if ('listener' in handler && typeof handler.listener === 'function') return listenerStreams(handler.listener, logger);
  throw new ReverstError('ERR_INVALID_OPTION', 'handler: give a fetch handler, a Node request listener, an http.Server, { fetch } or { listener }');
}

/**
 * A Node request listener, served by an http.Server of our own: one that accepts
 * whatever header section the node sends (the node enforced its limit already).
 */
function listenerStreams(listener: NodeListener, logger: Logger): StreamServer {
  const server = http.createServer({ maxHeaderSize: 1 << 20 }, guardListener(listener, logger));
  server.maxHeadersCount = 0;
  return httpServerStreams(server, logger);
}

/**
 * A listener that throws (or rejects) answers 500 instead of taking the process down:
 * node:http would otherwise let the exception escape from the stream's data event.
 */
function guardListener(listener: NodeListener, logger: Logger): http.RequestListener {
  const fail = (req: IncomingMessage, res: ServerResponse, error: unknown) => {
    logger.error('request listener failed', { method: req.method, url: req.url, error });
    replyText(res, 500, 'internal server error');
  };
  return (req, res) => {
    try {
      const result = listener(req, res);
      if (result instanceof Promise) result.catch((error: unknown) => fail(req, res, error));
    } catch (error) {
      fail(req, res, error);
    }
  };
}
