import { describe, expect, it } from 'vitest';
import { freePort, makeCa, makeServerCert, onCleanup, spawnNode, startLossyRelay, useCleanup } from '../harness/index.js';
import {
  QuicConnectTimeoutError,
  QuicConnectionRefusedError,
  QuicIdleTimeoutError,
  QuicPeerUnresponsiveError,
  QuicServer,
  QuicTlsError,
  connectQuic,
  type QuicConnection,
  type QuicStream,
} from '../../shared/quic/index.js';
import { ALPN, dial, echoServer, pki, roundTrip } from './helpers.js';

useCleanup();

describe('QUIC failures end, never hang', () => {
  it('notices a SIGKILLed peer within the idle timeout', async () => {
    const p = await pki();
    const peer = spawnNode('test/fixtures/quic-echo-server.ts', [p.server.keyPath, p.server.certPath, ALPN]);
    const [, port] = await peer.waitForLine(/listening (\d+)/);
    const conn = await dial(p, Number(port), { idleTimeoutMs: 1_500, keepAliveMs: 300 });
    expect((await roundTrip(await conn.openStream(), 'alive')).toString()).toBe('alive');
    const open = await conn.openStream();
    open.write('half a request');
    const streamError = new Promise<Error>((resolve) => open.on('error', resolve));
    await peer.kill('SIGKILL');
    const killedAt = performance.now();
    const info = await conn.closed;
    expect(performance.now() - killedAt).toBeLessThan(1_500 + 1_000);
    // Its port now answers ICMP port unreachable, which ends the connection at
    // once; without ICMP the idle timeout does (next test).
    expect(info.error).toSatisfy((e: unknown) => e instanceof QuicConnectionRefusedError || e instanceof QuicIdleTimeoutError);
    // Streams in flight end with the connection's error instead of hanging.
    expect(await streamError).toBe(info.error);
    await expect(conn.openStream()).rejects.toBe(info.error);
  });

  it('notices a frozen peer (no answers, no ICMP) by the idle timeout', async () => {
    const p = await pki();
    const peer = spawnNode('test/fixtures/quic-echo-server.ts', [p.server.keyPath, p.server.certPath, ALPN]);
    const [, port] = await peer.waitForLine(/listening (\d+)/);
    const conn = await dial(p, Number(port), { idleTimeoutMs: 1_500, keepAliveMs: 300 });
    expect((await roundTrip(await conn.openStream(), 'alive')).toString()).toBe('alive');
    peer.child.kill('SIGSTOP');
    const stoppedAt = performance.now();
    const info = await conn.closed;
    expect(info.error).toBeInstanceOf(QuicIdleTimeoutError);
    expect(performance.now() - stoppedAt).toBeLessThan(1_500 + 1_000);
    await peer.kill('SIGKILL');
  });

  it('drops a frozen peer that leaves our data unacknowledged within the unresponsive timeout, long before the idle timeout', async () => {
    const p = await pki();
    const peer = spawnNode('test/fixtures/quic-echo-server.ts', [p.server.keyPath, p.server.certPath, ALPN]);
    const [, port] = await peer.waitForLine(/listening (\d+)/);
    // Longer than quiche takes to back its probe timer off past a second (~1.8 s on loopback):
    // the wait must outlast that, not end with it.
    const conn = await dial(p, Number(port), { idleTimeoutMs: 30_000, keepAliveMs: 10_000, unresponsiveTimeoutMs: 3_000 });
    expect((await roundTrip(await conn.openStream(), 'alive')).toString()).toBe('alive');
    peer.child.kill('SIGSTOP');
    const open = await conn.openStream();
    const streamError = new Promise<Error>((resolve) => open.on('error', resolve));
    open.write('a request nobody will read');
    const sentAt = performance.now();
    const info = await conn.closed;
    expect(info.error).toBeInstanceOf(QuicPeerUnresponsiveError);
    expect(info.error!.message).toContain('3000 ms');
    expect(performance.now() - sentAt).toBeLessThan(3_000 + 2_000);
    expect(await streamError).toBe(info.error);
    await peer.kill('SIGKILL');
  });

  it('drops a peer that freezes in the middle of a transfer it was acknowledging', async () => {
    const p = await pki();
    const peer = spawnNode('test/fixtures/quic-echo-server.ts', [p.server.keyPath, p.server.certPath, ALPN]);
    const [, port] = await peer.waitForLine(/listening (\d+)/);
    const conn = await dial(p, Number(port), { idleTimeoutMs: 30_000, keepAliveMs: 10_000, unresponsiveTimeoutMs: 3_000 });
    const s = await conn.openStream();
    s.on('error', () => {});
    let echoed = 0;
    s.on('data', (d: Buffer) => (echoed += d.length));
    const chunk = Buffer.alloc(64 << 10);
    const writeOn = (): void => {
      while (!s.destroyed && s.write(chunk));
    };
    s.on('drain', writeOn);
    writeOn();
    await expect.poll(() => echoed, { timeout: 10_000 }).toBeGreaterThan(1 << 20);
    peer.child.kill('SIGSTOP');
    const stoppedAt = performance.now();
    const info = await conn.closed;
    expect(info.error).toBeInstanceOf(QuicPeerUnresponsiveError);
    expect(performance.now() - stoppedAt).toBeLessThan(3_000 + 2_000);
    await peer.kill('SIGKILL');
  });

  it('never suspects a live peer that is idle or whose reader stalls', async () => {
    const p = await pki();
    const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert });
    onCleanup(() => server.close());
    let first = true;
    server.on('connection', (c: QuicConnection) =>
      c.on('stream', (s: QuicStream) => {
        s.on('error', () => {});
        if (first)
          first = false; // never read: flow control stops the writer
        else s.pipe(s);
      }),
    );
    const conn = await dial(p, server.address().port, { keepAliveMs: 200, unresponsiveTimeoutMs: 1_000 });
    const stalled = await conn.openStream();
    stalled.on('error', () => {});
    const chunk = Buffer.alloc(1 << 20);
    let written = 0;
    const writeUntilBlocked = (): void => {
      while (written < 64 << 20 && stalled.write(chunk)) written += chunk.length;
    };
    stalled.on('drain', writeUntilBlocked);
    writeUntilBlocked();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(written).toBeLessThan(64 << 20); // the reader really stalled the writer
    expect(conn.isClosing).toBe(false);
    expect((await roundTrip(await conn.openStream(), 'still here')).toString()).toBe('still here');
  });

  it('fails a connect to a closed port quickly with a clear error', async () => {
    const p = await pki();
    const port = await freePort('udp');
    const started = performance.now();
    const err = await connectQuic({ alpn: [ALPN], host: '127.0.0.1', port, serverName: 'localhost', ca: p.ca.cert, connectTimeoutMs: 2_000 }).catch(
      (e: Error) => e,
    );
    expect(performance.now() - started).toBeLessThan(2_000 + 500);
    // Loopback answers with ICMP port unreachable; elsewhere the timeout fires.
    expect(err).toSatisfy((e: unknown) => e instanceof QuicConnectionRefusedError || e instanceof QuicConnectTimeoutError);
    expect((err as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}`));
  });

  it('fails a connect to a silent peer within the connect timeout', async () => {
    const p = await pki();
    // A UDP socket that swallows everything: no ICMP, no answer.
    const dgram = await import('node:dgram');
    const sink = dgram.createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
    const port = sink.address().port;
    const started = performance.now();
    const err = await connectQuic({ alpn: [ALPN], host: '127.0.0.1', port, serverName: 'localhost', ca: p.ca.cert, connectTimeoutMs: 800 }).catch(
      (e: Error) => e,
    );
    sink.close();
    expect(err).toBeInstanceOf(QuicConnectTimeoutError);
    expect((err as Error).message).toContain('within 800 ms');
    expect(performance.now() - started).toBeLessThan(800 + 700);
  });

  it('rejects a server certificate from another CA', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const otherCa = await makeCa('another CA');
    const err = await dial(p, server.address().port, { ca: otherCa.cert }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(QuicTlsError);
    expect((err as Error).message).toMatch(/unknown CA|certificate/);
  });

  it('rejects a certificate for another server name', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const err = await dial(p, server.address().port, { serverName: 'not-this.example' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(QuicTlsError);
  });

  it('rejects a client that speaks another ALPN', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const err = await dial(p, server.address().port, { alpn: ['something/9'] }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(QuicTlsError);
    expect((err as Error).message).toMatch(/application protocol/);
  });

  it('accepts an insecure client that skips verification', async () => {
    const ca = await makeCa('untrusted CA');
    const server = await echoServer({ ca, server: await makeServerCert(ca) });
    const conn = await connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: server.address().port, verifyPeer: false });
    expect((await roundTrip(await conn.openStream(), 'ok')).toString()).toBe('ok');
    await conn.close();
  });

  it('completes a few hundred requests through a relay that drops 1% each way', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const relay = await startLossyRelay({ target: { host: '127.0.0.1', port: server.address().port }, dropRate: 0.01 });
    const conn = await dial(p, relay.port);
    const body = Buffer.alloc(20_000, 0x61);
    let ok = 0;
    for (let batch = 0; batch < 10; batch++) {
      const results = await Promise.all(Array.from({ length: 30 }, async () => (await roundTrip(await conn.openStream(), body)).equals(body)));
      ok += results.filter(Boolean).length;
    }
    expect(ok).toBe(300);
    expect(relay.stats.toTarget.dropped + relay.stats.toClient.dropped).toBeGreaterThan(0);
  });

  it('finishes close() during traffic, resetting streams after the grace period', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const conn = await dial(p, server.address().port);
    const streams: QuicStream[] = [];
    const errors: Error[] = [];
    for (let i = 0; i < 20; i++) {
      const s = await conn.openStream();
      s.on('error', (e) => errors.push(e));
      s.resume();
      s.write(Buffer.alloc(256 << 10));
      streams.push(s);
    }
    const started = performance.now();
    const info = await conn.close({ code: 0x10, reason: 'bye', graceMs: 200 });
    expect(performance.now() - started).toBeLessThan(3_500);
    expect(info).toMatchObject({ byPeer: false, app: true, code: 0x10, reason: 'bye' });
    expect(streams.every((s) => s.destroyed)).toBe(true);
  });

  it('tells the client the application code and reason the server closed with', async () => {
    const p = await pki();
    const server = await echoServer(p);
    server.on('connection', (c) => void c.close({ code: 0x2, reason: 'unauthorized' }));
    const conn = await dial(p, server.address().port);
    const info = await conn.closed;
    expect(info).toMatchObject({ byPeer: true, app: true, code: 0x2, reason: 'unauthorized' });
  });
});
