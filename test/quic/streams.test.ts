import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { onCleanup, useCleanup } from '../harness/index.js';
import { QuicServer, QuicStreamResetError, type QuicConnection, type QuicStream } from '../../shared/quic/index.js';
import { ALPN, dial, echoServer, pki, roundTrip } from './helpers.js';

useCleanup();

describe('QUIC streams', () => {
  it('round-trips on client-opened streams, with ALPN and the peer certificate', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const conn = await dial(p, server.address().port);
    expect(conn.alpn).toBe(ALPN);
    expect(conn.peerCertificates().length).toBeGreaterThan(0);
    for (let i = 0; i < 20; i++) {
      const reply = await roundTrip(await conn.openStream(), `hello ${i}`);
      expect(reply.toString()).toBe(`hello ${i}`);
    }
  });

  it('round-trips on server-opened streams', async () => {
    const p = await pki();
    const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert });
    const serverConn = new Promise<QuicConnection>((resolve) => server.on('connection', resolve));
    const conn = await dial(p, server.address().port);
    conn.on('stream', (s: QuicStream) => s.pipe(s));
    const sc = await serverConn;
    const replies = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await roundTrip(await sc.openStream(), `from server ${i}`)).toString()));
    expect(replies).toEqual(Array.from({ length: 10 }, (_, i) => `from server ${i}`));
    await server.close();
  });

  it('completes 1,000 concurrent streams against a peer that allows 10 at a time', async () => {
    const p = await pki();
    const server = await echoServer(p, { maxStreams: 10 });
    const conn = await dial(p, server.address().port);
    let open = 0;
    let maxOpen = 0;
    const replies = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const s = await conn.openStream();
        maxOpen = Math.max(maxOpen, ++open);
        const reply = await roundTrip(s, `#${i}`);
        open--;
        return reply.toString() === `#${i}`;
      }),
    );
    expect(replies.every(Boolean)).toBe(true);
    expect(maxOpen).toBeLessThanOrEqual(10);
  });

  it('carries 8 MB each way on one stream unchanged', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const conn = await dial(p, server.address().port);
    const payload = Buffer.alloc(8 << 20);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i, i);
    const reply = await roundTrip(await conn.openStream(), payload);
    expect(reply.equals(payload)).toBe(true);
  });

  it('does not let one stalled reader delay another stream', async () => {
    const p = await pki();
    const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert });
    server.on('connection', (c: QuicConnection) =>
      c.on('stream', (s: QuicStream) => {
        s.once('data', (d: Buffer) => {
          // 'flood' streams get 32 MB pushed at them; anything else is echoed.
          if (d.toString() === 'flood') {
            const block = Buffer.alloc(1 << 20);
            let left = 32;
            const pump = (): void => {
              while (left-- > 0) if (!s.write(block)) return void s.once('drain', pump);
              s.end();
            };
            pump();
          } else s.end(d);
        });
        s.on('error', () => {});
      }),
    );
    const conn = await dial(p, server.address().port);
    const stalled = await conn.openStream();
    // Its write side stays open: the server's close below ends it with an error.
    stalled.on('error', () => {});
    stalled.write('flood');
    stalled.pause(); // never read: its data piles up against flow control
    await new Promise((r) => setTimeout(r, 300));
    const started = performance.now();
    for (let i = 0; i < 50; i++) expect((await roundTrip(await conn.openStream(), `ping ${i}`)).toString()).toBe(`ping ${i}`);
    expect(performance.now() - started).toBeLessThan(5_000);
    // The stalled stream still delivers everything once read.
    let got = 0;
    stalled.on('data', (d: Buffer) => (got += d.length));
    stalled.resume();
    await once(stalled, 'end');
    expect(got).toBe(32 << 20);
    await server.close();
  });

  it('ends a stream reset by one side cleanly on the other', async () => {
    const p = await pki();
    const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert });
    const streams: QuicStream[] = [];
    const first = new Promise<QuicStream>((resolve) =>
      server.on('connection', (c: QuicConnection) =>
        c.on('stream', (s: QuicStream) => {
          streams.push(s);
          if (streams.length === 1) resolve(s);
          else s.pipe(s);
        }),
      ),
    );
    const conn = await dial(p, server.address().port);
    const s = await conn.openStream();
    s.write('hello');
    const peer = await first;
    const peerError = new Promise<Error>((resolve) => peer.on('error', resolve));
    const peerClosed = new Promise((resolve) => peer.on('close', resolve));
    s.reset(7);
    const err = await peerError;
    expect(err).toBeInstanceOf(QuicStreamResetError);
    expect((err as QuicStreamResetError).resetCode).toBe(7);
    await peerClosed;
    expect(s.destroyed).toBe(true);
    // The connection is unharmed.
    expect((await roundTrip(await conn.openStream(), 'still here')).toString()).toBe('still here');
    await server.close();
  });

  it('tells a stream with nothing to write that the peer gave up on it', async () => {
    const p = await pki();
    const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert });
    onCleanup(() => server.close());
    // The server reads the whole request and then sits on it, as a long poll does.
    let first = true;
    const held = new Promise<QuicStream>((resolve) =>
      server.on('connection', (c: QuicConnection) =>
        c.on('stream', (s: QuicStream) => {
          s.on('error', () => {});
          if (!first) return void s.pipe(s);
          first = false;
          s.on('end', () => resolve(s)).resume();
        }),
      ),
    );
    const conn = await dial(p, server.address().port);
    const s = await conn.openStream();
    s.on('error', () => {});
    s.end('a request');
    const peer = await held;
    const peerError = new Promise<Error>((resolve) => peer.on('error', resolve));
    s.reset(9);
    // quiche would only say so on the server's next write; none comes.
    const err = await peerError;
    expect(err).toBeInstanceOf(QuicStreamResetError);
    expect([0, 9]).toContain((err as QuicStreamResetError).resetCode);
    expect((await roundTrip(await conn.openStream(), 'still here')).toString()).toBe('still here');
  });
});
