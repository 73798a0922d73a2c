import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../harness/index.js';
import type { QuicConnection, QuicStream } from '../../shared/quic/index.js';
import { dial, echoServer, pki } from './helpers.js';

useCleanup();

describe('QUIC close', () => {
  it('releases a connection the peer closed at once, not after the drain period', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const accepted = new Promise<QuicConnection>((resolve) => server.once('connection', resolve));
    const conn = await dial(p, server.address().port);
    const serverSide = await accepted;

    // A busy process measures long round trips, and quiche drains a connection the peer closed
    // for three probe timeouts, which grow with them (seconds, on a node busy with thousands of
    // handshakes). Hold back our acknowledgement of the echo, as a busy client would.
    const stream = await conn.openStream();
    const echoed = new Promise<void>((resolve) =>
      stream.once('data', () => {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
        resolve();
      }),
    );
    stream.end('x');
    await echoed;
    await new Promise((resolve) => setTimeout(resolve, 50)); // the late acknowledgement arrives

    const started = performance.now();
    void conn.close({ code: 0, reason: 'leaving' });
    const info = await serverSide.closed;
    // The peer has said it is gone: nothing of it is kept for the drain period.
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(info).toMatchObject({ byPeer: true, app: true, code: 0, reason: 'leaving' });
    expect(server.connections.size).toBe(0);
  });

  it('still delivers what arrived before the peer closed to a reader that was behind', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const payload = Buffer.alloc(100 << 10, 7);
    server.removeAllListeners('connection');
    server.on('connection', (c: QuicConnection) =>
      c.on('stream', (s: QuicStream) => {
        s.on('error', () => {});
        s.resume();
        // Answer, then leave: the grace lets the answer be acknowledged before the close goes out.
        s.end(payload, () => void c.close({ code: 0, reason: 'done', graceMs: 2_000 }));
      }),
    );
    const conn = await dial(p, server.address().port);
    const stream = await conn.openStream();
    stream.end('ask');
    await conn.closed; // nothing has been read yet
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    await once(stream, 'end');
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });
});
