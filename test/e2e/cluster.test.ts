import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onCleanup, randomStream, sha256, startNats, startRedis, tempDir, useCleanup, type ServerHandle } from '../harness/index.js';
import { basic, connect, type Tunnel } from '../../client/index.js';
import { WebSocket, WebSocketServer } from 'ws';
import { HopClient, HopNoTunnelError, HopRefusedError } from '../../data-plane/hop.js';
import { type RequestHead, decodeResponseHead, encodeRequestHead, readHead } from '../../shared/heads.js';
import { silentLogger } from '../../shared/log.js';
import { ClusterNode, SECRET, balancedGet, eventually, pongClient, steadyLoad, writeSecret } from './cluster-helpers.js';
import { BASIC_GROUP_YAML, GROUP, testCerts, writeGroups } from './helpers.js';

useCleanup();

const dir = tempDir('reverst-cluster-');
const groupsPath = writeGroups(BASIC_GROUP_YAML, dir);
const secretPath = writeSecret(dir);

async function startCluster(membership: string, ids = ['a', 'b', 'c']): Promise<ClusterNode[]> {
  const certs = await testCerts();
  const nodes = await Promise.all(ids.map((id) => ClusterNode.start(id, { membership, certs, groupsPath, secretPath })));
  // Every node sees every other before the test starts.
  await Promise.all(nodes.map((n) => eventually(async () => (await n.routes()).nodes.length === ids.length, 10_000, `node ${n.id} to see the cluster`)));
  return nodes;
}

async function client(name: string, nodes: ClusterNode[], options: { connections?: number } = {}): Promise<Tunnel> {
  const { ca } = await testCerts();
  const tunnel = await pongClient(
    name,
    nodes.map((n) => n.address),
    ca.cert,
    options,
  );
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

async function get(node: ClusterNode): Promise<string> {
  const r = await balancedGet(() => [node.httpPort], 0);
  return r.detail.replace(/^\d+: /, '');
}

/** Until `node` routes the group to exactly `holders`. */
async function routesTo(node: ClusterNode, holders: string[]): Promise<void> {
  await eventually(
    async () => JSON.stringify([...((await node.routes()).groups[GROUP] ?? [])].sort()) === JSON.stringify([...holders].sort()),
    10_000,
    `${node.id} to route ${GROUP} to [${holders}]`,
  );
}

/** With REVERST_TEST_REPORT set, print the request counts a test saw (for issue notes and debugging). */
function report(what: string, outcomes: { ok: boolean; at: number }[], since?: number): void {
  if (!process.env.REVERST_TEST_REPORT) return;
  const failed = outcomes.filter((o) => !o.ok);
  const last = failed.length > 0 && since !== undefined ? `, last failure ${Math.max(...failed.map((o) => o.at)) - since} ms after the kill` : '';
  console.log(`${what}: ${outcomes.length} requests, ${failed.length} failed${last}`);
}

function failures(outcomes: { ok: boolean; detail: string }[]): string[] {
  return outcomes.filter((o) => !o.ok).map((o) => o.detail);
}

for (const kind of ['redis', 'nats'] as const) {
  describe(`a cluster sharing ${kind}`, () => {
    let store: ServerHandle;
    beforeAll(async () => {
      store = kind === 'redis' ? await startRedis() : await startNats();
    });
    afterAll(() => store.stop());

    it('serves a group from any node, spreads over the nodes holding it, and follows tunnels as they come and go', async () => {
      const [a, b, c] = await startCluster(store.url);
      const one = await client('one', [a!]);
      await routesTo(c!, ['a']);
      expect(await get(b!)).toBe('200 PONG one');
      expect(await get(c!)).toBe('200 PONG one');

      const two = await client('two', [b!]);
      await routesTo(c!, ['a', 'b']);
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add(await get(c!));
      expect(seen).toEqual(new Set(['200 PONG one', '200 PONG two']));

      await one.close();
      await routesTo(c!, ['b']);
      for (let i = 0; i < 5; i++) expect(await get(c!)).toBe('200 PONG two');
      await two.close();
      await routesTo(c!, []);
      expect(await get(c!)).toMatch(/^503 /);
    });

    it('loses no request when a node is killed and the client holds two connections', async () => {
      const nodes = await startCluster(store.url);
      const tunnel = await client('ha', nodes, { connections: 2 });
      await eventually(async () => tunnel.tunnels.length === 2, 10_000, 'two tunnels');
      const held = tunnel.tunnels.map((t) => t.nodeId).sort();
      const victim = nodes.find((n) => n.id === held[0])!;
      const survivors = nodes.filter((n) => n !== victim);
      await Promise.all(survivors.map((n) => routesTo(n, held)));

      const load = steadyLoad(() => survivors.map((n) => n.httpPort));
      await new Promise((r) => setTimeout(r, 1_000));
      await victim.proc.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 3_000));
      const outcomes = await load.stop();
      report(`${kind} kill -9, two connections`, outcomes);
      expect(outcomes.length).toBeGreaterThan(100);
      expect(failures(outcomes)).toEqual([]);
    });

    it('with one connection, serves again within 3 s of a kill, and drops the dead node within its TTL', async () => {
      const nodes = await startCluster(store.url);
      const tunnel = await client('solo', nodes);
      const victim = nodes.find((n) => n.id === tunnel.tunnels[0]!.nodeId)!;
      const survivors = nodes.filter((n) => n !== victim);
      await Promise.all(survivors.map((n) => routesTo(n, [victim.id])));

      const load = steadyLoad(() => survivors.map((n) => n.httpPort));
      await new Promise((r) => setTimeout(r, 1_000));
      const killedAt = Date.now();
      await victim.proc.kill('SIGKILL');
      // TTL 2 s plus a resync: the dead node leaves every table.
      await Promise.all(
        survivors.map((n) => eventually(async () => !(await n.routes()).nodes.includes(victim.id), 2_000 + 2_000 + 1_000, `${n.id} to drop ${victim.id}`)),
      );
      await new Promise((r) => setTimeout(r, 1_000));
      const outcomes = await load.stop();
      report(`${kind} kill -9, one connection`, outcomes, killedAt);
      const lastFailure = Math.max(0, ...outcomes.filter((o) => !o.ok).map((o) => o.at));
      expect(lastFailure === 0 ? 0 : lastFailure - killedAt).toBeLessThan(3_000);
      expect(outcomes.filter((o) => o.at > killedAt + 3_000 && o.ok).length).toBeGreaterThan(20);
    });

    it('rolls every node (SIGTERM, start again) under load without a failed request', async () => {
      const nodes = await startCluster(store.url);
      const tunnel = await client('rolling', nodes);
      const up = new Set(nodes);
      const load = steadyLoad(() => [...up].map((n) => n.httpPort));
      for (const node of nodes) {
        await new Promise((r) => setTimeout(r, 500));
        up.delete(node);
        const exit = await node.proc.kill('SIGTERM');
        expect(exit.code).toBe(0);
        await node.run();
        up.add(node);
        await eventually(async () => (await node.routes()).nodes.length === nodes.length, 10_000, `${node.id} to rejoin`);
      }
      await new Promise((r) => setTimeout(r, 500));
      const outcomes = await load.stop();
      report(`${kind} rolling restart`, outcomes);
      expect(outcomes.length).toBeGreaterThan(100);
      expect(failures(outcomes)).toEqual([]);
      expect(tunnel.tunnels.length).toBe(1);
    });

    it('keeps serving through a store outage and is whole again when the store returns', async () => {
      const [a, b, c] = await startCluster(store.url);
      await client('before', [a!]);
      await routesTo(c!, ['a']);
      const load = steadyLoad(() => [a!.httpPort, c!.httpPort]);
      await store.kill();
      await eventually(async () => (await a!.routes()).membership.startsWith('degraded'), 10_000, 'a to report the outage');
      // A client that registers during the outage is served locally at once.
      await client('during', [b!]);
      expect(await get(b!)).toBe('200 PONG during');
      await new Promise((r) => setTimeout(r, 1_000));
      await store.restart();
      await eventually(async () => (await a!.routes()).membership === 'ok', 15_000, 'a to see the store again');
      await routesTo(c!, ['a', 'b']);
      const outcomes = await load.stop();
      report(`${kind} store outage`, outcomes);
      expect(failures(outcomes)).toEqual([]);
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add(await get(c!));
      expect(seen).toEqual(new Set(['200 PONG before', '200 PONG during']));
    });
  });
}

describe('the internal hop', () => {
  let store: ServerHandle;
  beforeAll(async () => {
    store = await startRedis();
  });
  afterAll(() => store.stop());

  /** One request over the hop as another node would send it, with `secret`: the far node's answer. */
  const hop = async (node: ClusterNode, secret: string): Promise<{ status: number; body: string } | Error> => {
    const client = new HopClient('test', secret, silentLogger);
    try {
      const head: RequestHead = { method: 'GET', target: '/', authority: GROUP, headers: ['X-Request-Id', 'hop-test'], body: false, upgrade: false };
      const far = await client.open({ id: node.id, address: `127.0.0.1:${node.internalPort}` }, GROUP, head);
      far.stream.end(encodeRequestHead(head));
      return await new Promise((resolve) =>
        readHead(
          far.stream,
          decodeResponseHead,
          ({ head: answer, rest }) => {
            const chunks = [rest];
            far.stream.on('data', (c: Buffer) => chunks.push(c)).resume();
            far.stream.once('end', () => resolve({ status: answer.status, body: Buffer.concat(chunks).toString() }));
          },
          resolve,
        ),
      );
    } finally {
      await client.close();
    }
  };

  const raw = (node: ClusterNode, bytes: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const socket = net.connect(node.internalPort, '127.0.0.1', () => socket.end(bytes));
      const chunks: Buffer[] = [];
      socket
        .on('data', (c: Buffer) => chunks.push(c))
        .on('close', () => resolve(Buffer.concat(chunks)))
        .on('error', reject);
    });

  it('carries a WebSocket to the node that holds the tunnel', async () => {
    const [a, b] = await startCluster(store.url, ['a', 'b']);
    const server = http.createServer();
    new WebSocketServer({ server }).on('connection', (ws) => ws.on('message', (data) => ws.send(`echo ${String(data)}`)));
    const { ca } = await testCerts();
    const tunnel = await connect({ addresses: [a!.address], serverName: GROUP, ca: ca.cert, group: GROUP, auth: basic('user', 'pass'), handler: server });
    onCleanup(() => tunnel.close({ graceMs: 0 }));
    await routesTo(b!, ['a']);
    const ws = new WebSocket(`ws://127.0.0.1:${b!.httpPort}/ws`, { headers: { host: GROUP } });
    await once(ws, 'open');
    ws.send('over the hop');
    const [reply] = (await once(ws, 'message')) as [Buffer];
    expect(reply.toString()).toBe('echo over the hop');
    ws.close();
  });

  it('carries 20 MB up and 20 MB down across the hop, and requests after them on the same connections', async () => {
    const [a, b] = await startCluster(store.url, ['a', 'b']);
    let uploaded = '';
    const { ca } = await testCerts();
    const tunnel = await connect({
      addresses: [a!.address],
      serverName: GROUP,
      ca: ca.cert,
      group: GROUP,
      auth: basic('user', 'pass'),
      handler: async (req: http.IncomingMessage, res: http.ServerResponse) => {
        if (req.method === 'POST') {
          uploaded = await sha256(req);
          res.end('stored');
        } else if (req.url === '/down') randomStream(20 << 20, 'down').pipe(res);
        else res.end('small');
      },
    });
    onCleanup(() => tunnel.close({ graceMs: 0 }));
    await routesTo(b!, ['a']);
    const port = b!.httpPort;
    const up = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/up', headers: { host: GROUP } }, (res) => {
        res.resume().on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      randomStream(20 << 20, 'up').pipe(req);
    });
    expect(up).toBe(200);
    expect(uploaded).toBe(await sha256(randomStream(20 << 20, 'up')));
    const down = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/down', headers: { host: GROUP } }, (res) => resolve(sha256(res))).on('error', reject);
    });
    expect(down).toBe(await sha256(randomStream(20 << 20, 'down')));
    for (let i = 0; i < 5; i++) expect(await get(b!)).toBe('200 small');
  });

  it('refuses connections without the cluster secret or with a wrong one, and never hops twice', async () => {
    const [a, b] = await startCluster(store.url, ['a', 'b']);
    let served = 0;
    const { ca } = await testCerts();
    const tunnel = await pongClient('hop', [a!.address], ca.cert, { onRequest: () => served++ });
    onCleanup(() => tunnel.close({ graceMs: 0 }));
    await routesTo(b!, ['a']);
    // Not a hop peer at all (an HTTP request), and a wrong secret: refused with a reason, nothing served.
    expect((await raw(a!, Buffer.from(`GET / HTTP/1.1\r\nHost: ${GROUP}\r\n\r\n`))).subarray(3).toString()).toMatch(/not a reverst hop peer/);
    const wrong = await hop(a!, 'wrong');
    expect(wrong).toBeInstanceOf(HopRefusedError);
    expect((wrong as Error).message).toBe('node a refused the hop: wrong cluster secret');
    // b holds no tunnel: a hop to it is served from its own tunnels only, so it says so and serves nothing.
    expect(await hop(b!, SECRET)).toBeInstanceOf(HopNoTunnelError);
    expect(served).toBe(0);
    // The same credentials reach a, which holds the tunnel.
    expect(await hop(a!, SECRET)).toEqual({ status: 200, body: 'PONG hop' });
    expect(served).toBe(1);
    // The public path through b hops to a once.
    expect(await get(b!)).toBe('200 PONG hop');
    expect(served).toBe(2);
  });
});
