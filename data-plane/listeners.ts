/** The node's sockets: the QUIC listener for tunnels and the HTTP listeners (public, management, internal hop). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { HostPort } from '../shared/address.js';
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

/** Listens on `at` and resolves with the address bound (the port the system picked for 0). */
export function listen(server: http.Server, at: HostPort): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** The QUIC listener tunnels dial. */
export function listenTunnels(at: HostPort, options: Omit<QuicServerOptions, 'alpn' | 'host' | 'port'>): Promise<QuicServer> {
  return QuicServer.listen({ ...options, alpn: [ALPN], host: at.host, port: at.port });
}

/** The public HTTP server: every request goes to `onRequest`; unparsable ones get their status here. */
export function createPublicServer(
  maxHeaderSize: number,
  onRequest: http.RequestListener,
  onUpgrade: (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
): http.Server {
  const server = http.createServer({ maxHeaderSize }, onRequest);
  server.on('upgrade', onUpgrade);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Node answers 431 for an oversized header section; other parse errors get a 400.
    if (!socket.writable) return socket.destroy();
    if (err.code === 'HPE_HEADER_OVERFLOW') {
      socket.end(rawTextResponse(431, '431 Request Header Fields Too Large: the header section is over the limit'));
    } else {
      socket.end(rawTextResponse(400, '400 Bad Request: malformed HTTP request'));
    }
  });
  return server;
}
