/**
 * The node's sockets: the QUIC listener for tunnels and the HTTP listeners (public,
 * management, internal hop). A socket that cannot be opened is one line naming the flag
 * and the address, not a stack.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatHostPort, type HostPort } from '../shared/address.js';
import { ReverstError } from '../shared/errors.js';
import { rawTextResponse } from '../shared/http.js';
import { ALPN } from '../shared/protocol.js';
import { QuicServer, type QuicServerOptions } from '../shared/quic/index.js';

/** Each listener's flag, for messages. */
export const LISTENER_FLAGS = {
  tunnel: '-a/--tunnel-address',
  http: '-s/--http-address',
  management: '--management-address',
  internal: '--internal-address',
} as const;

const WHY: Record<string, string> = {
  EADDRINUSE: 'is already in use: stop what holds it or pick another port',
  EACCES: 'needs privileges this process lacks (ports below 1024 do): pick a port above 1023',
  EADDRNOTAVAIL: 'is not an address of this machine: give one of its own addresses, or 0.0.0.0 for all',
  ENOTFOUND: 'names a host that does not resolve',
  EAI_AGAIN: 'names a host that does not resolve (yet)',
};

/** The one-line error for a socket that could not be opened. */
export function listenError(err: unknown, flag: string, protocol: 'UDP' | 'TCP', at: HostPort): ReverstError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const why = (code && WHY[code]) ?? `cannot be listened on: ${(err as Error)?.message ?? String(err)}`;
  return new ReverstError('ERR_LISTEN', `${flag}: ${protocol} ${formatHostPort(at)} ${why}${code && WHY[code] ? ` (${code})` : ''}`, { cause: err });
}

/** Listens on `at` and resolves with the address bound (the port the system picked for 0). */
export function listen(server: http.Server, at: HostPort, flag: string): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(listenError(err, flag, 'TCP', at));
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** The QUIC listener tunnels dial. */
export async function listenTunnels(at: HostPort, options: Omit<QuicServerOptions, 'alpn' | 'host' | 'port'>): Promise<QuicServer> {
  try {
    return await QuicServer.listen({ ...options, alpn: [ALPN], host: at.host, port: at.port });
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
