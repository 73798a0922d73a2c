// Stateless retry: above a number of handshakes in progress the server answers
// Initials with a Retry and keeps no state until the client proves its address.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { onCleanup, useCleanup } from '../harness/index.js';
import { buildConfig } from '../../shared/quic/config.js';
import { quiche } from '../../shared/quic/native.js';
import { parseQuicOptions } from '../../shared/quic/options.js';
import { QuicServer, type QuicConnection } from '../../shared/quic/index.js';
import { ALPN, dial, pki, roundTrip, type Pki } from './helpers.js';

useCleanup();

async function retryServer(p: Pki, retryAbovePending: number): Promise<QuicServer> {
  const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert, retryAbovePending });
  server.on('connection', (c: QuicConnection) => c.on('stream', (s) => s.on('error', () => {}).pipe(s)));
  onCleanup(() => server.close());
  return server;
}

/**
 * A socket that sends real client Initials (each from a fresh quiche client, never
 * continued) and collects whatever comes back: a flood of handshakes that never finish.
 */
async function initialSender(p: Pki, port: number) {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  onCleanup(() => socket.close());
  const replies: Buffer[] = [];
  socket.on('message', (m) => replies.push(m));
  const config = buildConfig(parseQuicOptions({ alpn: [ALPN] }), { ca: p.ca.cert }, false);
  const local = { host: '127.0.0.1', port: socket.address().port };
  const remote = { host: '127.0.0.1', port };
  const out = Buffer.alloc(1350);
  return {
    replies,
    /** In batches with a pause between, so no socket buffer on either side overflows. */
    async send(count: number): Promise<void> {
      for (let i = 0; i < count; i++) {
        const conn = quiche.Connection.connect('localhost', randomBytes(20), local, remote, config);
        const sent = conn.send(out);
        socket.send(Buffer.from(out.subarray(0, sent![0])), port, '127.0.0.1');
        if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  };
}

/** Long header (bit 7) with packet type 3 (bits 5-4): RFC 9000 §17.2.5. */
const isRetry = (packet: Buffer): boolean => (packet[0]! & 0xb0) === 0xb0;

describe('QUIC stateless retry', () => {
  it('answers with a Retry and keeps no state, then accepts the client that comes back with the token', async () => {
    const p = await pki();
    const server = await retryServer(p, 0);
    const flood = await initialSender(p, server.address().port);
    await flood.send(1);
    await expect.poll(() => flood.replies.length).toBe(1);
    expect(isRetry(flood.replies[0]!)).toBe(true);
    expect(server.pendingHandshakes).toBe(0);
    expect(server.connections.size).toBe(0);
    // A real client follows the Retry (quiche does it) and gets a working connection.
    const conn = await dial(p, server.address().port);
    expect((await roundTrip(await conn.openStream(), 'after a retry')).toString()).toBe('after a retry');
    expect(server.connections.size).toBe(1);
  });

  it('keeps a flood of unfinished handshakes from filling the slots, and real clients still get in', async () => {
    const p = await pki();
    const server = await retryServer(p, 16);
    const flood = await initialSender(p, server.address().port);
    await flood.send(2_000);
    await expect.poll(() => flood.replies.filter(isRetry).length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1_900);
    expect(server.pendingHandshakes).toBe(16);
    const conns = await Promise.all([1, 2, 3].map(() => dial(p, server.address().port)));
    for (const [i, conn] of conns.entries()) {
      expect((await roundTrip(await conn.openStream(), `client ${i}`)).toString()).toBe(`client ${i}`);
    }
  });
});
