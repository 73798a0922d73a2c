import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { makeCa, makeServerCert, onCleanup, type KeyPair } from '../harness/index.js';
import { QuicServer, connectQuic, type QuicConnectOptions, type QuicConnection, type QuicServerOptions } from '../../shared/quic/index.js';

export const ALPN = 'test/1';

export interface Pki {
  ca: KeyPair;
  server: KeyPair;
}

export async function pki(): Promise<Pki> {
  const ca = await makeCa();
  return { ca, server: await makeServerCert(ca) };
}

/** A server that echoes every stream, closed with the current cleanup scope. */
export async function echoServer(p: Pki, options: Partial<QuicServerOptions> = {}): Promise<QuicServer> {
  const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert, ...options });
  server.on('connection', (conn: QuicConnection) => conn.on('stream', (s) => s.on('error', () => {}).pipe(s)));
  onCleanup(() => server.close());
  return server;
}

export async function dial(p: Pki, port: number, options: Partial<QuicConnectOptions> = {}): Promise<QuicConnection> {
  const conn = await connectQuic({ alpn: [ALPN], host: '127.0.0.1', port, serverName: 'localhost', ca: p.ca.cert, ...options });
  onCleanup(() => conn.close());
  return conn;
}

/** Write `payload`, end, and collect everything the peer sends back until it ends. */
export async function roundTrip(stream: Duplex, payload: Buffer | string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const ended = once(stream, 'end');
  stream.end(payload);
  await ended;
  return Buffer.concat(chunks);
}
