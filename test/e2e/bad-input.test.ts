import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { collect, freePort, spawnNode, useCleanup } from '../harness/index.js';
import { type RequestHead, decodeRequestHead, encodeResponseHead, readHead } from '../../shared/heads.js';
import { ALPN, CloseCode, LEGACY_ALPN, MAX_FRAME_SIZE, encodeFrame, errorForClose, readFrame } from '../../shared/protocol.js';
import { connectQuic, type QuicConnection, type QuicStream } from '../../shared/quic/index.js';
import { GROUP, connectClient, startTestNode, testCerts, visit, writeGroups, type TestNode } from './helpers.js';

useCleanup();

function dialNode(t: TestNode): Promise<QuicConnection> {
  return connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: t.node.tunnelAddress.port, serverName: GROUP, ca: t.ca.cert });
}

/** A registered raw tunnel that answers every request with `answer`, or with what `answer` makes of its head. */
async function rawTunnel(t: TestNode, answer: string | ((request: RequestHead) => Buffer)): Promise<QuicConnection> {
  const conn = await dialNode(t);
  const control = await conn.openStream();
  control.on('error', () => {});
  control.write(encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: { Authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` } }));
  await readFrame(control);
  // Speaks the v2 request stream framing by hand: read the head, drain the body, answer.
  conn.on('stream', (s: QuicStream) => {
    s.on('error', () => {});
    const reply = (request: RequestHead) =>
      s.end(
        typeof answer === 'string'
          ? Buffer.concat([encodeResponseHead({ status: 200, reason: '', headers: ['content-length', String(answer.length)] }), Buffer.from(answer)])
          : answer(request),
      );
    readHead(
      s,
      decodeRequestHead,
      ({ head }) => s.resume().once('end', () => reply(head)),
      () => s.destroy(),
    );
  });
  return conn;
}

describe('bad input gets a clear error and harms nothing else', () => {
  it('answers 404 for an unknown host and 503 for a group with no tunnel', async () => {
    const t = await startTestNode();
    const unknown = await visit(t.node.httpAddress.port, '/', { host: 'nobody.example' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.toString()).toContain('nobody.example');
    const empty = await visit(t.node.httpAddress.port, '/');
    expect(empty.status).toBe(503);
    expect(empty.headers['retry-after']).toBe('1');
    expect(empty.body.toString()).toContain(GROUP);
  });

  it('answers 431 for a header section over the limit', async () => {
    const t = await startTestNode({ maxHeaderSize: 4096 });
    await rawTunnel(t, 'fine');
    const res = await visit(t.node.httpAddress.port, '/', { headers: { 'x-big': 'a'.repeat(8000) } }).catch((e: Error) => e);
    expect(res).not.toBeInstanceOf(Error);
    expect((res as { status: number }).status).toBe(431);
    expect((await visit(t.node.httpAddress.port, '/')).body.toString()).toBe('fine');
  });

  it('answers 413 for a body over the limit, declared or streamed', async () => {
    const t = await startTestNode({ maxBodySize: 1_000 });
    await rawTunnel(t, 'fine');
    const port = t.node.httpAddress.port;
    const declared = await visit(port, '/', { method: 'POST', body: Buffer.alloc(2_000) });
    expect(declared.status).toBe(413);
    const streamed = await visit(port, '/', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body: Buffer.alloc(2_000) });
    expect(streamed.status).toBe(413);
    expect((await visit(port, '/', { method: 'POST', body: Buffer.alloc(500) })).body.toString()).toBe('fine');
  });

  it('tells a client of the previous protocol (reverst/1) to upgrade, with a code it does not retry', async () => {
    const t = await startTestNode();
    const conn = await connectQuic({ alpn: [LEGACY_ALPN], host: '127.0.0.1', port: t.node.tunnelAddress.port, serverName: GROUP, ca: t.ca.cert });
    expect(conn.alpn).toBe(LEGACY_ALPN);
    const info = await conn.closed;
    expect({ code: info.code, reason: info.reason }).toEqual({
      code: CloseCode.ClientError,
      reason: 'reverst/1 is not served: upgrade the client to one that speaks reverst/2',
    });
    // What a v1 client makes of it: a bad request, which it does not retry.
    expect(errorForClose(info.code, info.reason)).toMatchObject({ retryable: false, message: `bad request: ${info.reason}` });
  });

  it('closes bad registrations with the right code while other clients keep working', async () => {
    const t = await startTestNode({ registrationTimeoutMs: 1_000 });
    const good = await rawTunnel(t, 'still serving');
    const cases: Array<[string, (s: QuicStream) => void]> = [
      ['random bytes', (s) => s.write(randomBytes(64))],
      ['a truncated frame', (s) => s.end(encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: {} }).subarray(0, 10))],
      [
        'an oversized frame',
        (s) => {
          const b = Buffer.alloc(4);
          b.writeUInt32BE(MAX_FRAME_SIZE + 1);
          s.write(b);
        },
      ],
      ['a frame that is not a registration', (s) => s.write(encodeFrame({ Hello: 'world' }))],
      ['an unsupported version', (s) => s.write(encodeFrame({ Version: 99, TunnelGroup: GROUP, Metadata: {} }))],
    ];
    for (const [what, send] of cases) {
      const conn = await dialNode(t);
      const s = await conn.openStream();
      s.on('error', () => {});
      send(s);
      const info = await conn.closed;
      expect({ what, code: info.code, reason: info.reason }).toEqual({ what, code: CloseCode.ClientError, reason: 'bad request' });
      expect((await visit(t.node.httpAddress.port, '/')).body.toString()).toBe('still serving');
    }
    // A client that never registers, or stops halfway, is out of time, which need not be its
    // fault (the network, a busy node): 0x1, so a real client tries again instead of giving up.
    const silent = await dialNode(t);
    expect(await silent.closed).toMatchObject({ code: CloseCode.ServerError, reason: 'registration timed out' });
    const halfway = await dialNode(t);
    const partial = await halfway.openStream();
    partial.on('error', () => {});
    partial.write(encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: {} }).subarray(0, 10));
    expect(await halfway.closed).toMatchObject({ code: CloseCode.ServerError, reason: 'registration timed out' });
    // Unknown group and wrong credentials.
    for (const [group, auth, reason] of [
      ['no-such-group', 'Basic x', 'not found'],
      [GROUP, `Basic ${Buffer.from('user:nope').toString('base64')}`, 'unauthorized'],
    ]) {
      const conn = await dialNode(t);
      const s = await conn.openStream();
      s.on('error', () => {});
      s.write(encodeFrame({ Version: 1, TunnelGroup: group!, Metadata: { Authorization: auth! } }));
      expect(await conn.closed).toMatchObject({ code: CloseCode.ClientError, reason });
    }
    expect(good.isClosing).toBe(false);
    expect((await visit(t.node.httpAddress.port, '/')).body.toString()).toBe('still serving');
  });

  it('survives a client that opens and resets extra streams before registering', async () => {
    const t = await startTestNode({ registrationTimeoutMs: 1_000 });
    await rawTunnel(t, 'still serving');
    const conn = await dialNode(t);
    const registration = await conn.openStream();
    registration.on('error', () => {});
    registration.write(encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: {} }).subarray(0, 6));
    for (let i = 0; i < 3; i++) {
      const extra = await conn.openStream();
      extra.on('error', () => {});
      extra.write('not allowed');
      await new Promise((r) => setTimeout(r, 20));
      extra.reset(7);
    }
    // The extra streams were refused; the registration, never finished, runs out of time.
    expect(await conn.closed).toMatchObject({ code: CloseCode.ServerError, reason: 'registration timed out' });
    expect((await visit(t.node.httpAddress.port, '/')).body.toString()).toBe('still serving');
  });

  it("takes the client's first stream for registration even when a later one arrives first", async () => {
    const t = await startTestNode();
    const conn = await dialNode(t);
    // Stream 0 reaches the wire only with its first byte, so stream 4 arrives first.
    const registration = await conn.openStream();
    registration.on('error', () => {});
    const extra = await conn.openStream();
    const refused = new Promise<unknown>((resolve) => extra.on('error', resolve).on('close', () => resolve('closed')));
    extra.resume();
    extra.write('not allowed');
    await refused;
    registration.write(encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: { Authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` } }));
    expect(await readFrame(registration)).toMatchObject({ Code: 0 });
    expect(conn.isClosing).toBe(false);
    await conn.close();
  });

  it('answers a request followed by garbage on the same connection before the 400 for the garbage', async () => {
    const t = await startTestNode();
    await connectClient(t, { handler: async () => new Response('first') });
    const socket = net.connect(t.node.httpAddress.port, '127.0.0.1');
    socket.write(`GET /a HTTP/1.1\r\nHost: ${GROUP}\r\n\r\nNOT HTTP AT ALL\r\n\r\n`);
    const reply = (await collect(socket)).toString('latin1');
    // The answer in full (chunked: the handler's Response has no length), then the 400, then the end.
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\n5\r\nfirst\r\n0\r\n\r\nHTTP\/1\.1 400 Bad Request\r\n[\s\S]*malformed HTTP request\n$/);
    expect(reply.match(/HTTP\/1\.1 /g)).toHaveLength(2);
  });

  it('cuts a response under way when its own request body turns out malformed, instead of writing a 400 into it', async () => {
    const t = await startTestNode();
    await connectClient(t, {
      handler: (_req: http.IncomingMessage, res: http.ServerResponse) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
      },
    });
    const socket = net.connect(t.node.httpAddress.port, '127.0.0.1');
    socket.write(`POST /a HTTP/1.1\r\nHost: ${GROUP}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`);
    const reply = collect(socket);
    // Once the answer has begun, a chunk size that is not hex.
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write('zz\r\n');
    const text = (await reply).toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text).not.toContain('400 Bad Request');
  });

  it('answers 504 itself when the tunnel sends no response head in time, and lets go of the stream', async () => {
    const t = await startTestNode({ requestTimeoutMs: 1_000 });
    let abandoned!: () => void;
    const wasAbandoned = new Promise<void>((resolve) => (abandoned = resolve));
    await connectClient(t, {
      handler: (req: http.IncomingMessage, res: http.ServerResponse) => {
        // /slow never answers; the node resetting its stream closes the response here.
        if (req.url === '/slow') res.once('close', abandoned);
        else res.end('fast');
      },
    });
    const port = t.node.httpAddress.port;
    const res = await visit(port, '/slow');
    expect(res.status).toBe(504);
    expect(res.body.toString()).toMatch(/^504 Gateway Timeout: no response from the tunnel within 1000 ms of the request's last byte \(request [\w-]+\)\n?$/);
    await wasAbandoned;
    expect((await visit(port, '/')).body.toString()).toBe('fast');
    const { values } = await t.node.metrics.proxyRequests.get();
    expect(values.find((v) => v.labels.code === '504')?.value).toBe(1);
    expect(t.node.registry.all().map((x) => x.inFlight)).toEqual([0]);
  });

  it('counts --request-timeout from the last request byte, so a slow upload is not cut while it moves', async () => {
    const timeoutMs = 1_500;
    const t = await startTestNode({ requestTimeoutMs: timeoutMs });
    let received: (() => void) | undefined;
    await connectClient(t, {
      handler: (req: http.IncomingMessage, res: http.ServerResponse) => {
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          received?.();
        });
        req.on('end', () => res.end(`got ${bytes}`));
      },
    });
    const started = performance.now();
    const answer = new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ port: t.node.httpAddress.port, host: '127.0.0.1', method: 'POST', path: '/', headers: { host: GROUP } }, resolve);
      req.on('error', reject);
      // One chunk at a time, each after the handler got the last and a pause, for twice the timeout in all.
      const next = (): void => {
        if (performance.now() - started > 2 * timeoutMs) return void req.end();
        received = () => setTimeout(next, 200);
        req.write('x'.repeat(1000));
      };
      next();
    });
    const res = await answer;
    const body = (await collect(res)).toString();
    expect(`${res.statusCode} ${body}`).toMatch(/^200 got \d+000$/);
    expect(performance.now() - started).toBeGreaterThan(2 * timeoutMs);
  });

  it('answers 502 when a tunnel sends a response head that cannot be forwarded, and keeps running', async () => {
    const t = await startTestNode();
    const conn = await dialNode(t);
    const control = await conn.openStream();
    control.on('error', () => {});
    control.write(encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: { Authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` } }));
    await readFrame(control);
    // A raw peer answering with a status HTTP cannot carry (099), written byte by byte: 6 bytes of head, then a body.
    conn.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      s.once('data', () => s.end(Buffer.concat([Buffer.from([0x05, 0x02, 0x00, 99, 0x00, 0x00]), Buffer.from('hi')])));
    });
    const res = await visit(t.node.httpAddress.port, '/');
    expect(res.status).toBe(502);
    expect(res.body.toString()).toMatch(/cannot be forwarded/);
    await conn.close();
    await rawTunnel(t, 'fine');
    expect((await visit(t.node.httpAddress.port, '/')).body.toString()).toBe('fine');
  });

  it('answers 502 for a response whose framing a visitor could read two ways, or a 101 no upgrade asked for', async () => {
    const t = await startTestNode();
    const heads: Record<string, string[]> = {
      '/two-lengths': ['content-length', '2', 'content-length', '20'],
      '/hex-length': ['content-length', '0x2'],
      '/signed-length': ['content-length', '+2'],
      '/list-length': ['content-length', '2, 20'],
    };
    await rawTunnel(t, (request) => {
      const status = request.target === '/switch' ? 101 : 200;
      return Buffer.concat([encodeResponseHead({ status, reason: '', headers: heads[request.target] ?? [] }), Buffer.from('hi')]);
    });
    for (const path of [...Object.keys(heads), '/switch']) {
      const res = await visit(t.node.httpAddress.port, path);
      expect(`${path} ${res.status} ${res.body}`).toMatch(new RegExp(`^${path} 502 .*cannot be forwarded`));
    }
    // Repeats of one length are one length.
    heads['/same-length'] = ['content-length', '2', 'Content-Length', '2'];
    const res = await visit(t.node.httpAddress.port, '/same-length');
    expect([res.status, res.headers['content-length'], res.body.toString()]).toEqual([200, '2', 'hi']);
  });

  it('refuses to start when its HTTP port is taken, and leaves nothing open behind', async () => {
    const taken = http.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const httpPort = (taken.address() as AddressInfo).port;
    const tunnelPort = await freePort('udp');
    await expect(startTestNode({ tunnelAddress: `127.0.0.1:${tunnelPort}`, httpAddress: `127.0.0.1:${httpPort}` })).rejects.toThrow(/EADDRINUSE/);
    await new Promise<void>((resolve) => taken.close(() => resolve()));
    // The QUIC socket it had bound is free again: a node can take the same ports now.
    const t = await startTestNode({ tunnelAddress: `127.0.0.1:${tunnelPort}`, httpAddress: `127.0.0.1:${httpPort}` });
    expect(t.node.tunnelAddress.port).toBe(tunnelPort);
    expect((await visit(httpPort, '/')).status).toBe(503);
  });

  it('refuses to start on a bad groups.yml, naming file, line and field', async () => {
    const file = writeGroups(`groups:
  "a":
    hosts: ["a.example"]
    authentication:
      basic:
        username: "user"
  "b":
    hosts: ["b.example"]
    authentication:
      external:
        endpoint: "not a url"
  "c":
    hosts: ["c.example"]
    colour: blue
`);
    const { server } = await testCerts();
    const node = spawnNode('cli.ts', ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', file, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0']);
    const exit = await node.exited;
    expect(exit.code).not.toBe(0);
    const out = node.output();
    expect(out).toContain(`${file}:6:`);
    expect(out).toMatch(/password/);
    expect(out).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:11:\\d+: .*endpoint`));
    expect(out).toMatch(/colour/);
  });

  it('says which flag is missing', async () => {
    const node = spawnNode('cli.ts', ['-g', 'examples/simple/group.yml']);
    expect((await node.exited).code).toBe(2);
    expect(node.output()).toMatch(/missing required flags: -n\/--server-name .*-k\/--private-key-path.*-c\/--certificate-path/);
  });
});
