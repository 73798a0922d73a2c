import { describe, expect, it } from 'vitest';
import { useCleanup } from '../harness/index.js';
import { isLoopback, parseQuicOptions, udpPayloadFor } from '../../shared/quic/index.js';
import { dial, echoServer, pki, roundTrip } from './helpers.js';

useCleanup();

/** Average UDP payload of what the connection sent since `before`. */
function averagePacket(after: { sent: number; sentBytes: number }, before: { sent: number; sentBytes: number }): number {
  return (after.sentBytes - before.sentBytes) / (after.sent - before.sent);
}

describe('QUIC packets', () => {
  it('tells loopback peers from the rest', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopback(host)).toBe(true);
    for (const host of ['10.0.0.1', '192.168.1.2', '::', '::ffff:10.1.1.1', 'fe80::1', '1.2.7.127']) expect(isLoopback(host)).toBe(false);
    const o = parseQuicOptions({ alpn: ['x'] });
    expect(udpPayloadFor(o, '127.0.0.1')).toBe(16_383);
    expect(udpPayloadFor(o, '10.0.0.1')).toBe(1350);
    // A loopback size below the network one would make no sense: the network size wins.
    expect(parseQuicOptions({ alpn: ['x'], maxUdpPayload: 1400, loopbackUdpPayload: 1300 }).loopbackUdpPayload).toBe(1400);
    expect(() => parseQuicOptions({ alpn: ['x'], loopbackUdpPayload: 70_000 })).toThrow(/loopbackUdpPayload/);
    expect(() => parseQuicOptions({ alpn: ['x'], ackDelayMs: 25 })).toThrow(/ackDelayMs/);
  });

  it('sends bulk data to a peer on this machine in packets far larger than a network MTU allows', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const conn = await dial(p, server.address().port);
    const before = conn.stats();
    const payload = Buffer.alloc(2 << 20, 3);
    expect((await roundTrip(await conn.openStream(), payload)).equals(payload)).toBe(true);
    expect(averagePacket(conn.stats(), before)).toBeGreaterThan(8_000);
  });

  it('keeps every packet within maxUdpPayload where the loopback size is not wanted', async () => {
    const p = await pki();
    const small = { loopbackUdpPayload: 1350 };
    const server = await echoServer(p, small);
    const conn = await dial(p, server.address().port, small);
    const before = conn.stats();
    const payload = Buffer.alloc(1 << 20, 3);
    expect((await roundTrip(await conn.openStream(), payload)).equals(payload)).toBe(true);
    const average = averagePacket(conn.stats(), before);
    expect(average).toBeGreaterThan(1_000);
    expect(average).toBeLessThanOrEqual(1350);
  });

  it('never holds back the end of a handshake as if it were an acknowledgement', async () => {
    const p = await pki();
    const server = await echoServer(p);
    let accepted = 0;
    server.on('connection', () => accepted++);
    for (let i = 0; i < 5; i++) {
      // A client that only looks (at the certificate, say) and leaves: quiche sends nothing but the
      // close once closing, so a Finished held back with the acknowledgements would never leave,
      // and the server would never know the handshake completed.
      const conn = await dial(p, server.address().port, { ackDelayMs: 20 });
      await conn.close({ code: 0, reason: 'just looking' });
    }
    await expect.poll(() => accepted).toBe(5);
  });

  it('carries the acknowledgement of a request on its answer: one datagram each way per round trip', async () => {
    const p = await pki();
    // The longest hold, so a busy machine that delays the answer a few ms does not send the acknowledgement alone.
    const hold = { ackDelayMs: 20 };
    const server = await echoServer(p, hold);
    const conn = await dial(p, server.address().port, hold);
    await roundTrip(await conn.openStream(), 'warm');
    const before = conn.stats();
    const trips = 200;
    for (let i = 0; i < trips; i++) await roundTrip(await conn.openStream(), `#${i}`);
    const after = conn.stats();
    // Without waiting for data to ride with, each side sends an acknowledgement of its own: two each way.
    expect((after.sent - before.sent) / trips).toBeLessThan(1.5);
    expect((after.recv - before.recv) / trips).toBeLessThan(1.5);
  });
});
