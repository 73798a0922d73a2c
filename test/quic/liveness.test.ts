// What a connection tells about a peer that stops answering: 'suspect' after about a second
// of unanswered data (it keeps the connection), 'responsive' when the peer is heard again,
// and, after this process itself was frozen, a quick probe that drops a peer gone meanwhile.
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { spawnNode, useCleanup } from '../harness/index.js';
import { QuicPeerUnresponsiveError, type QuicConnection } from '../../shared/quic/index.js';
import { ALPN, dial, pki, roundTrip } from './helpers.js';

useCleanup();

/** An echo server in its own process (so it can be frozen), and a connection to it. */
async function frozenPeerSetup(options: { unresponsiveTimeoutMs: number }) {
  const p = await pki();
  const peer = spawnNode('test/fixtures/quic-echo-server.ts', [p.server.keyPath, p.server.certPath, ALPN]);
  const [, port] = await peer.waitForLine(/listening (\d+)/);
  const conn = await dial(p, Number(port), { idleTimeoutMs: 30_000, keepAliveMs: 10_000, ...options });
  expect((await roundTrip(await conn.openStream(), 'alive')).toString()).toBe('alive');
  return { peer, conn };
}

/** Blocks this whole process, as a freeze (SIGSTOP, a long GC) would. */
function freezeThisProcess(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const closedWithin = (conn: QuicConnection, ms: number) =>
  Promise.race([conn.closed.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), ms))]);

describe('connection liveness', () => {
  it('marks a frozen peer suspect after about a second, keeps it, and marks it responsive once it answers', async () => {
    const { peer, conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    peer.child.kill('SIGSTOP');
    const stream = await conn.openStream();
    stream.on('error', () => {});
    const openedAt = performance.now();
    stream.write('are you there?');
    await once(conn, 'suspect');
    const suspectAfter = performance.now() - openedAt;
    expect(suspectAfter).toBeGreaterThanOrEqual(900);
    expect(suspectAfter).toBeLessThan(10_000);
    expect(conn.suspect).toBe(true);
    expect(conn.heardSince(openedAt)).toBe(false);
    expect(conn.isClosing).toBe(false);

    const responsive = once(conn, 'responsive');
    peer.child.kill('SIGCONT');
    await responsive;
    expect(conn.suspect).toBe(false);
    expect(conn.heardSince(openedAt)).toBe(true);
    expect((await roundTrip(stream, '')).toString()).toBe('are you there?');
    expect(conn.isClosing).toBe(false);
  });

  it('never marks a peer suspect with the unresponsive timeout off', async () => {
    const { peer, conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 0 });
    let suspected = false;
    conn.on('suspect', () => (suspected = true));
    peer.child.kill('SIGSTOP');
    const stream = await conn.openStream();
    stream.on('error', () => {});
    stream.write('are you there?');
    // The peer answers again after the freeze: by then a suspicion would have been raised.
    await new Promise((r) => setTimeout(r, 2_000));
    peer.child.kill('SIGCONT');
    expect((await roundTrip(stream, '')).toString()).toBe('are you there?');
    expect(suspected).toBe(false);
  });

  it('after this process was frozen, drops within about a second a peer that no longer answers', async () => {
    const { peer, conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    peer.child.kill('SIGSTOP');
    freezeThisProcess(1_500);
    const resumedAt = performance.now();
    const info = await conn.closed;
    // The probe's second, not the 10 s unresponsive timeout or the 30 s idle timeout.
    expect(performance.now() - resumedAt).toBeLessThan(5_000);
    expect(info.error).toBeInstanceOf(QuicPeerUnresponsiveError);
    peer.child.kill('SIGCONT');
  });

  it('after this process was frozen, keeps a peer that answers the probe', async () => {
    const { conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    freezeThisProcess(1_500);
    // The probe has been answered or given up by then.
    expect(await closedWithin(conn, 3_000)).toBe(false);
    expect((await roundTrip(await conn.openStream(), 'still here')).toString()).toBe('still here');
  });
});
