import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { onCleanup } from './cleanup.js';

export interface TestHttpServer {
  readonly url: string;
  readonly port: number;
  readonly server: http.Server;
  /** Stops listening and destroys open sockets (keep-alive and upgraded ones too). */
  close(): Promise<void>;
}

/** An origin server on 127.0.0.1 and a free port, closed with the current cleanup scope. */
export async function startHttpServer(handler: http.RequestListener): Promise<TestHttpServer> {
  const server = http.createServer(handler);
  // Tracked by hand because closeAllConnections() does not see sockets taken over by an upgrade.
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    }));
  onCleanup(close);
  return { url: `http://127.0.0.1:${port}`, port, server, close };
}

/** Hex SHA-256 of bytes, text, or everything a stream yields. */
export async function sha256(input: string | Uint8Array | AsyncIterable<Uint8Array | string>): Promise<string> {
  const hash = createHash('sha256');
  if (typeof input === 'string' || input instanceof Uint8Array) hash.update(input);
  else for await (const chunk of input) hash.update(chunk);
  return hash.digest('hex');
}

const DEFAULT_CHUNK_SIZE = 64 * 1024;

/**
 * `bytes` pseudo-random bytes, produced chunk by chunk so large bodies never sit in memory.
 * The same seed gives the same bytes whatever the chunk size (an AES-CTR keystream: native speed).
 */
export function randomStream(bytes: number, seed: number | string = 0, chunkSize = DEFAULT_CHUNK_SIZE): Readable {
  const key = createHash('sha256').update(`reverst-test-stream:${seed}`).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(chunkSize);
  function* chunks() {
    for (let left = bytes; left > 0; left -= chunkSize) {
      yield cipher.update(zeros.subarray(0, Math.min(left, chunkSize)));
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/** Reads a stream to the end into one Buffer. */
export async function collect(readable: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of readable) {
    if (typeof chunk === 'string') chunks.push(Buffer.from(chunk));
    else chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  }
  return Buffer.concat(chunks);
}
