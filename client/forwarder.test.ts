// The `reverst http` forwarder against a real local origin. The forwarder's server listens on
// loopback here; in a tunnel the same server is fed QUIC streams.
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { collect, onCleanup, randomStream, sha256, startHttpServer, useCleanup } from '../test/harness/index.js';
import { createForwarder, type ForwarderOptions } from './forwarder.js';
import { toHttpServer } from './handler.js';
import { silentLogger } from '../shared/log.js';

useCleanup();

async function startForwarder(options: ForwarderOptions): Promise<{ url: string; port: number }> {
  const forwarder = createForwarder(options);
  const server = toHttpServer(forwarder.server, silentLogger);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => {
    forwarder.close();
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port };
}

function get(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers, agent: false }, (res) =>
        collect(res).then((b) => resolve({ status: res.statusCode!, headers: res.headers, body: b.toString() }), reject),
      )
      .on('error', reject);
  });
}

describe('forwarding to a local origin', () => {
  it('preserves method, path and headers, rewrites Host to the origin and drops hop-by-hop headers', async () => {
    let seen: http.IncomingMessage | undefined;
    const origin = await startHttpServer((req, res) => {
      seen = req;
      res.setHeader('x-origin', 'yes');
      res.end(`${req.method} ${req.url}`);
    });
    const { url } = await startForwarder({ origin: new URL(origin.url) });
    const res = await get(`${url}/a/b?c=d`, { host: 'public.example', 'x-custom': '1', connection: 'x-secret', 'x-secret': 's' });
    expect(res).toMatchObject({ status: 200, body: 'GET /a/b?c=d' });
    expect(res.headers['x-origin']).toBe('yes');
    expect(seen!.headers.host).toBe(`127.0.0.1:${origin.port}`);
    expect(seen!.headers['x-custom']).toBe('1');
    expect(seen!.headers['x-secret']).toBeUndefined();
  });

  it('keeps the visitor Host with preserveHost, and prefixes the origin URL path', async () => {
    let seen: http.IncomingMessage | undefined;
    const origin = await startHttpServer((req, res) => {
      seen = req;
      res.end();
    });
    const { url } = await startForwarder({ origin: new URL(`${origin.url}/api/`), preserveHost: true });
    await get(`${url}/users`, { host: 'public.example' });
    expect(seen!.url).toBe('/api/users');
    expect(seen!.headers.host).toBe('public.example');
  });

  it('streams 5 MB each way', async () => {
    const origin = await startHttpServer(async (req, res) => {
      const digest = await sha256(req);
      res.setHeader('x-upload-sha256', digest);
      randomStream(5 << 20, 'down').pipe(res);
    });
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ port, host: '127.0.0.1', method: 'PUT', path: '/', agent: false }, resolve).on('error', reject);
      randomStream(5 << 20, 'up').pipe(req);
    });
    expect(res.headers['x-upload-sha256']).toBe(await sha256(randomStream(5 << 20, 'up')));
    expect(await sha256(res)).toBe(await sha256(randomStream(5 << 20, 'down')));
  });

  it('destroys the origin request when the visitor leaves mid-response', async () => {
    let originClosedEarly: Promise<boolean> | undefined;
    let written = 0;
    const origin = await startHttpServer((_req, res) => {
      originClosedEarly = new Promise((resolve) => res.once('close', () => resolve(!res.writableFinished)));
      // An endless download: only the visitor leaving can end it.
      const chunk = Buffer.alloc(64 << 10);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) written += chunk.length;
      };
      res.on('drain', pump);
      pump();
    });
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const visitor = net.connect(port, '127.0.0.1');
    visitor.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    let received = 0;
    await new Promise<void>((resolve) =>
      visitor.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 1 << 20) resolve();
      }),
    );
    visitor.resetAndDestroy();
    expect(await originClosedEarly).toBe(true);
    const after = written;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(written).toBe(after);
  });

  it('destroys the origin request when the visitor leaves before the response began', async () => {
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
    let originLetGo: Promise<unknown> | undefined;
    const origin = await startHttpServer((req) => {
      // Still thinking: no response yet.
      originLetGo = once(req.socket, 'close');
      arrived();
    });
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const visitor = net.connect(port, '127.0.0.1');
    visitor.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await requestArrived;
    // A reset, as the node does to a tunnel stream whose visitor left (a plain FIN would read as a half-close).
    visitor.resetAndDestroy();
    await originLetGo;
  });

  it('survives the origin closing idle keep-alive connections between requests', async () => {
    let connections = 0;
    const origin = await startHttpServer((_req, res) => res.end('fine'));
    origin.server.keepAliveTimeout = 100;
    origin.server.on('connection', () => connections++);
    const { url } = await startForwarder({ origin: new URL(origin.url) });
    expect((await get(url)).body).toBe('fine');
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect((await get(url)).body).toBe('fine');
    expect(connections).toBe(2);
  });

  it('retries a bodiless request once when a reused keep-alive socket turns out closed, never one with a body', async () => {
    // An origin that drops every connection on its second request: what a reused socket
    // looks like when the origin closed it just as the request went out.
    const served = new WeakMap<net.Socket, number>();
    const origin = await startHttpServer((req, res) => {
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1) req.socket.destroy();
      else req.resume().on('end', () => res.end('first on this socket'));
    });
    const { url, port } = await startForwarder({ origin: new URL(origin.url) });
    expect((await get(url)).status).toBe(200);
    expect(await get(url)).toMatchObject({ status: 200, body: 'first on this socket' });

    const post = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.request({ port, host: '127.0.0.1', method: 'POST', agent: false }, resolve).on('error', reject).end('data'),
    );
    expect(post.statusCode).toBe(502);
    expect((await collect(post)).toString()).toMatch(/^bad gateway: 127\.0\.0\.1:\d+: ECONNRESET\n$/);
  });

  it('answers 502 with a short text body when the origin is down', async () => {
    const origin = await startHttpServer((_req, res) => res.end());
    await origin.close();
    const { url } = await startForwarder({ origin: new URL(origin.url) });
    const res = await get(url);
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.body).toMatch(/^bad gateway: 127\.0\.0\.1:\d+: ECONNREFUSED\n$/);
  });

  it('answers 504 when the origin stays silent past the timeout, and lets go of it', async () => {
    let originGaveUp: Promise<void> | undefined;
    const origin = await startHttpServer((req) => {
      originGaveUp = once(req.socket, 'close').then(() => undefined);
    });
    const { url } = await startForwarder({ origin: new URL(origin.url), timeoutMs: 200 });
    const started = performance.now();
    const res = await get(url);
    expect(res.status).toBe(504);
    expect(performance.now() - started).toBeLessThan(2_000);
    await originGaveUp;
  });
});

describe('upgrade passthrough', () => {
  async function echoUpgradeOrigin(): Promise<{ url: string; requests: http.IncomingMessage[] }> {
    const requests: http.IncomingMessage[] = [];
    const origin = await startHttpServer((_req, res) => res.writeHead(400).end('upgrade only'));
    origin.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      requests.push(req);
      if (req.headers.upgrade !== 'echo') {
        socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\n\r\nwrong proto');
        return;
      }
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Origin: yes\r\n\r\n');
      socket.write(head);
      socket.pipe(socket);
    });
    return { url: origin.url, requests };
  }

  it('relays the 101 and then pipes bytes both ways, including bytes sent with the request', async () => {
    const origin = await echoUpgradeOrigin();
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const visitor = net.connect(port, '127.0.0.1');
    visitor.write('GET /ws HTTP/1.1\r\nHost: public.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly;');
    let text = '';
    visitor.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.endsWith('early;')) visitor.write('later');
    });
    await expect.poll(() => text).toMatch(/early;later$/);
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(text).toContain('X-Origin: yes');
    expect(origin.requests[0]!.headers.connection).toBe('Upgrade');
    expect(origin.requests[0]!.headers.upgrade).toBe('echo');
    visitor.end();
    await once(visitor, 'close');
  });

  it('relays an origin that declines the upgrade, then ends the stream', async () => {
    const origin = await echoUpgradeOrigin();
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const visitor = net.connect(port, '127.0.0.1');
    visitor.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n');
    const reply = (await collect(visitor)).toString();
    expect(reply).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(reply).toMatch(/\r\n\r\nwrong proto$/);
  });

  it('answers 502 on the raw stream when the origin is down', async () => {
    const origin = await startHttpServer((_req, res) => res.end());
    await origin.close();
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const visitor = net.connect(port, '127.0.0.1');
    visitor.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    expect((await collect(visitor)).toString()).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*ECONNREFUSED\n$/);
  });
});
