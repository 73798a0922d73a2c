// The hop's two ends over real TCP on loopback: HopClient (the node sending a request) and
// HopListener (the node holding the tunnel). The listener's request handler answers as the
// node's proxy would, through the visitor it is given.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { onCleanup, randomStream, sha256, useCleanup } from '../test/harness/index.js';
import { type RequestHead, type ResponseHead, decodeResponseHead, encodeRequestHead, encodeResponseHead, readHead } from '../shared/heads.js';
import { createLogger, silentLogger } from '../shared/log.js';
import { DEFAULT_LOG_BURST } from '../shared/log-limits.js';
import type { Far } from './far.js';
import { HopClient, HopNoTunnelError, HopRefusedError } from './hop.js';
import { type HopListener, type HopListenerDeps, createHopListener } from './hop-listener.js';
import { Metrics } from './metrics.js';
import type { HopRequest } from './proxy.js';
import { ProxyError } from './proxy-errors.js';

useCleanup();

const SECRET = 'hop-test-secret';

async function listen(
  serve: (request: HopRequest) => void,
  options: Partial<HopListenerDeps> = {},
): Promise<{ listener: HopListener; address: string; connections: () => number }> {
  let connections = 0;
  const listener = createHopListener({ secret: SECRET, metrics: new Metrics(), proxy: { serveHop: serve }, track: () => {}, ...options });
  listener.on('connection', () => connections++);
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  onCleanup(() => {
    listener.closeAllConnections();
    return new Promise<void>((resolve) => listener.close(() => resolve()));
  });
  return { listener, address: `127.0.0.1:${(listener.address() as net.AddressInfo).port}`, connections: () => connections };
}

function client(secret = SECRET): HopClient {
  const hop = new HopClient('sender', secret, silentLogger);
  onCleanup(() => hop.close());
  return hop;
}

const head = (extra: Partial<RequestHead> = {}): RequestHead => ({
  method: 'GET',
  target: '/',
  authority: 'a.example',
  headers: [],
  body: false,
  upgrade: false,
  ...extra,
});

/** Sends `request` (and `body`) over `far` and resolves with the answer's head and body. */
function exchange(far: Far, request: RequestHead, body?: Readable): Promise<{ head: ResponseHead; body: Buffer }> {
  far.stream.write(encodeRequestHead(request));
  if (body) body.pipe(far.stream);
  else far.stream.end();
  return new Promise((resolve, reject) =>
    readHead(
      far.stream,
      decodeResponseHead,
      ({ head: answer, rest }) => {
        const chunks = [rest];
        far.stream.on('data', (c: Buffer) => chunks.push(c));
        far.stream.once('end', () => resolve({ head: answer, body: Buffer.concat(chunks) }));
        far.stream.resume();
      },
      reject,
    ),
  );
}

/** Answers each request with the sha256 of its body (as the proxy would answer through the visitor). */
function digestServer(onRequest: (request: HopRequest) => void = () => {}): (request: HopRequest) => void {
  return (request) => {
    onRequest(request);
    const answer = async (): Promise<void> => {
      const digest = request.body ? await sha256(request.body) : 'none';
      const reply = randomStream(2 << 20, digest);
      request.visitor.respond({ status: 200, reason: '', headers: ['x-digest', digest] }, Buffer.alloc(0), reply, true, () => {});
    };
    void answer();
  };
}

describe('the hop', () => {
  it('carries heads and 2 MB bodies both ways, one exchange after another on one connection', async () => {
    const seen: RequestHead[] = [];
    const { address, connections } = await listen(digestServer((r) => seen.push(r.head)));
    const hop = client();
    const target = { id: 'far', address };
    for (let i = 0; i < 3; i++) {
      const request = head({ method: 'POST', target: `/up/${i}`, headers: ['X-Request-Id', `r${i}`], body: true });
      const answer = await exchange(await hop.open(target, 'g', request), request, randomStream(2 << 20, `up-${i}`));
      expect(answer.head.status).toBe(200);
      expect(answer.head.headers).toEqual(['x-digest', await sha256(randomStream(2 << 20, `up-${i}`))]);
      expect(await sha256(answer.body)).toBe(await sha256(randomStream(2 << 20, answer.head.headers[1]!)));
    }
    expect(seen.map((h) => h.target)).toEqual(['/up/0', '/up/1', '/up/2']);
    expect(connections()).toBe(1);
  });

  it('keeps TCP keep-alive on both ends of a pooled connection, so a peer that vanished silently is found', async () => {
    const { address } = await listen(digestServer());
    const hop = client();
    const request = head();
    await exchange(await hop.open({ id: 'far', address }, 'g', request), request);
    const port = address.split(':')[1];
    // The kernel's view: `ss -o` shows a keepalive timer on a socket with SO_KEEPALIVE set.
    const lines = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8' })
      .trim()
      .split('\n');
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line).toMatch(/timer:\(keepalive,/);
  });

  it('drops only the connection of an exchange that is abandoned, and opens another for the next', async () => {
    const { address, connections } = await listen(digestServer());
    const hop = client();
    const target = { id: 'far', address };
    const far = await hop.open(target, 'g', head());
    far.stream.end(encodeRequestHead(head()));
    // Abandoned (the visitor left) after the first bytes of the answer.
    await once(far.stream, 'readable');
    far.abandon();
    const answer = await exchange(await hop.open(target, 'g', head()), head());
    expect(answer.head.status).toBe(200);
    expect(connections()).toBe(2);
  });

  it('fails an exchange at once when the far node goes away in the middle of it', async () => {
    // A node killed mid-request: its kernel ends the connection with a FIN.
    const server = net.createServer((socket) => socket.once('data', () => socket.end()));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const hop = client();
    const far = await hop.open({ id: 'dying', address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` }, 'g', head());
    await expect(exchange(far, head())).rejects.toThrow(/hop connection to dying closed|before a head/);
  });

  it('says when the far node holds no tunnel, and keeps the connection for the next exchange', async () => {
    let noTunnel = true;
    const { address, connections } = await listen((request) => {
      if (noTunnel) request.visitor.reply(ProxyError.noTunnelHere('g'));
      else digestServer()(request);
    });
    const hop = client();
    const target = { id: 'far', address };
    const far = await hop.open(target, 'g', head());
    const failed = await exchange(far, head()).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(HopNoTunnelError);
    expect(far.unprocessed(failed)).toBe(true);
    noTunnel = false;
    expect((await exchange(await hop.open(target, 'g', head()), head())).head.status).toBe(200);
    expect(connections()).toBe(1);
  });

  it('refuses a connection with the wrong secret before any request is served', async () => {
    let served = 0;
    const { address } = await listen(digestServer(() => served++));
    const far = await client('not the secret').open({ id: 'far', address }, 'g', head());
    const failed = await exchange(far, head()).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(HopRefusedError);
    expect((failed as Error).message).toBe('node far refused the hop: wrong cluster secret');
    expect(far.unprocessed(failed)).toBe(true);
    expect(served).toBe(0);
  });

  it('closes a connection that does not prove the secret in time, and keeps one that did', async () => {
    const { address, connections } = await listen(digestServer(), { preambleTimeoutMs: 300 });
    const hop = client();
    const target = { id: 'far', address };
    expect((await exchange(await hop.open(target, 'g', head()), head())).head.status).toBe(200);
    // Opened after the first, and closed by the listener: its time ran out, and so would the first's.
    const [host, port] = address.split(':');
    const silent = net.connect(Number(port), host);
    silent.on('error', () => {});
    silent.write(Buffer.from('RVSTHOP2'));
    await once(silent, 'close');
    expect((await exchange(await hop.open(target, 'g', head()), head())).head.status).toBe(200);
    expect(connections()).toBe(2);
  });

  it('logs at most a burst of refused connections, however many come', async () => {
    const lines: Array<{ msg: string }> = [];
    const logger = createLogger({ level: 'debug', stream: { write: (line: string) => lines.push(JSON.parse(line) as { msg: string }) } });
    const { address } = await listen(digestServer(), { logger });
    const wrong = client('not the secret');
    for (let i = 0; i < DEFAULT_LOG_BURST + 10; i++) {
      const failed = await exchange(await wrong.open({ id: 'far', address }, 'g', head()), head()).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(HopRefusedError);
    }
    expect(lines.filter((l) => l.msg === 'hop connection refused: wrong cluster secret')).toHaveLength(DEFAULT_LOG_BURST);
  });

  it('does not reuse a connection whose far node sent more after "no tunnel here"', async () => {
    // A far node out of step: after its "no tunnel" answer come the bytes of a response nobody asked for.
    let requests = 0;
    const server = net.createServer((socket) =>
      socket.on('data', () => {
        const answer = encodeResponseHead({ status: ++requests === 1 ? 200 : 201, reason: '', headers: [] });
        const stale = Buffer.concat([Buffer.from([0x01]), answer, Buffer.alloc(4)]);
        socket.write(requests === 1 ? Buffer.concat([Buffer.from([0x02]), stale]) : Buffer.concat([Buffer.from([0x01]), answer, Buffer.alloc(4)]));
      }),
    );
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const hop = client();
    const target = { id: 'far', address: `127.0.0.1:${(server.address() as net.AddressInfo).port}` };
    expect(await exchange(await hop.open(target, 'g', head()), head()).catch((error: unknown) => error)).toBeInstanceOf(HopNoTunnelError);
    expect((await exchange(await hop.open(target, 'g', head()), head())).head.status).toBe(201);
  });
});
