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
  const server = http.createServer({ maxHeaderSize: options.maxHeaderSize, headersTimeout, connectionsCheckingInterval }, onRequest);
  // More headers than node:http keeps would be dropped silently: the proxy refuses them (431) instead.
  server.maxHeadersCount = MAX_HEADER_COUNT + 1;
  server.on('upgrade', onUpgrade);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Node answers 431 for an oversized header section and 408 for a head that never completes; other parse errors get a 400.
    if (!socket.writable) return socket.destroy();
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      socket.end(rawTextResponse(431, '431 Request Header Fields Too Large: the header section is over the limit'));
    } else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      socket.end(rawTextResponse(408, '408 Request Timeout: the request head did not arrive in time'));
    } else {
      socket.end(rawTextResponse(400, '400 Bad Request: malformed HTTP request'));
    }
  });
  return server;
}
