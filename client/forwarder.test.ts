// The `reverst http` forwarder against a real local origin, reached as a visitor would:
// through a real node and tunnel, the forwarder taking each request's v2 head to an undici pool.
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { collect, onCleanup, randomStream, sha256, startHttpServer, useCleanup } from '../test/harness/index.js';
import { GROUP } from '../test/e2e/helpers.js';
import { postBodies, rawExchange, rawRequest, throughNode, watchStreams } from '../test/e2e/through-node.js';
import { createForwarder, type ForwarderOptions } from './forwarder.js';

useCleanup();

async function startForwarder(options: ForwarderOptions): Promise<{ url: string; port: number }> {
  const forwarder = createForwarder(options);
  onCleanup(() => forwarder.close());
  const { url, port } = await throughNode(forwarder);
  return { url, port };
}

function get(url: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers: { host: GROUP, ...headers }, agent: false }, (res) =>
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
    const res = await get(`${url}/a/b?c=d`, { 'x-custom': '1', connection: 'x-secret', 'x-secret': 's' });
    expect(res).toMatchObject({ status: 200, body: 'GET /a/b?c=d' });
    expect(res.headers['x-origin']).toBe('yes');
    expect(seen!.headers.host).toBe(`127.0.0.1:${origin.port}`);
    expect(seen!.headers['x-custom']).toBe('1');
    expect(seen!.headers['x-forwarded-host']).toBe(GROUP);
    expect(seen!.headers['x-secret']).toBeUndefined();
  });

  it('keeps the visitor Host with preserveHost, and prefixes the origin URL path', async () => {
    let seen: http.IncomingMessage | undefined;
    const origin = await startHttpServer((req, res) => {
      seen = req;
      res.end();
    });
    const { url } = await startForwarder({ origin: new URL(`${origin.url}/api/`), preserveHost: true });
    await get(`${url}/users`);
    expect(seen!.url).toBe('/api/users');
    expect(seen!.headers.host).toBe(GROUP);
  });

  it('streams 5 MB each way', async () => {
    const origin = await startHttpServer(async (req, res) => {
      const digest = await sha256(req);
      res.setHeader('x-upload-sha256', digest);
      randomStream(5 << 20, 'down').pipe(res);
    });
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ port, host: '127.0.0.1', method: 'PUT', path: '/', agent: false, headers: { host: GROUP } }, resolve).on('error', reject);
      randomStream(5 << 20, 'up').pipe(req);
    });
    expect(res.headers['x-upload-sha256']).toBe(await sha256(randomStream(5 << 20, 'up')));
    expect(await sha256(res)).toBe(await sha256(randomStream(5 << 20, 'down')));
  });

  it('lets go of each request stream whose body the origin leaves unread', async () => {
    const origin = await startHttpServer((_req, res) => res.end('ok'));
    const forwarder = createForwarder({ origin: new URL(origin.url) });
    onCleanup(() => forwarder.close());
    const watched = watchStreams(forwarder);
    const { port } = await throughNode(watched.handler);
    expect(new Set(await postBodies(port))).toEqual(new Set(['200 ok']));
    await Promise.all(watched.closed);
  });

  it('lets go of the origin request when the visitor leaves mid-response', async () => {
    let originClosedEarly: Promise<boolean> | undefined;
    const origin = await startHttpServer((_req, res) => {
      originClosedEarly = new Promise((resolve) => res.once('close', () => resolve(!res.writableFinished)));
      // An endless download: only the visitor leaving can end it.
      const chunk = Buffer.alloc(64 << 10);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', pump);
      pump();
    });
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const visitor = net.connect(port, '127.0.0.1');
    visitor.write(rawRequest(['GET /big HTTP/1.1']));
    let received = 0;
    await new Promise<void>((resolve) =>
      visitor.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 1 << 20) resolve();
      }),
    );
    visitor.resetAndDestroy();
    // The origin's response closed before it ended: it can write no more.
    expect(await originClosedEarly).toBe(true);
  });

  it('lets go of the origin request when the visitor leaves before the response began', async () => {
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
    visitor.write(rawRequest(['GET /slow HTTP/1.1']));
    await requestArrived;
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

  it('sends a GET again once when a reused keep-alive connection turns out closed, never a request with a body', async () => {
    // An origin that drops a connection on its second GET (what a reused connection looks like
    // when the origin closed it just as the request went out), and drops every POST's connection.
    const served = new WeakMap<net.Socket, number>();
    let posts = 0;
    const origin = await startHttpServer((req, res) => {
      if (req.method === 'POST') {
        posts++;
        return void req.socket.destroy();
      }
      const n = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, n);
      if (n > 1) req.socket.destroy();
      else res.end('first on this connection');
    });
    const { url, port } = await startForwarder({ origin: new URL(origin.url) });
    expect((await get(url)).status).toBe(200);
    expect(await get(url)).toMatchObject({ status: 200, body: 'first on this connection' });

    const post = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http
        .request({ port, host: '127.0.0.1', method: 'POST', agent: false, headers: { host: GROUP } }, resolve)
        .on('error', reject)
        .end('data'),
    );
    expect(post.statusCode).toBe(502);
    expect((await collect(post)).toString()).toMatch(/^bad gateway: 127\.0\.0\.1:\d+: (ECONNRESET|UND_ERR_SOCKET)\n$/);
    expect(posts).toBe(1);
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
    expect(res.body).toMatch(/^gateway timeout: 127\.0\.0\.1:\d+: UND_ERR_HEADERS_TIMEOUT\n$/);
    expect(performance.now() - started).toBeLessThan(5_000);
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
    visitor.write(`GET /ws HTTP/1.1\r\nHost: ${GROUP}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly;`);
    let text = '';
    visitor.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.endsWith('early;')) visitor.write('later');
    });
    await expect.poll(() => text).toMatch(/early;later$/);
    expect(text).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(text).toMatch(/X-Origin: yes/i);
    expect(origin.requests[0]!.headers.connection).toMatch(/upgrade/i);
    expect(origin.requests[0]!.headers.upgrade).toBe('echo');
    visitor.end();
    await once(visitor, 'close');
  });

  it('relays an origin that declines the upgrade, then ends the connection', async () => {
    const origin = await echoUpgradeOrigin();
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const reply = await rawExchange(port, `GET /ws HTTP/1.1\r\nHost: ${GROUP}\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(reply).toMatch(/\r\n\r\nwrong proto$/);
  });

  it('answers 502 on the raw connection when the origin is down', async () => {
    const origin = await startHttpServer((_req, res) => res.end());
    await origin.close();
    const { port } = await startForwarder({ origin: new URL(origin.url) });
    const reply = await rawExchange(port, `GET /ws HTTP/1.1\r\nHost: ${GROUP}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*ECONNREFUSED\n$/);
  });
});
