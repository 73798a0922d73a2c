import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { onCleanup, randomStream, sha256, spawnNode, useCleanup } from '../harness/index.js';
import { NotFoundError, basic, connect, type Handler, type Tunnel } from '../../client/index.js';
import { BASIC_GROUP_YAML, GROUP, captureLogs, startTestNode, testCerts, visit, writeGroups, type TestNode } from './helpers.js';

useCleanup();

async function tunnelTo(t: TestNode, handler: Handler, group = GROUP): Promise<Tunnel> {
  const tunnel = await connect({
    addresses: [t.address],
    serverName: GROUP,
    ca: t.ca.cert,
    group,
    auth: basic('user', 'pass'),
    handler,
    minDelayMs: 50,
    maxDelayMs: 300,
  });
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

const FIFTY_MB = 50 << 20;

describe('the seed integration cases', () => {
  it("passes a handler's 400 and its body back unchanged", async () => {
    const t = await startTestNode();
    await tunnelTo(t, (_req, res) => res.writeHead(400, { 'content-type': 'application/json', 'x-custom': 'kept' }).end('{"error":"nope"}'));
    const res = await visit(t.node.httpAddress.port, '/bad');
    expect(res.status).toBe(400);
    expect(res.headers['x-custom']).toBe('kept');
    expect(res.body.toString()).toBe('{"error":"nope"}');
  });

  it('answers a, b, a, b… from two tunnels in one group', async () => {
    const t = await startTestNode();
    await tunnelTo(t, () => new Response('a'));
    await tunnelTo(t, () => new Response('b'));
    const answers: string[] = [];
    for (let i = 0; i < 8; i++) answers.push((await visit(t.node.httpAddress.port, '/')).body.toString());
    expect(answers.join('')).toMatch(/^(ab){4}$|^(ba){4}$/);
  });

  it('ends each of 1,000 concurrent requests with a 500 ms client timeout as a timeout or the right body, then serves normally', async () => {
    const t = await startTestNode();
    await tunnelTo(t, async (req: Request) => {
      const ms = Number(new URL(req.url).searchParams.get('sleep'));
      await sleep(ms);
      return new Response(`slept ${ms}`);
    });
    let timeouts = 0;
    let right = 0;
    const wrong: string[] = [];
    await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const ms = (i * 37) % 900;
        try {
          const res = await visit(t.node.httpAddress.port, `/?sleep=${ms}`, { timeoutMs: 500 });
          if (res.status === 200 && res.body.toString() === `slept ${ms}`) right++;
          else wrong.push(`${res.status} ${res.body}`);
        } catch (err) {
          if ((err as Error).message === 'timeout') timeouts++;
          else wrong.push((err as Error).message);
        }
      }),
    );
    expect(wrong).toEqual([]);
    expect(right + timeouts).toBe(1000);
    expect(right).toBeGreaterThan(0);
    expect(timeouts).toBeGreaterThan(0);
    for (let i = 0; i < 20; i++) expect((await visit(t.node.httpAddress.port, '/?sleep=0')).body.toString()).toBe('slept 0');
  });
});

describe('streaming through a tunnel', () => {
  it('carries 50 MB up and 50 MB down with equal sha256', async () => {
    const t = await startTestNode();
    let uploaded = '';
    await tunnelTo(t, async (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.method === 'POST') {
        uploaded = await sha256(req);
        res.end('ok');
      } else randomStream(FIFTY_MB, 'down').pipe(res);
    });
    const port = t.node.httpAddress.port;
    const up = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/up', headers: { host: GROUP } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      randomStream(FIFTY_MB, 'up').pipe(req);
    });
    expect(up).toBe(200);
    expect(uploaded).toBe(await sha256(randomStream(FIFTY_MB, 'up')));
    const down = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/down', headers: { host: GROUP } }, (res) => resolve(sha256(res))).on('error', reject);
    });
    expect(down).toBe(await sha256(randomStream(FIFTY_MB, 'down')));
  });

  it('delivers a Server-Sent Event before the handler ends the response', async () => {
    const t = await startTestNode();
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    await tunnelTo(t, (_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: first\n\n');
      void finished.then(() => res.end('data: last\n\n'));
    });
    const res = await new Promise<http.IncomingMessage>((resolve) =>
      http.get({ host: '127.0.0.1', port: t.node.httpAddress.port, path: '/events', headers: { host: GROUP } }, resolve),
    );
    expect(res.headers['content-type']).toBe('text/event-stream');
    const [first] = (await once(res, 'data')) as [Buffer];
    expect(first.toString()).toBe('data: first\n\n');
    finish();
    let rest = '';
    res.on('data', (d: Buffer) => (rest += d.toString()));
    await once(res, 'end');
    expect(rest).toBe('data: last\n\n');
  });

  it('echoes a WebSocket through the tunnel', async () => {
    const t = await startTestNode();
    const server = http.createServer();
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    await tunnelTo(t, server);
    const ws = new WebSocket(`ws://127.0.0.1:${t.node.httpAddress.port}/ws`, { headers: { host: GROUP } });
    await once(ws, 'open');
    const replies: string[] = [];
    for (const text of ['hello', 'through', 'the tunnel']) {
      ws.send(text);
      const [data] = (await once(ws, 'message')) as [Buffer];
      replies.push(data.toString());
    }
    const big = Buffer.alloc(1 << 20, 7);
    ws.send(big);
    const [echo] = (await once(ws, 'message')) as [Buffer];
    expect(createHash('sha256').update(echo).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    expect(replies).toEqual(['hello', 'through', 'the tunnel']);
    ws.close();
    await once(ws, 'close');
  });
});

describe("a node's lifecycle", () => {
  it('-w reload adds and removes a group while the node serves', async () => {
    const logs = captureLogs();
    const t = await startTestNode({ watchGroups: true, logger: logs.logger });
    await tunnelTo(t, () => new Response('first'));
    const port = t.node.httpAddress.port;
    const withSecond = `${BASIC_GROUP_YAML}  "second":\n    hosts: ["second.test"]\n    authentication:\n      basic: { username: "user", password: "pass" }\n`;
    // Atomic replace, as editors and config tools do it.
    writeFileSync(`${t.groupsPath}.tmp`, withSecond);
    renameSync(`${t.groupsPath}.tmp`, t.groupsPath);
    await logs.waitFor(/^tunnel groups reloaded$/);
    const second = await tunnelTo(t, () => new Response('second'), 'second');
    expect((await visit(port, '/', { host: 'second.test' })).body.toString()).toBe('second');
    expect((await visit(port, '/')).body.toString()).toBe('first');

    writeFileSync(t.groupsPath, BASIC_GROUP_YAML); // in-place write
    // The group is gone, and its client is told so: it stops.
    expect(await second.closed).toBeInstanceOf(NotFoundError);
    expect((await visit(port, '/', { host: 'second.test' })).status).toBe(404);
    expect((await visit(port, '/')).body.toString()).toBe('first');

    // A bad file keeps the last good config: once the node has read it and said so.
    writeFileSync(t.groupsPath, 'groups:\n  "broken":\n    hosts: 7\n');
    const failed = await logs.waitFor(/^tunnel groups reload failed/);
    expect(failed.error).toMatch(/hosts/);
    expect((await visit(port, '/')).body.toString()).toBe('first');
  });

  it('on SIGTERM, lets an in-flight request finish, then exits', async () => {
    const { server } = await testCerts();
    const groups = writeGroups(BASIC_GROUP_YAML);
    const node = spawnNode('cli.ts', ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', groups, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0']);
    const [, quic, httpAddr] = await node.waitForLine(/"tunnelAddress":"127\.0\.0\.1:(\d+)","httpAddress":"127\.0\.0\.1:(\d+)"/);
    const { ca } = await testCerts();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const arrival = new Promise<void>((r) => (arrived = r));
    const tunnel = await connect({
      addresses: [`127.0.0.1:${quic}`],
      serverName: GROUP,
      ca: ca.cert,
      group: GROUP,
      auth: basic('user', 'pass'),
      handler: async () => {
        arrived();
        await gate;
        return new Response('finished');
      },
    });
    onCleanup(() => tunnel.close({ graceMs: 0 }));
    const inFlight = visit(Number(httpAddr), '/slow');
    await arrival;
    node.child.kill('SIGTERM');
    await node.waitForLine(/"msg":"draining"/);
    release();
    expect((await inFlight).body.toString()).toBe('finished');
    expect((await node.exited).code).toBe(0);
  });
});
