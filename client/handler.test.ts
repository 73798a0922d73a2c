// The handler forms, served through a real node and tunnel: a visitor's request reaches each
// form as the v2 head the node sends (no HTTP parsing on the client for fetch handlers).
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { collect, randomStream, sha256, useCleanup } from '../test/harness/index.js';
import { GROUP } from '../test/e2e/helpers.js';
import { postBodies, rawExchange, rawRequest, throughNode, watchStreams } from '../test/e2e/through-node.js';
import { createLogger, type Logger } from '../shared/log.js';
import { writeTextResponse } from './tunnel-request.js';

useCleanup();

function captureLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', stream: { write: (line: string) => lines.push(line) } });
  return { logger, lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** A GET through the node with the Host that routes to the tunnel (fetch() cannot set Host). */
async function get(url: string): Promise<{ status: number; text(): Promise<string> }> {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(url, { headers: { host: GROUP } }, resolve).on('error', reject));
  const body = (await collect(res)).toString();
  return { status: res.statusCode ?? 0, text: async () => body };
}

describe('fetch handler', () => {
  it('sees the request as a web Request: URL from the Host, headers as sent less hop-by-hop ones', async () => {
    let seen: Request | undefined;
    const { port } = await throughNode((request: Request) => {
      seen = request;
      return new Response('ok');
    });
    const reply = await rawExchange(port, rawRequest(['GET /a/b?x=1 HTTP/1.1', 'X-Test: 1', 'X-Test: 2', 'Keep-Alive: timeout=5', 'TE: trailers']));
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(seen!.url).toBe(`http://${GROUP}/a/b?x=1`);
    expect(seen!.method).toBe('GET');
    expect(seen!.headers.get('host')).toBe(GROUP);
    expect(seen!.headers.get('x-test')).toBe('1, 2');
    for (const name of ['keep-alive', 'connection', 'te']) expect(seen!.headers.has(name), name).toBe(false);
    expect(seen!.headers.get('x-forwarded-proto')).toBe('http');
  });

  it('builds an https URL when a trusted proxy in front of the node says the visitor came over https', async () => {
    let seen = '';
    const { port } = await throughNode(
      (request: Request) => {
        seen = request.url;
        return new Response('ok');
      },
      { trustedProxies: ['127.0.0.1/32'] },
    );
    await rawExchange(port, rawRequest(['GET /x HTTP/1.1', 'X-Forwarded-Proto: https']));
    expect(seen).toBe(`https://${GROUP}/x`);
  });

  it('keeps a path that looks like a scheme-relative URL a path', async () => {
    let seen = '';
    const { port } = await throughNode((request: Request) => {
      seen = request.url;
      return new Response('ok');
    });
    await rawExchange(port, rawRequest(['GET //evil.example/x HTTP/1.1']));
    expect(seen).toBe(`http://${GROUP}//evil.example/x`);
  });

  it('reads a request body, and an empty chunked one', async () => {
    const { port } = await throughNode(async (request: Request) => new Response(`got ${(await request.text()).length}`));
    expect(await rawExchange(port, rawRequest(['POST / HTTP/1.1', 'Content-Length: 5'], 'hello'))).toMatch(/\r\n\r\n(?:[0-9a-f]+\r\n)?got 5/);
    expect(await rawExchange(port, rawRequest(['POST / HTTP/1.1', 'Transfer-Encoding: chunked'], '0\r\n\r\n'))).toMatch(/\r\n\r\n(?:[0-9a-f]+\r\n)?got 0/);
  });

  it('streams a 5 MB body each way', async () => {
    const { url } = await throughNode(async (request: Request) => {
      const digest = await sha256(request.body as unknown as AsyncIterable<Uint8Array>);
      const body = Readable.toWeb(randomStream(5 << 20, 'down')) as ReadableStream<Uint8Array>;
      return new Response(body, { headers: { 'x-upload-sha256': digest } });
    });
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(url, { method: 'POST', headers: { host: GROUP } }, resolve).on('error', reject);
      randomStream(5 << 20, 'up').pipe(req);
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-upload-sha256']).toBe(await sha256(randomStream(5 << 20, 'up')));
    expect(await sha256(res)).toBe(await sha256(randomStream(5 << 20, 'down')));
  });

  it('lets go of each request stream whose body the handler leaves unread, whether it answers or fails', async () => {
    const watched = watchStreams((request: Request) => {
      if (request.url.endsWith('/3')) throw new Error('fails without reading the body either');
      return new Response('ok');
    });
    const { port } = await throughNode(watched.handler);
    expect(await postBodies(port)).toEqual(['200 ok', '200 ok', '200 ok', '500 internal server error\n', '200 ok']);
    await Promise.all(watched.closed);
  });

  it('passes status, status text and repeated Set-Cookie headers through', async () => {
    const { port } = await throughNode(() => {
      const headers = new Headers({ 'content-type': 'text/plain' });
      headers.append('set-cookie', 'a=1');
      headers.append('set-cookie', 'b=2');
      return new Response('made', { status: 201, statusText: 'Made It', headers });
    });
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get({ host: '127.0.0.1', port, headers: { host: GROUP } }, resolve));
    expect(res.statusCode).toBe(201);
    expect(res.statusMessage).toBe('Made It');
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect((await collect(res)).toString()).toBe('made');
  });

  it('sends no body for HEAD or 204', async () => {
    const { port } = await throughNode((request: Request) => (request.url.endsWith('/empty') ? new Response(null, { status: 204 }) : new Response('body')));
    expect(await rawExchange(port, rawRequest(['HEAD / HTTP/1.1']))).not.toContain('body');
    expect(await rawExchange(port, rawRequest(['GET /empty HTTP/1.1']))).toMatch(/^HTTP\/1\.1 204 No Content\r\n[\s\S]*\r\n\r\n$/);
  });

  it('answers 500 with a short body and logs when the handler throws or returns no Response', async () => {
    const capture = captureLogger();
    const { url } = await throughNode(
      (request: Request) => {
        if (request.url.endsWith('/throw')) throw new Error('boom');
        return 'not a response' as unknown as Response;
      },
      { logger: capture.logger },
    );
    for (const path of ['/throw', '/wrong']) {
      const res = await get(url + path);
      expect(res.status).toBe(500);
      expect(await res.text()).toBe('internal server error\n');
    }
    const errors = capture.lines().filter((l) => l.level === 'error');
    expect(errors.map((l) => (l.error as { message: string }).message)).toEqual(['boom', expect.stringContaining('not a Response')]);
  });

  it('stops pulling the response body and aborts request.signal when the visitor leaves', async () => {
    let cancelled = false;
    let signalAborted: Promise<void> | undefined;
    const { port } = await throughNode((request: Request) => {
      signalAborted = new Promise((resolve) => request.signal.addEventListener('abort', () => resolve()));
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          controller.enqueue(new Uint8Array(64 << 10));
        },
        cancel() {
          cancelled = true;
        },
      });
      return new Response(body);
    });
    const socket = net.connect(port, '127.0.0.1');
    socket.write(rawRequest(['GET / HTTP/1.1']));
    let received = 0;
    await new Promise<void>((resolve) =>
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 1 << 20) resolve();
      }),
    );
    socket.destroy();
    await signalAborted;
    // A cancelled stream is pulled no more (WHATWG streams): the cancel is the event to wait for.
    await expect.poll(() => cancelled).toBe(true);
  });

  it('applies backpressure: a visitor that does not read holds the body back', async () => {
    let pulled = 0;
    const { port } = await throughNode(
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
    socket.write(rawRequest(['GET / HTTP/1.1']));
    socket.pause();
    // Wait until the pulls stop: the buffers between the handler and the visitor are full.
    let last = -1;
    await expect
      .poll(
        () => {
          const settled = pulled > 0 && pulled === last;
          last = pulled;
          return settled;
        },
        { interval: 200, timeout: 10_000 },
      )
      .toBe(true);
    socket.destroy();
    // Socket buffers, the stream windows and the web stream hold some MB at most; an unbounded reader would pull on and on.
    expect(pulled).toBeLessThan(64 << 20);
  });
});

describe('Node request listener', () => {
  it('is chosen for a function declaring (req, res), and sees the visitor request', async () => {
    const { port } = await throughNode((req: http.IncomingMessage, res: http.ServerResponse) => {
      res.setHeader('x-url', req.url ?? '');
      res.setHeader('x-host', req.headers.host ?? '');
      res.end('from listener');
    });
    const reply = await rawExchange(port, rawRequest(['GET /p HTTP/1.1']));
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(reply).toContain('x-url: /p');
    expect(reply).toContain(`x-host: ${GROUP}`);
    expect(reply).toMatch(/from listener(\r\n0\r\n\r\n)?$/);
  });

  it('gets its response head to the visitor before any body, when it sends the head alone', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const { port } = await throughNode(async (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      await released;
      res.end('data: done\n\n');
    });
    // The visitor sees the head while the handler still holds the body back.
    const res = await new Promise<http.IncomingMessage>((resolve) => http.get({ host: '127.0.0.1', port, headers: { host: GROUP } }, resolve));
    expect(res.headers['content-type']).toBe('text/event-stream');
    release();
    expect((await collect(res)).toString()).toBe('data: done\n\n');
  });

  it('gets a request body, streamed and chunked', async () => {
    const { port } = await throughNode(async (req: http.IncomingMessage, res: http.ServerResponse) => res.end(`got ${(await collect(req)).length}`));
    expect(await rawExchange(port, rawRequest(['POST / HTTP/1.1', 'Transfer-Encoding: chunked'], '3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n'))).toContain('got 5');
  });

  it('lets go of each request stream whose body the listener leaves unread', async () => {
    const watched = watchStreams((_req: http.IncomingMessage, res: http.ServerResponse) => res.end('ok'));
    const { port } = await throughNode(watched.handler);
    expect(new Set(await postBodies(port))).toEqual(new Set(['200 ok']));
    await Promise.all(watched.closed);
  });

  it('answers 500 when it throws or rejects, and the process lives on', async () => {
    const capture = captureLogger();
    const { url } = await throughNode(
      {
        listener: async (req) => {
          if (req.url === '/sync') throw new Error('sync boom');
          await Promise.resolve();
          throw new Error('async boom');
        },
      },
      { logger: capture.logger },
    );
    expect((await get(`${url}/sync`)).status).toBe(500);
    expect((await get(`${url}/async`)).status).toBe(500);
    expect(capture.lines().filter((l) => l.level === 'error')).toHaveLength(2);
  });

  it('accepts the explicit { fetch } form, whatever the function length', async () => {
    const { url } = await throughNode({ fetch: (_request: Request, ..._rest: unknown[]) => new Response('explicit') });
    expect(await (await get(url)).text()).toBe('explicit');
  });

  it('uses a given http.Server as is, its upgrade listener (ws) included', async () => {
    const server = http.createServer((_req, res) => res.end('plain'));
    new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (data) => ws.send(`echo ${String(data)}`)));
    const { port, url } = await throughNode(server);
    expect(await (await get(url)).text()).toBe('plain');
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: GROUP } });
    await once(ws, 'open');
    ws.send('hi');
    const [reply] = (await once(ws, 'message')) as [Buffer];
    expect(reply.toString()).toBe('echo hi');
    ws.close();
  });
});

describe('tunnel handler', () => {
  it('takes a handler that throws as a failed request: that stream is reset, the client serves on', async () => {
    const capture = captureLogger();
    const { url } = await throughNode(
      {
        serveTunnelRequest: ({ head, stream }) => {
          if (head.target === '/throw') throw new Error('handler bug');
          writeTextResponse(stream, 200, 'fine');
        },
      },
      { logger: capture.logger },
    );
    expect((await get(`${url}/throw`)).status).toBe(502);
    expect(await (await get(`${url}/next`)).text()).toBe('fine\n');
    expect(capture.lines()).toContainEqual(expect.objectContaining({ level: 'error', msg: 'the request handler threw' }));
  });
});
