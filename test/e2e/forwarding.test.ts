// What a visitor's request becomes on its way to the origin (issue 9 items 3-5 and 8): the
// node is the edge, so its forwarding headers always arrive and a visitor cannot forge them;
// the tunnel carries an origin-form target; one header limit holds, enforced at the node;
// and the node counts what really happened.
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { onCleanup, spawnNode, startHttpServer, startRedis, useCleanup } from '../harness/index.js';
import { createForwarder } from '../../client/forwarder.js';
import type { NodeOptions } from '../../data-plane/node.js';
import { BASIC_GROUP_YAML, GROUP, startTestNode, testCerts, writeGroups } from './helpers.js';
import { rawExchange, throughNode } from './through-node.js';

useCleanup();

/** A node whose tunnel forwards (as `reverst http` does) to an origin that records what it receives. */
async function recordingOrigin(options: Partial<NodeOptions> = {}) {
  const seen: http.IncomingMessage[] = [];
  const origin = await startHttpServer((req, res) => {
    seen.push(req);
    req.resume();
    res.end('origin');
  });
  // The origin's own limits are its business: this one takes what it is sent.
  origin.server.maxHeadersCount = 0;
  (origin.server as http.Server & { maxHeaderSize: number }).maxHeaderSize = 1 << 20;
  const forwarder = createForwarder({ origin: new URL(origin.url), preserveHost: true });
  onCleanup(() => forwarder.close());
  const node = await throughNode(forwarder, options);
  return { ...node, seen, last: () => seen.at(-1)! };
}

const request = (lines: string[]): string => `${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`;
const status = (reply: string): number => Number(reply.slice(9, 12));

describe("the node's forwarding headers", () => {
  it('arrive at the origin past 1,000 padding headers, ahead of the visitor headers', async () => {
    const t = await recordingOrigin();
    const padding = Array.from({ length: 1000 }, (_, i) => `X-Pad-${i}: v`);
    const reply = await rawExchange(t.port, request(['GET / HTTP/1.1', `Host: ${GROUP}`, ...padding]));
    expect(status(reply)).toBe(200);
    const seen = t.last();
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-host']).toBe(GROUP);
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.headers['x-pad-999']).toBe('v');
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0);
    const first = names.indexOf('X-Pad-0');
    for (const name of ['X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto', 'X-Request-Id']) expect(names.indexOf(name), name).toBeLessThan(first);
  });

  it('answer 431 for more headers than the node accepts, instead of dropping some', async () => {
    const t = await recordingOrigin();
    // 2,500 short headers: far under the 16 KB section limit, over the count node:http would keep.
    const many = Array.from({ length: 2500 }, () => 'a: b');
    const reply = await rawExchange(t.port, request(['GET / HTTP/1.1', `Host: ${GROUP}`, ...many]));
    expect(status(reply)).toBe(431);
    expect(reply).toMatch(/more than 2000 headers/);
    expect(t.seen).toEqual([]);
  });

  it("replace a visitor's X-Forwarded-*, and drop its Forwarded and X-Real-IP", async () => {
    const t = await recordingOrigin();
    const reply = await rawExchange(
      t.port,
      request([
        'GET / HTTP/1.1',
        `Host: ${GROUP}`,
        'X-Forwarded-For: 10.9.9.9',
        'X-Forwarded-Host: evil.example',
        'X-Forwarded-Proto: https',
        'X-Forwarded-Port: 443',
        'Forwarded: for=10.9.9.9;proto=https',
        'X-Real-IP: 10.9.9.9',
      ]),
    );
    expect(status(reply)).toBe(200);
    const { headers } = t.last();
    expect(headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(headers['x-forwarded-host']).toBe(GROUP);
    expect(headers['x-forwarded-proto']).toBe('http');
    expect(headers['x-forwarded-port']).toBeUndefined();
    expect(headers.forwarded).toBeUndefined();
    expect(headers['x-real-ip']).toBeUndefined();
  });

  it('keep and extend them from a trusted proxy (--trusted-proxies)', async () => {
    const t = await recordingOrigin({ trustedProxies: '10.0.0.0/8, 127.0.0.1/32' });
    await rawExchange(
      t.port,
      request([
        'GET / HTTP/1.1',
        `Host: ${GROUP}`,
        'X-Forwarded-For: 203.0.113.7',
        'X-Forwarded-Proto: https',
        'X-Forwarded-Host: public.example',
        'Forwarded: for=203.0.113.7;proto=https',
        'X-Real-IP: 203.0.113.7',
      ]),
    );
    const { headers } = t.last();
    expect(headers['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
    expect(headers['x-forwarded-proto']).toBe('https');
    expect(headers['x-forwarded-host']).toBe('public.example');
    expect(headers.forwarded).toBe('for=203.0.113.7;proto=https');
    expect(headers['x-real-ip']).toBe('203.0.113.7');
  });

  it('refuse to start with a trusted proxy that is not an address or CIDR block, in one line', async () => {
    await expect(startTestNode({ trustedProxies: '10.0.0.0/8,not-an-ip' })).rejects.toThrow(
      '--trusted-proxies: "not-an-ip" is not an IP address or CIDR block (e.g. 10.0.0.0/8 or fd00::/8)',
    );
    const { server } = await testCerts();
    const args = ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', writeGroups(BASIC_GROUP_YAML), '-a', '127.0.0.1:0', '-s', '127.0.0.1:0'];
    const node = spawnNode('cli.ts', args, { env: { REVERST_TRUSTED_PROXIES: '10.0.0.0/33' } });
    expect((await node.exited).code).toBe(2);
    expect(node.output().trim()).toBe(
      '[stderr] reverst: REVERST_TRUSTED_PROXIES: "10.0.0.0/33" is not an IP address or CIDR block (e.g. 10.0.0.0/8 or fd00::/8) (see reverst -h)',
    );
  });
});

describe('the request target', () => {
  it('is routed by an absolute-form authority and arrives in origin form with a matching Host', async () => {
    const t = await recordingOrigin();
    const reply = await rawExchange(t.port, request([`GET http://${GROUP}/x?y=1 HTTP/1.1`, 'Host: nobody.example']));
    expect(status(reply)).toBe(200);
    const seen = t.last();
    expect(seen.url).toBe('/x?y=1');
    expect(seen.headers.host).toBe(GROUP);
    expect(seen.headers['x-forwarded-host']).toBe(GROUP);
    // The Host header is not what routes an absolute-form request (RFC 9112 §3.2.2).
    expect(status(await rawExchange(t.port, request(['GET http://nobody.example/x HTTP/1.1', `Host: ${GROUP}`])))).toBe(404);
  });

  it('reaches a fetch handler as a URL on the host that routed it', async () => {
    let url = '';
    const t = await throughNode((req: Request) => {
      url = req.url;
      return new Response('ok');
    });
    await rawExchange(t.port, request([`GET http://${GROUP}/inside HTTP/1.1`, 'Host: other.example']));
    expect(url).toBe(`http://${GROUP}/inside`);
    expect(status(await rawExchange(t.port, request(['GET ftp://x/y HTTP/1.1', `Host: ${GROUP}`])))).toBe(400);
  });
});

describe('one header limit, at the node', () => {
  it('delivers every header section the node accepts, up to its --max-header-size, the node adding its own', async () => {
    const t = await recordingOrigin();
    // Sections from 15.9 to 16.4 KB: each one is either refused by the node (431) or arrives whole, never a 502.
    const answers = new Map<number, number>();
    for (let size = 15_900; size <= 16_400; size += 25) {
      const reply = await rawExchange(t.port, request(['GET / HTTP/1.1', `Host: ${GROUP}`, `X-Big: ${'b'.repeat(size)}`]));
      answers.set(size, status(reply));
      if (status(reply) === 200) expect(t.last().headers['x-big']).toHaveLength(size);
    }
    expect(new Set(answers.values())).toEqual(new Set([200, 431]));
    expect(answers.get(15_900)).toBe(200);
    expect(answers.get(16_400)).toBe(431);
  });

  it('follows --max-header-size up: 40 KB of headers pass with a 64 KB limit, and 431 above', async () => {
    const t = await recordingOrigin({ maxHeaderSize: 65_536 });
    const fields = Array.from({ length: 10 }, (_, i) => `X-Part-${i}: ${'p'.repeat(4_000)}`);
    expect(status(await rawExchange(t.port, request(['GET / HTTP/1.1', `Host: ${GROUP}`, ...fields])))).toBe(200);
    expect(t.last().headers['x-part-9']).toHaveLength(4_000);
    const tooMany = Array.from({ length: 20 }, (_, i) => `X-Part-${i}: ${'p'.repeat(4_000)}`);
    expect(status(await rawExchange(t.port, request(['GET / HTTP/1.1', `Host: ${GROUP}`, ...tooMany])))).toBe(431);
  });
});

describe('what the node counts', () => {
  const counted = async (metrics: { registry: { getSingleMetricAsString(name: string): Promise<string> } }, name: string): Promise<string> =>
    metrics.registry.getSingleMetricAsString(name);

  it('counts an upgrade the origin declined with the status it answered, not 101', async () => {
    const t = await throughNode((_req: http.IncomingMessage, res: http.ServerResponse) => res.writeHead(426, { 'content-length': '0' }).end());
    const reply = await rawExchange(t.port, request(['GET /ws HTTP/1.1', `Host: ${GROUP}`, 'Upgrade: websocket', 'Connection: Upgrade']));
    expect(status(reply)).toBe(426);
    // Counted when the visitor's connection closes.
    await expect.poll(() => counted(t.node.metrics, 'reverst_tunnel_group_proxy_requests_total')).toMatch(/proxy_requests_total\{[^}]*code="426"[^}]*\} 1/);
    expect(await counted(t.node.metrics, 'reverst_tunnel_group_proxy_requests_total')).not.toContain('code="101"');
  });

  it('answers an upgrade the far side never answers with 504 after --request-timeout', async () => {
    const server = http.createServer();
    // Takes the upgrade and says nothing.
    server.on('upgrade', () => {});
    const t = await throughNode(server, { requestTimeoutMs: 500 });
    const started = performance.now();
    const reply = await rawExchange(t.port, request(['GET /ws HTTP/1.1', `Host: ${GROUP}`, 'Upgrade: websocket', 'Connection: Upgrade']));
    expect(status(reply)).toBe(504);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('does not count a hop as retried when its visitor left', async () => {
    const store = await startRedis();
    onCleanup(() => store.stop());
    const groups = writeGroups(`groups:\n  "${GROUP}":\n    hosts: ["${GROUP}"]\n    authentication:\n      basic: { username: "user", password: "pass" }\n`);
    const cluster = { membership: store.url, clusterSecret: 'secret', internalAddress: '127.0.0.1:0', membershipTtlMs: 2_000, groups };
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const holder = await throughNode(
      async () => {
        arrived();
        await new Promise((resolve) => setTimeout(resolve, 60_000));
        return new Response('late');
      },
      { ...cluster, nodeId: 'holder' },
    );
    const entry = await startTestNode({ ...cluster, nodeId: 'entry' });
    await expect.poll(() => entry.node.membership.nodesFor(GROUP).map((n) => n.id), { timeout: 10_000 }).toEqual(['holder']);
    // The visitor asks the entry node, which hops to the holder; the visitor leaves while the handler thinks.
    const visitor = net.connect(entry.node.httpAddress.port, '127.0.0.1');
    visitor.write(request(['GET / HTTP/1.1', `Host: ${GROUP}`]));
    await arrival;
    visitor.destroy();
    await expect.poll(async () => await counted(entry.node.metrics, 'reverst_tunnel_group_proxy_requests_total')).toContain('code="499"} 1');
    expect(await counted(entry.node.metrics, 'reverst_hop_requests_total')).not.toContain('result="retry"');
    expect(holder.node.registry.all()).toHaveLength(1);
  });
});
