// Malformed HTTP, request smuggling, header padding and provenance, through the whole path a
// user runs: a node, `reverst http` as its own process, a byte recorder, and the origin. Nothing
// malformed may reach the origin, the origin must see exactly the requests the node answered
// for it, and the node's own forwarding headers must be the ones that arrive.
import { randomInt } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { onCleanup, spawnNode, useCleanup } from '../harness/index.js';
import { GROUP, startTestNode, type TestNode } from '../e2e/helpers.js';
import { report, sized } from './helpers.js';

useCleanup();

interface Seen {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

/** The origin: answers each request with what it saw; counts requests it could not parse. */
async function startOrigin() {
  const state = { requests: [] as Seen[], parseErrors: 0 };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      state.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes' }).end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // A request cut short because its visitor left (the connection ends mid-body) is not malformed.
    if (err.code !== 'HPE_INVALID_EOF_STATE') state.parseErrors++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve()).closeAllConnections()));
  return { state, port: (server.address() as net.AddressInfo).port };
}

/** A TCP relay in front of the origin that keeps every byte sent towards it. */
async function startRecorder(originPort: number) {
  const state = { bytes: 0, text: '' };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((visitor) => {
    const origin = net.connect({ host: '127.0.0.1', port: originPort });
    for (const s of [visitor, origin]) {
      sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => sockets.delete(s));
    }
    visitor.on('data', (d: Buffer) => {
      state.bytes += d.length;
      state.text += d.toString('latin1');
    });
    visitor.pipe(origin).pipe(visitor);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { state, port: (server.address() as net.AddressInfo).port };
}

/** How many whole responses `text` holds (framed by Content-Length or chunked; the node's and the origin's always are). */
function completeResponses(text: string): number {
  let count = 0;
  let at = 0;
  for (;;) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (headEnd < 0) return count;
    const head = text.slice(at, headEnd).toLowerCase();
    const length = /\r\ncontent-length: *(\d+)/.exec(head);
    let end: number;
    if (length) end = headEnd + 4 + Number(length[1]);
    else if (/\r\ntransfer-encoding: *chunked/.test(head)) {
      const last = text.indexOf('\r\n0\r\n\r\n', headEnd);
      if (last < 0) return count;
      end = last + 7;
    } else end = headEnd + 4;
    if (end > text.length) return count;
    count++;
    at = end;
  }
}

/**
 * Writes raw bytes to the node's public listener and collects the answers: until `expected`
 * whole responses arrived, the node closed the connection, or `timeoutMs` passed. The visitor
 * never half-closes (the node would take that as leaving and abandon the request).
 */
function raw(port: number, bytes: string | Buffer, { expected = 1, timeoutMs = 5_000 } = {}): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('connect', () => socket.write(bytes));
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      got += d;
      if (completeResponses(got) >= expected) socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

/** One parsed response from the node: status, headers, body (JSON when the origin answered). */
function visit(port: number, path: string, headers: http.OutgoingHttpHeaders = {}) {
  return new Promise<{ status: number; origin: boolean; body: string }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host: GROUP, ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, origin: res.headers['x-origin'] === 'yes', body }));
    });
    req.on('error', reject);
  });
}

const statusOf = (response: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1] ?? 0);
const H = `Host: ${GROUP}\r\n`;

/** Each is one request the node must refuse (400, 431) before anything reaches the origin. */
const MALFORMED: Array<[string, string]> = [
  ['Content-Length and Transfer-Encoding together', `POST / HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX`],
  ['two different Content-Lengths', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc`],
  ['Content-Length with a sign', `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`],
  ['Content-Length in hex', `POST / HTTP/1.1\r\n${H}Content-Length: 0x3\r\n\r\nabc`],
  ['a Transfer-Encoding other than chunked last', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n`],
  ['Transfer-Encoding: xchunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`],
  ['a space before the colon', `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`],
  ['a folded header line', `GET / HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n`],
  ['a bad chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
  ['chunk data longer than its size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n`],
  ['a NUL in a header value', `GET / HTTP/1.1\r\n${H}X-Nul: a\u0000b\r\n\r\n`],
  ['a space in a header name', `GET / HTTP/1.1\r\n${H}X Bad: a\r\n\r\n`],
  ['a bare CR', `GET / HTTP/1.1\r\n${H}X-CR: a\rb\r\n\r\n`],
  ['a header line without a colon', `GET / HTTP/1.1\r\n${H}NoColonHere\r\n\r\n`],
  ['an unknown HTTP version', `GET / HTTP/1.7\r\n${H}\r\n`],
  ['a request line with a control byte', `GET /a\u0001b HTTP/1.1\r\n${H}\r\n`],
  ['an invalid method', `G(T / HTTP/1.1\r\n${H}\r\n`],
  ['garbage', '\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003'],
  ['an oversized header section', `GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(40_000)}\r\n\r\n`],
];

/** A valid request with a few bytes changed to ones that break HTTP parsers and the proxies between them. */
function mutated(): string {
  const body = 'hello';
  const template = [
    `POST /fuzz?x=1 HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\nX-A: 1\r\n\r\n${body}`,
    `POST /fuzz HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\n${body}\r\n0\r\n\r\n`,
    `GET /fuzz HTTP/1.1\r\n${H}X-A: 1\r\nX-B: 2\r\n\r\n`,
  ][randomInt(3)]!;
  const bad = ['\u0000', '\r', '\n', ' ', ':', '\u007f', '\u00ff', '\t', ',', '\r\n', '\r\n\r\n', '0\r\n\r\n'];
  let text = template;
  for (let n = 1 + randomInt(3); n > 0; n--) {
    // Only inside the head (as far as it still ends): a body byte changed is still a valid request.
    const headEnd = text.indexOf('\r\n\r\n');
    const at = randomInt(headEnd > 0 ? headEnd : text.length);
    const what = bad[randomInt(bad.length)]!;
    text = randomInt(2) === 0 ? text.slice(0, at) + what + text.slice(at + 1) : text.slice(0, at) + what + text.slice(at);
  }
  return text;
}

describe('malformed HTTP, smuggling and provenance through the whole path', () => {
  let t: TestNode;
  let origin: Awaited<ReturnType<typeof startOrigin>>;
  let recorder: Awaited<ReturnType<typeof startRecorder>>;

  beforeAll(async () => {
    t = await startTestNode();
    origin = await startOrigin();
    recorder = await startRecorder(origin.port);
    const client = spawnNode(
      'cli.ts',
      [
        'http',
        `http://127.0.0.1:${recorder.port}`,
        '--address',
        t.address,
        '--server-name',
        GROUP,
        '--ca',
        t.ca.certPath,
        '--group',
        GROUP,
        '--username',
        'user',
        '--password',
        'pass',
      ],
      { name: 'reverst-http' },
    );
    await client.waitForLine(/tunnel ready/, 60_000);
    // The path works end to end before anything odd is sent.
    const ok = await visit(t.node.httpAddress.port, '/hello');
    expect(ok).toMatchObject({ status: 200, origin: true });
  });

  it.each(MALFORMED)('refuses %s before anything reaches the origin', async (_what, request) => {
    const before = { bytes: recorder.state.bytes, requests: origin.state.requests.length };
    const response = await raw(t.node.httpAddress.port, request);
    expect([400, 431]).toContain(statusOf(response));
    expect(response).not.toContain('x-origin');
    // The node is still serving, and the recorder saw nothing but that check's request.
    const after = await visit(t.node.httpAddress.port, '/after');
    expect(after).toMatchObject({ status: 200, origin: true });
    expect(origin.state.requests.slice(before.requests).map((r) => r.url)).toEqual(['/after']);
  });

  it('lets a smuggled second request through only as a request of its own, answered to the visitor', async () => {
    const before = origin.state.requests.length;
    // A complete chunked request followed by another on the same connection: pipelining, which is
    // legal; each must reach the origin as its own request (each on its own tunnel stream, so in
    // any order), and both answers come back to the visitor in order.
    const response = await raw(
      t.node.httpAddress.port,
      `POST /first HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
      { expected: 2 },
    );
    expect(response.match(/^HTTP\/1\.1 200/gm)).toHaveLength(2);
    expect(response.indexOf('"url":"/first"')).toBeLessThan(response.indexOf('"url":"/second"'));
    expect(
      origin.state.requests
        .slice(before)
        .map((r) => `${r.method} ${r.url}`)
        .sort(),
    ).toEqual(['GET /second', 'POST /first']);
  });

  it('passes random corruptions of valid requests to the origin only as valid requests', async () => {
    const count = sized(400, 20_000);
    const before = { requests: origin.state.requests.length, parseErrors: origin.state.parseErrors };
    const statuses = new Map<number, number>();
    let fromOrigin = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next++ < count) {
          const response = await raw(t.node.httpAddress.port, mutated(), { timeoutMs: 3_000 });
          // Every answer the origin gave carries its header; count them to match what it saw.
          fromOrigin += response.match(/^x-origin: yes/gim)?.length ?? 0;
          const status = statusOf(response);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      }),
    );
    const reached = origin.state.requests.length - before.requests;
    report(
      `${count} corrupted requests: ${[...statuses]
        .sort()
        .map(([s, n]) => `${n}× ${s || 'no answer'}`)
        .join(', ')}; ${reached} reached the origin, all well-formed; ${fromOrigin} origin answers came back`,
    );
    // Whatever reached the origin parsed there as the request it was. (More can reach it than
    // answers come back: a request whose own body turns out malformed after it was forwarded.)
    expect(origin.state.parseErrors - before.parseErrors).toBe(0);
    for (const r of origin.state.requests.slice(before.requests)) expect(`${r.method} ${r.url}`).toMatch(/^(GET|POST) \/\S*$/);
    expect(reached).toBeGreaterThanOrEqual(fromOrigin);
    expect(await visit(t.node.httpAddress.port, '/still')).toMatchObject({ status: 200, origin: true });
  });

  describe('forwarding headers and provenance', () => {
    const seen = async (path: string, headers: http.OutgoingHttpHeaders = {}) => {
      const res = await visit(t.node.httpAddress.port, path, headers);
      return { ...res, saw: res.origin ? (JSON.parse(res.body) as { url: string; headers: Record<string, string> }) : undefined };
    };

    it("replaces a visitor's X-Forwarded-Host and X-Forwarded-Proto with the node's", async () => {
      const { saw } = await seen('/proto', { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' });
      expect(saw!.headers['x-forwarded-host']).toBe(GROUP);
      expect(saw!.headers['x-forwarded-proto']).toBe('http');
    });

    // Issue 9 items 3-5.

    it("sets X-Forwarded-For to the visitor's address alone, dropping the visitor's own", async () => {
      const { saw } = await seen('/xff', { 'x-forwarded-for': '203.0.113.9' });
      expect(saw!.headers['x-forwarded-for']).toBe('127.0.0.1');
    });

    it("drops a visitor's Forwarded and X-Real-IP", async () => {
      const { saw } = await seen('/forwarded', { forwarded: 'for=203.0.113.9;proto=https', 'x-real-ip': '203.0.113.9' });
      expect(saw!.headers.forwarded).toBeUndefined();
      expect(saw!.headers['x-real-ip']).toBeUndefined();
    });

    it('carries an absolute-form request to the origin in origin form, routed by its authority (RFC 9112 §3.2.2)', async () => {
      const response = await raw(t.node.httpAddress.port, `GET http://${GROUP}/abs?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n`);
      expect(statusOf(response)).toBe(200);
      // The origin's answer, in one chunk.
      const saw = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4).replace(/^[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, '')) as Seen;
      expect(saw.url).toBe('/abs?q=1');
      expect(saw.headers['x-forwarded-host']).toBe(GROUP);
      const elsewhere = await raw(t.node.httpAddress.port, `GET http://other.example/abs HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      expect(statusOf(elsewhere)).toBe(404);
    });

    it("keeps the node's forwarding headers behind 1,000 padding headers, or refuses the request with 431", async () => {
      const padding = Object.fromEntries(Array.from({ length: 1_000 }, (_, i) => [`x-pad-${i}`, '1']));
      const res = await seen('/padded', padding);
      if (res.status === 431) return;
      expect(res.status).toBe(200);
      expect(res.saw!.headers['x-forwarded-for']).toBe('127.0.0.1');
      expect(res.saw!.headers['x-forwarded-host']).toBe(GROUP);
      expect(res.saw!.headers['x-request-id']).toEqual(expect.any(String));
    });

    it('answers a header section just under the limit from the origin and one over it with 431, never 502', async () => {
      for (const size of [16_000, 16_200, 16_300, 16_400, 17_000]) {
        const res = await seen(`/size-${size}`, { 'x-fill': 'a'.repeat(size - 100) });
        expect({ size, status: res.status }).toEqual({ size, status: res.origin ? 200 : 431 });
      }
    });
  });
});
