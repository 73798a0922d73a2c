/**
 * The node's sockets: the QUIC listener for tunnels and the HTTP listeners (public,
 * management, internal hop). A socket that cannot be opened is one line naming the flag
 * and the address, not a stack.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import type { HostPort } from '../shared/address.js';
import { ReverstError } from '../shared/errors.js';
import { listen, listenError } from '../shared/listen.js';
import { rawTextResponse } from '../shared/http.js';
import { NODE_ALPNS } from '../shared/protocol.js';
import { QuicServer, type QuicServerOptions } from '../shared/quic/index.js';
import { MAX_HEADER_COUNT } from './proxy.js';

// One home for "listen, or say in one line why not" (the control plane listens the same way).
export { listen, listenError };

/** Each listener's flag, for messages. */
export const LISTENER_FLAGS = {
  tunnel: '-a/--tunnel-address',
  http: '-s/--http-address',
  management: '--management-address',
  internal: '--internal-address',
} as const;

/** The QUIC listener tunnels dial. */
export async function listenTunnels(at: HostPort, options: Omit<QuicServerOptions, 'alpn' | 'host' | 'port'>): Promise<QuicServer> {
  try {
    // The older protocol is offered only to tell its clients to upgrade (node.ts closes them).
    return await QuicServer.listen({ ...options, alpn: NODE_ALPNS, host: at.host, port: at.port });
  } catch (err) {
    if (err instanceof ReverstError) throw err;
    throw listenError(err, LISTENER_FLAGS.tunnel, 'UDP', at);
  }
}

/** Node's own default: a slow visitor's head is waited on this long before a 408. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;

export interface PublicServerOptions {
  maxHeaderSize: number;
  /** Longest wait for a visitor's request head (408 after); DEFAULT_HEADERS_TIMEOUT_MS when unset. */
  headersTimeoutMs?: number | undefined;
}

/** The public HTTP server: every request goes to `onRequest`; unparsable or too slow ones get their status here. */
export function createPublicServer(
  options: PublicServerOptions,
  onRequest: http.RequestListener,
  onUpgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
): http.Server {
  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  // Node looks for timed-out request heads only this often (30 s by default).
  const connectionsCheckingInterval = Math.min(30_000, Math.max(100, Math.floor(headersTimeout / 4)));
  // The response to each connection's latest request: answers go out in order, so a parse error waits for it.
  const latest = new WeakMap<Duplex, http.ServerResponse>();
  const server = http.createServer({ maxHeaderSize: options.maxHeaderSize, headersTimeout, connectionsCheckingInterval }, (req, res) => {
    latest.set(req.socket, res);
    onRequest(req, res);
  });
  // More headers than node:http keeps would be dropped silently: the proxy refuses them (431) instead.
  server.maxHeadersCount = MAX_HEADER_COUNT + 1;
  server.on('upgrade', onUpgrade);
  const answered = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // node:http reports every later read of a broken connection again: one answer is enough.
    if (answered.has(socket)) return;
    answered.add(socket);
    const answer = (): void => void (socket.writable ? socket.end(clientErrorResponse(err)) : socket.destroy());
    const res = latest.get(socket);
    if (!res || res.writableFinished) return answer();
    // A request read whole before the bad bytes (pipelining) gets its answer first; a broken
    // body of the request in progress leaves nothing to answer, or no way to say so mid-response.
    if (!res.req.complete) return res.headersSent ? void socket.destroy() : answer();
    res.once('finish', answer);
    res.once('close', () => {
      if (!res.writableFinished) socket.destroy();
    });
  });
  return server;
}

/** Node answers 431 for an oversized header section and 408 for a head that never completes; other parse errors get a 400. */
function clientErrorResponse(err: NodeJS.ErrnoException): string {
  if (err.code === 'HPE_HEADER_OVERFLOW') return rawTextResponse(431, '431 Request Header Fields Too Large: the header section is over the limit');
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return rawTextResponse(408, '408 Request Timeout: the request head did not arrive in time');
  return rawTextResponse(400, '400 Bad Request: malformed HTTP request');
}
