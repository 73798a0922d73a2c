import dgram from 'node:dgram';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { makeCa, makeServerCert, onCleanup, useCleanup } from '../harness/index.js';
import { QuicConnectTimeoutError, QuicTlsError, connectQuic } from '../../shared/quic/index.js';
import { ALPN, echoServer, pki, roundTrip } from './helpers.js';

useCleanup();

describe('QUIC dialling', () => {
  it('keeps the settings of every dial apart when it reuses TLS configurations', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const other = await makeServerCert(await makeCa('another CA'));
    const dial = (ca: string) => connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: server.address().port, serverName: 'localhost', ca });
    for (let i = 0; i < 3; i++) {
      const good = await dial(p.ca.cert);
      expect((await roundTrip(await good.openStream(), 'hi')).toString()).toBe('hi');
      await good.close();
      // Same options but another CA (this one trusts only the other CA's chain): refused every time.
      await expect(dial(other.cert)).rejects.toBeInstanceOf(QuicTlsError);
    }
  });

  it('gives a server that answered three connect timeouts, then tells it when it gives up, so it frees its slot at once', async () => {
    const p = await pki();
    const server = await echoServer(p);
    // A relay that passes the client's datagrams and, of the server's, only the Initial packet at the
    // head of the first one: the client hears from the server (a client that never did just goes
    // quiet, as RFC 9000 allows), and the handshake can never finish.
    const front = dgram.createSocket('udp4');
    const back = dgram.createSocket('udp4');
    front.bind(0, '127.0.0.1');
    back.bind(0, '127.0.0.1');
    await Promise.all([once(front, 'listening'), once(back, 'listening')]);
    onCleanup(() => {
      front.close();
      back.close();
    });
    let client: dgram.RemoteInfo | undefined;
    let answered = false;
    front.on('message', (msg, from) => {
      client = from;
      back.send(msg, server.address().port, '127.0.0.1');
    });
    back.on('message', (msg) => {
      if (answered || !client) return;
      answered = true;
      front.send(msg.subarray(0, firstPacketLength(msg)), client.port, client.address);
    });
    const started = performance.now();
    const dial = connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: front.address().port, serverName: 'localhost', ca: p.ca.cert, connectTimeoutMs: 500 });
    await expect.poll(() => server.pendingHandshakes).toBe(1);
    const err = await dial.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(QuicConnectTimeoutError);
    // The server answered, so it is there (busy, as in a storm of dials): patience, not a new dial.
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_450);
    expect((err as Error).message).toMatch(/within 1500 ms/);
    // Left alone, the server would hold the slot for its handshake timeout (10 s).
    await expect.poll(() => server.pendingHandshakes, { timeout: 2_000 }).toBe(0);
    expect(server.connections.size).toBe(0);
  });

  it('dials many connections at once without giving up on any', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const conns = await Promise.all(
      Array.from({ length: 300 }, () => connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: server.address().port, serverName: 'localhost', ca: p.ca.cert })),
    );
    const replies = await Promise.all(conns.map(async (c, i) => (await roundTrip(await c.openStream(), `#${i}`)).toString()));
    expect(replies).toEqual(conns.map((_, i) => `#${i}`));
    await Promise.all(conns.map((c) => c.close()));
  });
});

/** Length of the first QUIC packet of a datagram that starts with an Initial (RFC 9000 §17.2.2). */
function firstPacketLength(d: Buffer): number {
  const varint = (at: number): [number, number] => {
    const size = 1 << (d[at]! >> 6);
    let value = d[at]! & 0x3f;
    for (let i = 1; i < size; i++) value = value * 256 + d[at + i]!;
    return [value, at + size];
  };
  let at = 5; // flags, version
  at += 1 + d[at]!; // destination id
  at += 1 + d[at]!; // source id
  const [tokenLength, afterToken] = varint(at);
  const [length, afterLength] = varint(afterToken + tokenLength);
  return afterLength + length;
}
