// What a connection tells about a peer that stops answering: 'suspect' after about a second
// of unanswered data (it keeps the connection), 'responsive' when the peer is heard again,
// and, after this process itself was frozen, a quick probe that drops a peer gone meanwhile.
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { onCleanup, spawnNode, useCleanup } from '../harness/index.js';
import { QuicPeerUnresponsiveError, type QuicConnection } from '../../shared/quic/index.js';
import { ALPN, dial, pki, roundTrip } from './helpers.js';

useCleanup();

/** An echo server in its own process (so it can be frozen), and a connection to it with `options`. */
async function frozenPeerSetup(options: { unresponsiveTimeoutMs: number }) {
  const p = await pki();
  const peer = spawnNode('test/fixtures/quic-echo-server.ts', [p.server.keyPath, p.server.certPath, ALPN]);
  const [, port] = await peer.waitForLine(/listening (\d+)/);
  const connect = async (unresponsiveTimeoutMs: number) => {
    const conn = await dial(p, Number(port), { idleTimeoutMs: 30_000, keepAliveMs: 10_000, unresponsiveTimeoutMs });
    expect((await roundTrip(await conn.openStream(), 'alive')).toString()).toBe('alive');
    return conn;
  };
  return { peer, conn: await connect(options.unresponsiveTimeoutMs), connect };
}

/** Blocks this whole process, as a freeze (SIGSTOP, a long GC) would. */
function freezeThisProcess(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Sends data the (frozen) peer cannot acknowledge. */
async function writeUnanswered(conn: QuicConnection) {
  const stream = await conn.openStream();
  stream.on('error', () => {});
  stream.write('are you there?');
  return stream;
}

describe('connection liveness', () => {
  it('marks a frozen peer suspect after about a second, keeps it, and marks it responsive once it answers', async () => {
    const { peer, conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    peer.child.kill('SIGSTOP');
    const openedAt = performance.now();
    const stream = await writeUnanswered(conn);
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
    const { peer, conn, connect } = await frozenPeerSetup({ unresponsiveTimeoutMs: 0 });
    // The same peer with the timeout on: its suspicion shows when one would have been raised.
    const watched = await connect(10_000);
    let suspected = false;
    conn.on('suspect', () => (suspected = true));
    peer.child.kill('SIGSTOP');
    const stream = await writeUnanswered(conn);
    await writeUnanswered(watched);
    await once(watched, 'suspect');
    peer.child.kill('SIGCONT');
    expect((await roundTrip(stream, '')).toString()).toBe('are you there?');
    expect(suspected).toBe(false);
    expect(conn.suspect).toBe(false);
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

  it('after this process was frozen, drops such a peer without an unhandled rejection, even when a close listener throws', async () => {
    const { peer, conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    onCleanup(() => process.off('unhandledRejection', onUnhandled));
    conn.on('close', () => {
      throw new Error('a close listener that fails');
    });
    peer.child.kill('SIGSTOP');
    freezeThisProcess(1_500);
    expect((await conn.closed).error).toBeInstanceOf(QuicPeerUnresponsiveError);
    // Unhandled rejections are reported after the microtasks of the turn that made them.
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(unhandled).toEqual([]);
    peer.child.kill('SIGCONT');
  });

  it('after this process was frozen, keeps a peer that answers the probe', async () => {
    const { conn } = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    // A second peer, frozen throughout: its connection closing marks the end of the probe both went through.
    const gone = await frozenPeerSetup({ unresponsiveTimeoutMs: 10_000 });
    gone.peer.child.kill('SIGSTOP');
    freezeThisProcess(1_500);
    expect((await gone.conn.closed).error).toBeInstanceOf(QuicPeerUnresponsiveError);
    gone.peer.child.kill('SIGCONT');
    expect(conn.isClosing).toBe(false);
    expect((await roundTrip(await conn.openStream(), 'still here')).toString()).toBe('still here');
  });
});
