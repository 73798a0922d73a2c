/**
 * What serves the requests that arrive through a tunnel. Every form becomes an
 * http.Server that the tunnel feeds each request stream as a connection.
 *
 * Which form a bare function is: `handler.length >= 2` (it declares `(req, res)`) means a
 * Node request listener; anything else is a fetch handler `(request) => Response`. A
 * listener written as `(...args)` has length 0, so say what you mean with
 * `{ listener }` or `{ fetch }` when in doubt.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { ReverstError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { fetchListener, type FetchHandler } from './fetch-adapter.js';
import { replyText } from '../shared/http.js';

export type NodeListener = (req: IncomingMessage, res: ServerResponse) => unknown;

export type Handler = FetchHandler | NodeListener | http.Server | { fetch: FetchHandler } | { listener: NodeListener };

/**
 * The http.Server that serves `handler`. A given http.Server is used as is (its own
 * 'request' and 'upgrade' listeners run), except that `httpAllowHalfOpen` is turned on:
 * the node ends its side of a stream after the request body, and without that setting
 * Node would end the stream before the response is written.
 */
export function toHttpServer(handler: Handler, logger: Logger): http.Server {
  const server = handler instanceof http.Server ? handler : http.createServer(toListener(handler, logger));
  // Long-standing but missing from @types/node.
  (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  return server;
}

function toListener(handler: Exclude<Handler, http.Server>, logger: Logger): http.RequestListener {
  if (typeof handler === 'function') {
    return handler.length >= 2 ? guardListener(handler as NodeListener, logger) : fetchListener(handler as FetchHandler, logger);
  }
  if ('fetch' in handler && typeof handler.fetch === 'function') return fetchListener(handler.fetch.bind(handler), logger);
  if ('listener' in handler && typeof handler.listener === 'function') return guardListener(handler.listener, logger);
  throw new ReverstError('ERR_INVALID_OPTION', 'handler: give a fetch handler, a Node request listener, an http.Server, { fetch } or { listener }');
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
