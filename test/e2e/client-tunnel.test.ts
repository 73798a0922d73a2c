// The client library and `reverst http` against real data-plane nodes, forwarding to a real
// origin: the shape in which tunnels were seen to freeze (shared/notes/quiche-native.md).
import { EventEmitter, once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { collect, onCleanup, randomStream, startHttpServer, useCleanup } from '../harness/index.js';
import { NotFoundError, UnauthorizedError, basic, connect, Tunnel, type ConnectOptions, type ReconnectingEvent } from '../../client/index.js';
import { createForwarder } from '../../client/forwarder.js';
import { GROUP, clientOptions, connectClient, startTestNode, visit, type TestNode } from './helpers.js';

useCleanup();

/** Quick retries: these tests wait for reconnects. */
const QUICK_RETRIES = { minDelayMs: 20, maxDelayMs: 500 };
const options = (t: TestNode, extra: Partial<ConnectOptions> = {}): ConnectOptions => clientOptions(t, { ...QUICK_RETRIES, ...extra });
const open = (t: TestNode, extra: Partial<ConnectOptions> = {}): Promise<Tunnel> => connectClient(t, { ...QUICK_RETRIES, ...extra });

/** A tunnel that forwards to `originUrl`, as `reverst http` runs it. */
async function forwardTo(t: TestNode, originUrl: string, extra: Partial<ConnectOptions> = {}): Promise<Tunnel> {
  const forwarder = createForwarder({ origin: new URL(originUrl) });
  onCleanup(() => forwarder.close());
  return open(t, { handler: forwarder, ...extra });
}

/** A visitor that reads `bytes` of a response and then hangs up. */
async function abandonDownload(port: number, path: string, bytes: number): Promise<void> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: ${GROUP}\r\n\r\n`);
  let received = 0;
  await new Promise<void>((resolve, reject) => {
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= bytes) resolve();
    });
  });
  socket.destroy();
}

const UPLOADS = 60;
/** Under the node's stream write buffer (256 KiB): the node never stops reading the visitor's socket for it. */
const UPLOAD_BYTES = 192 << 10;

/**
 * A visitor that starts a 64 MiB upload, sends `bytes` of it and hangs up once its request has
 * reached the handler (`events` 'reached'); resolves once the handler saw the request close
 * ('closed'): the node noticed the visitor leave and gave up the tunnel stream. One at a time, so
 * no abandoned stream is still open when the next starts.
 */
async function abandonUpload(port: number, path: string, bytes: number, events: EventEmitter): Promise<void> {
  const reached = once(events, 'reached');
  const closed = once(events, 'closed');
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(`POST ${path} HTTP/1.1\r\nHost: ${GROUP}\r\nContent-Length: ${64 << 20}\r\n\r\n`);
  socket.write(Buffer.alloc(bytes, 'u'));
  await reached;
  socket.destroy();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('the handler did not see an abandoned upload close within 10 s')), 10_000);
  });
  try {
    await Promise.race([closed, late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('client library against a data-plane node', () => {
  it('serves the seed example: PONG for every request', async () => {
    const t = await startTestNode();
    const tunnel = await open(t);
    expect(tunnel.tunnels).toEqual([{ address: t.address, nodeId: t.node.nodeId }]);
    const res = await visit(t.node.httpAddress.port, '/fo');
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('PONG');
  });

  it('rejects a wrong password with UnauthorizedError', async () => {
    const t = await startTestNode();
    await expect(connect(options(t, { auth: basic('user', 'wrong') }))).rejects.toBeInstanceOf(UnauthorizedError);
  });

  it('stops with NotFoundError for a group the node does not know', async () => {
    const t = await startTestNode();
    await expect(connect(options(t, { group: 'nobody' }))).rejects.toThrow(NotFoundError);
  });

  it('keeps retrying a group the node does not know when asked to', async () => {
    const t = await startTestNode();
    const tunnel = new Tunnel(options(t, { group: 'nobody', retryNotFound: true }));
    onCleanup(() => tunnel.close());
    const retries: ReconnectingEvent[] = [];
    tunnel.on('reconnecting', (r) => retries.push(r));
    await expect.poll(() => retries.length).toBeGreaterThanOrEqual(2);
    expect(retries[0]!.error).toBeInstanceOf(NotFoundError);
    await tunnel.close();
    await expect(tunnel.ready).rejects.toThrow();
  });

  it('moves to another node when its node drains, without dropping the request in flight', async () => {
    const a = await startTestNode({ nodeId: 'node-a', drainDeadlineMs: 5_000, drainTimeoutMs: 5_000 });
    const b = await startTestNode({ nodeId: 'node-b' });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const tunnel = await open(a, {
      addresses: [a.address, b.address],
      handler: async (request: Request) => {
        if (new URL(request.url).pathname === '/slow') {
          arrived();
          await released;
        }
        return new Response('PONG');
      },
    });
    const slow = visit(a.node.httpAddress.port, '/slow');
    await arrival;
    const moved = once(tunnel, 'ready');
    const draining = a.node.drain();
    expect(await moved).toEqual([{ address: b.address, nodeId: 'node-b' }]);
    expect((await visit(b.node.httpAddress.port, '/')).body.toString()).toBe('PONG');
    release();
    expect((await slow).body.toString()).toBe('PONG');
    await draining;
  });

  it('comes back when its node restarts on the same address', async () => {
    const first = await startTestNode({ nodeId: 'before' });
    const tunnel = await open(first);
    const retried = once(tunnel, 'reconnecting');
    await first.node.stop();
    await retried;
    const again = await startTestNode({ nodeId: 'after', tunnelAddress: first.address });
    await once(tunnel, 'ready');
    expect((await visit(again.node.httpAddress.port, '/')).body.toString()).toBe('PONG');
  });

  it('stays usable after visitors abandon uploads its handler had not read yet', async () => {
    const t = await startTestNode();
    let reached = 0;
    const uploads = new EventEmitter();
    await open(t, {
      handler: (req: http.IncomingMessage, res: http.ServerResponse) => {
        if (req.url === '/sink') return void req.resume().once('end', () => res.end('read'));
        if (req.url !== '/upload') return void res.end('PONG');
        // The upload's handler waits before it reads (here: until the visitor has gone).
        reached++;
        uploads.emit('reached');
        req.once('close', () => {
          res.destroy();
          uploads.emit('closed');
        });
      },
    });
    const port = t.node.httpAddress.port;
    // A fast upload first, as a tunnel in use has carried: quiche 0.18 grows the connection's
    // flow-control window (it starts at 48 KiB) only while the reader keeps up.
    expect((await visit(port, '/sink', { method: 'POST', body: Buffer.alloc(64 << 20), timeoutMs: 30_000 })).body.toString()).toBe('read');
    // Each upload dropped unread once took its unread bytes of the tunnel's credit for good (the
    // transport tests in test/quic/credit.test.ts show it with windows that cannot grow).
    for (let i = 0; i < UPLOADS; i++) await abandonUpload(port, '/upload', UPLOAD_BYTES, uploads);
    const answer = await visit(port, '/', { timeoutMs: 5_000 }).then(
      (res) => `${res.status} ${res.body}`,
      (err: Error) => err.message,
    );
    expect(answer).toBe('200 PONG');
    expect(reached).toBe(UPLOADS);
  });

  it('close() lets the request in flight finish', async () => {
    const t = await startTestNode();
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const tunnel = await open(t, {
      handler: async () => {
        arrived();
        await new Promise((resolve) => setTimeout(resolve, 200));
        return new Response('finished');
      },
    });
    const inFlight = visit(t.node.httpAddress.port, '/');
    await arrival;
    await tunnel.close({ graceMs: 5_000 });
    expect((await inFlight).body.toString()).toBe('finished');
    expect((await visit(t.node.httpAddress.port, '/')).status).toBe(503);
  });
});

describe('forwarding to an origin through a data-plane node', () => {
  /** An origin with an endless download, counting the responses it had to abandon. */
  async function endlessOrigin(): Promise<{ url: string; abandoned: () => number }> {
    let abandoned = 0;
    const origin = await startHttpServer((req, res) => {
      res.once('close', () => {
        if (!res.writableFinished) abandoned++;
      });
      if (req.url === '/endless') {
        // Only the visitor leaving can end it: the origin writes while there is room.
        const chunk = Buffer.alloc(64 << 10);
        const pump = () => {
          while (!res.destroyed && res.write(chunk));
        };
        res.on('drain', pump);
        pump();
      } else if (req.url === '/big') randomStream(10 << 20, 'big').pipe(res);
      else res.end('small');
    });
    return { url: origin.url, abandoned: () => abandoned };
  }

  it('stays usable after visitors abandon downloads', async () => {
    const origin = await endlessOrigin();
    const t = await startTestNode();
    await forwardTo(t, origin.url);
    const port = t.node.httpAddress.port;
    // Each download left unread would pin up to a stream window of the connection's credit.
    for (let i = 0; i < 6; i++) await abandonDownload(port, '/endless', 1 << 20);
    for (let i = 0; i < 5; i++) expect((await visit(port, '/small', { timeoutMs: 5_000 })).body.toString()).toBe('small');
    expect((await visit(port, '/big', { timeoutMs: 30_000 })).body.length).toBe(10 << 20);
  });

  // Skipped until shared/quic notices a stream quiche has already collected: when the node's
  // reset arrives after the request side finished, quiche drops the stream and answers every
  // later send with Done, so the response writer waits (until the 60 s origin timeout) instead
  // of seeing the reset. Unskip with that transport fix.
  it('lets go of the origin as soon as the visitor leaves', async () => {
    const origin = await endlessOrigin();
    const t = await startTestNode();
    await forwardTo(t, origin.url);
    for (let i = 0; i < 6; i++) await abandonDownload(t.node.httpAddress.port, '/endless', 1 << 20);
    await expect.poll(() => origin.abandoned()).toBe(6);
  });

  it('keeps working when the origin closes its idle keep-alive connections', async () => {
    let connections = 0;
    const origin = await startHttpServer((_req, res) => res.end('fresh'));
    origin.server.keepAliveTimeout = 100;
    origin.server.on('connection', () => connections++);
    const t = await startTestNode();
    await forwardTo(t, origin.url);
    for (let i = 0; i < 4; i++) {
      expect((await visit(t.node.httpAddress.port, '/', { timeoutMs: 5_000 })).body.toString()).toBe('fresh');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(connections).toBe(4);
  });

  it('passes an upgrade through as a raw pipe', async () => {
    const origin = await startHttpServer((_req, res) => res.end());
    origin.server.on('upgrade', (_req, socket: net.Socket, head: Buffer) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      socket.write(head);
      socket.pipe(socket);
    });
    const t = await startTestNode();
    await forwardTo(t, origin.url);
    const visitor = net.connect(t.node.httpAddress.port, '127.0.0.1');
    visitor.write(`GET /ws HTTP/1.1\r\nHost: ${GROUP}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
    let text = '';
    visitor.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.endsWith('\r\n\r\n')) visitor.write('ping');
    });
    await expect.poll(() => text).toMatch(/ping$/);
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    visitor.destroy();
  });

  it('lets an upgraded connection carry on while its node drains, and stops once it closes', async () => {
    const origin = await startHttpServer((_req, res) => res.end());
    origin.server.on('upgrade', (_req, socket: net.Socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      socket.pipe(socket);
    });
    const t = await startTestNode({ drainTimeoutMs: 30_000 });
    await forwardTo(t, origin.url);
    const visitor = net.connect(t.node.httpAddress.port, '127.0.0.1');
    visitor.write(`GET /ws HTTP/1.1\r\nHost: ${GROUP}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
    let text = '';
    visitor.on('data', (chunk: Buffer) => (text += chunk.toString()));
    await expect.poll(() => text).toMatch(/\r\n\r\n$/);
    const draining = t.node.drain();
    visitor.write('still there?');
    await expect.poll(() => text, { timeout: 10_000 }).toMatch(/still there\?$/);
    visitor.end();
    await draining;
    expect(visitor.readableEnded).toBe(true);
  });

  it('streams an upload to the origin', async () => {
    const origin = await startHttpServer(async (req, res) => res.end(String((await collect(req)).length)));
    const t = await startTestNode();
    await forwardTo(t, origin.url);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: t.node.httpAddress.port, method: 'POST', path: '/up', headers: { host: GROUP } }, resolve);
      req.on('error', reject);
      randomStream(8 << 20, 'up').pipe(req);
    });
    expect((await collect(res)).toString()).toBe(String(8 << 20));
  });
});
