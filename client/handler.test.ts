// The handler forms served by a real http.Server on a real loopback socket, as the tunnel feeds them.
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { collect, onCleanup, randomStream, sha256, useCleanup } from '../test/harness/index.js';
import { createLogger, type Logger } from '../shared/log.js';
import { toHttpServer, type Handler } from './handler.js';

useCleanup();

function captureLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', stream: { write: (line: string) => lines.push(line) } });
  return { logger, lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function serve(handler: Handler, logger = captureLogger().logger): Promise<{ url: string; port: number; server: http.Server }> {
  const server = toHttpServer(handler, logger);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, port, server };
}

/** Sends `raw` and half-closes, as the node ends its side of a tunnel stream after the request. */
async function halfClosedExchange(port: number, raw: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.end(raw);
  return (await collect(socket)).toString();
}

describe('fetch handler', () => {
  it('sees the request as a web Request: URL from Host and X-Forwarded-Proto, headers without hop-by-hop ones', async () => {
    let seen: Request | undefined;
    const { port } = await serve((request: Request) => {
      seen = request;
      return new Response('ok');
    });
    const reply = await halfClosedExchange(
      port,
      'GET /a/b?x=1 HTTP/1.1\r\nHost: app.example\r\nX-Forwarded-Proto: https\r\nX-Test: 1\r\nX-Test: 2\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\n',
    );
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(seen!.url).toBe('https://app.example/a/b?x=1');
    expect(seen!.method).toBe('GET');
    expect(seen!.headers.get('x-test')).toBe('1, 2');
    expect(seen!.headers.has('keep-alive')).toBe(false);
    expect(seen!.headers.has('connection')).toBe(false);
  });

  it('keeps a path that looks like a scheme-relative URL a path', async () => {
    let seen = '';
    const { port } = await serve((request: Request) => {
      seen = request.url;
      return new Response('ok');
    });
    await halfClosedExchange(port, 'GET //evil.example/x HTTP/1.1\r\nHost: app.example\r\n\r\n');
    expect(seen).toBe('http://app.example//evil.example/x');
  });

  it('answers after the request side has ended (half-close), as over a tunnel stream', async () => {
    const { port } = await serve(async (request: Request) => new Response(`got ${(await request.text()).length}`));
    const reply = await halfClosedExchange(port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(reply).toContain('got 5');
  });

  it('streams a 5 MB body each way', async () => {
    const { url } = await serve(async (request: Request) => {
      const digest = await sha256(request.body as unknown as AsyncIterable<Uint8Array>);
      const body = Readable.toWeb(randomStream(5 << 20, 'down')) as ReadableStream<Uint8Array>;
      return new Response(body, { headers: { 'x-upload-sha256': digest } });
    });
    const upload = Readable.toWeb(randomStream(5 << 20, 'up')) as ReadableStream<Uint8Array>;
    const res = await fetch(url, { method: 'POST', body: upload, duplex: 'half' } as RequestInit);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-upload-sha256')).toBe(await sha256(randomStream(5 << 20, 'up')));
    expect(await sha256(res.body as unknown as AsyncIterable<Uint8Array>)).toBe(await sha256(randomStream(5 << 20, 'down')));
  });

  it('passes status, status text and repeated Set-Cookie headers through', async () => {
    const { url } = await serve(() => {
      const headers = new Headers({ 'content-type': 'text/plain' });
      headers.append('set-cookie', 'a=1');
      headers.append('set-cookie', 'b=2');
      return new Response('made', { status: 201, statusText: 'Made It', headers });
    });
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get(url, resolve));
    expect(res.statusCode).toBe(201);
    expect(res.statusMessage).toBe('Made It');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect((await collect(res)).toString()).toBe('made');
  });

  it('sends no body for HEAD or 204', async () => {
    const { port } = await serve((request: Request) => (request.url.endsWith('/empty') ? new Response(null, { status: 204 }) : new Response('body')));
    expect(await halfClosedExchange(port, 'HEAD / HTTP/1.1\r\nHost: x\r\n\r\n')).not.toContain('body');
    expect(await halfClosedExchange(port, 'GET /empty HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 204 No Content\r\n[\s\S]*\r\n\r\n$/);
  });

  it('answers 500 with a short body and logs when the handler throws or returns no Response', async () => {
    const capture = captureLogger();
    const { url } = await serve((request: Request) => {
      if (request.url.endsWith('/throw')) throw new Error('boom');
      return 'not a response' as unknown as Response;
    }, capture.logger);
    for (const path of ['/throw', '/wrong']) {
      const res = await fetch(url + path);
      expect(res.status).toBe(500);
      expect(await res.text()).toBe('internal server error\n');
    }
    const errors = capture.lines().filter((l) => l.level === 'error');
    expect(errors.map((l) => (l.error as { message: string }).message)).toEqual(['boom', expect.stringContaining('not a Response')]);
  });

  it('stops pulling the response body and aborts request.signal when the visitor leaves', async () => {
    let pulls = 0;
    let cancelled = false;
    let signalAborted: Promise<void> | undefined;
    const { port } = await serve((request: Request) => {
      signalAborted = new Promise((resolve) => request.signal.addEventListener('abort', () => resolve()));
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          pulls++;
          controller.enqueue(new Uint8Array(64 << 10));
        },
        cancel() {
          cancelled = true;
        },
      });
      return new Response(body);
    });
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    let received = 0;
    await new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 1 << 20) resolve();
      }),
    );
    socket.destroy();
    await signalAborted;
    await expect.poll(() => cancelled).toBe(true);
    const after = pulls;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(pulls).toBe(after);
  });

  it('applies backpressure: a visitor that does not read holds the body back', async () => {
    let pulled = 0;
    const { port } = await serve(
      () =>
        new Response(
          new ReadableStream<Uint8Array>({
            pull(controller) {
              pulled += 64 << 10;
              controller.enqueue(new Uint8Array(64 << 10));
            },
          }),
        ),
    );
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    socket.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.destroy();
    // Socket buffers on both ends hold a few MB at most; an unbounded reader would have pulled far more.
    expect(pulled).toBeLessThan(32 << 20);
  });
});

describe('Node request listener', () => {
  it('is chosen for a function declaring (req, res), and answers after a half-close', async () => {
    const { port } = await serve((req: http.IncomingMessage, res: http.ServerResponse) => {
      res.setHeader('x-url', req.url ?? '');
      res.end('from listener');
    });
    const reply = await halfClosedExchange(port, 'GET /p HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(reply).toContain('x-url: /p');
    expect(reply.endsWith('from listener')).toBe(true);
  });

  it('answers 500 when it throws or rejects, and the process lives on', async () => {
    const capture = captureLogger();
    const { url } = await serve(
      {
        listener: async (req) => {
          if (req.url === '/sync') throw new Error('sync boom');
          await Promise.resolve();
          throw new Error('async boom');
        },
      },
      capture.logger,
    );
    expect((await fetch(`${url}/sync`)).status).toBe(500);
    expect((await fetch(`${url}/async`)).status).toBe(500);
    expect(capture.lines().filter((l) => l.level === 'error')).toHaveLength(2);
  });

  it('accepts the explicit { fetch } form, whatever the function length', async () => {
    const { url } = await serve({ fetch: (_request: Request, ..._rest: unknown[]) => new Response('explicit') });
    expect(await (await fetch(url)).text()).toBe('explicit');
  });

  it('uses a given http.Server as is, upgrade listener included, and turns on httpAllowHalfOpen', async () => {
    const server = http.createServer((_req, res) => res.end('plain'));
    server.on('upgrade', (_req, socket: net.Socket, head: Buffer) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      socket.write(head);
      socket.pipe(socket);
    });
    const { port } = await serve(server);
    expect((server as unknown as { httpAllowHalfOpen: boolean }).httpAllowHalfOpen).toBe(true);
    const reply = await halfClosedExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping');
    expect(reply).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n[\s\S]*\r\n\r\nping$/);
  });
});
