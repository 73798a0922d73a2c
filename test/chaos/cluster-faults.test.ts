// Faults of a cluster under load (nodes as their own processes, sharing a real Redis): a node
// killed with one and with two client connections, the store killed under cross-node load, and
// the hop's metrics when visitors leave.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onCleanup, startRedis, tempDir, useCleanup, type ServerHandle } from '../harness/index.js';
import { ClusterNode, SECRET, eventually, pongClient, steadyLoad, writeSecret } from '../e2e/cluster-helpers.js';
import { BASIC_GROUP_YAML, GROUP, connectClient, startTestNode, testCerts, writeGroups } from '../e2e/helpers.js';
import { report, seconds, sized, sleep } from './helpers.js';

useCleanup();

const dir = tempDir('reverst-chaos-cluster-');
const groupsPath = writeGroups(BASIC_GROUP_YAML, dir);
const secretPath = writeSecret(dir);

let store: ServerHandle;
beforeAll(async () => {
  store = await startRedis();
});
afterAll(() => store.stop());

async function startCluster(ids: string[]): Promise<ClusterNode[]> {
  const certs = await testCerts();
  const nodes = await Promise.all(ids.map((id) => ClusterNode.start(id, { membership: store.url, certs, groupsPath, secretPath })));
  await Promise.all(nodes.map((n) => eventually(async () => (await n.routes()).nodes.length === ids.length, 20_000, `node ${n.id} to see the cluster`)));
  return nodes;
}

async function routesTo(node: ClusterNode, holders: string[]): Promise<void> {
  const want = JSON.stringify([...holders].sort());
  await eventually(async () => JSON.stringify([...((await node.routes()).groups[GROUP] ?? [])].sort()) === want, 20_000, `${node.id} to route to [${holders}]`);
}

async function client(name: string, nodes: ClusterNode[], connections = 1) {
  const { ca } = await testCerts();
  const tunnel = await pongClient(
    name,
    nodes.map((n) => n.address),
    ca.cert,
    { connections },
  );
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

const failed = (outcomes: { ok: boolean; detail: string }[]) => outcomes.filter((o) => !o.ok).map((o) => o.detail);

describe('cluster faults under load', () => {
  it('kill -9 of a node while the client holds two connections: no request fails', async () => {
    const nodes = await startCluster(['a', 'b', 'c']);
    const tunnel = await client('ha', nodes, 2);
    await eventually(async () => tunnel.tunnels.length === 2, 20_000, 'two tunnels');
    const held = tunnel.tunnels.map((t) => t.nodeId);
    const victim = nodes.find((n) => n.id === held[0])!;
    const survivors = nodes.filter((n) => n !== victim);
    await Promise.all(survivors.map((n) => routesTo(n, held)));

    const load = steadyLoad(() => survivors.map((n) => n.httpPort));
    await sleep(1_000);
    await victim.proc.kill('SIGKILL');
    await sleep(sized(4_000, 20_000));
    const outcomes = await load.stop();
    report(`kill -9 of a node, client with two connections: ${outcomes.length} requests, ${failed(outcomes).length} failed`);
    expect(outcomes.length).toBeGreaterThan(100);
    expect(failed(outcomes)).toEqual([]);
  });

  it('kill -9 of the node holding the only connection: serving again within seconds, through the client reconnecting elsewhere', async () => {
    const nodes = await startCluster(['a', 'b', 'c']);
    const tunnel = await client('solo', nodes);
    const victim = nodes.find((n) => n.id === tunnel.tunnels[0]!.nodeId)!;
    const survivors = nodes.filter((n) => n !== victim);
    await Promise.all(survivors.map((n) => routesTo(n, [victim.id])));

    const load = steadyLoad(() => survivors.map((n) => n.httpPort));
    await sleep(1_000);
    const killedAt = Date.now();
    await victim.proc.kill('SIGKILL');
    await eventually(async () => tunnel.tunnels.length === 1 && tunnel.tunnels[0]!.nodeId !== victim.id, 20_000, 'the client to register elsewhere');
    await sleep(sized(2_000, 20_000));
    const outcomes = await load.stop();
    const failures = outcomes.filter((o) => !o.ok);
    const lastFailure = failures.length > 0 ? Math.max(...failures.map((o) => o.at)) - killedAt : 0;
    report(
      `kill -9 of the node holding the only connection: ${outcomes.length} requests, ${failures.length} failed, last failure ${seconds(lastFailure)} after the kill`,
    );
    // While the only tunnel moves, visitors may get 502/503; then everything is served again.
    expect(lastFailure).toBeLessThan(10_000);
    expect(outcomes.filter((o) => o.at > killedAt + lastFailure && o.ok).length).toBeGreaterThan(20);
  });

  it('the store killed under cross-node load: no request fails, and the cluster is whole when it returns', async () => {
    const [a, b] = await startCluster(['a', 'b']);
    await client('far', [a!]);
    await routesTo(b!, ['a']);
    // Every request goes to b, which holds no tunnel: each one crosses the hop to a.
    const load = steadyLoad(() => [b!.httpPort]);
    await sleep(500);
    await store.kill();
    await eventually(async () => (await b!.routes()).membership.startsWith('degraded'), 20_000, 'b to report the outage');
    const outage = sized(5_000, 30_000);
    await sleep(outage);
    await store.restart();
    await eventually(async () => (await b!.routes()).membership === 'ok', 30_000, 'b to see the store again');
    await routesTo(b!, ['a']);
    await sleep(500);
    const outcomes = await load.stop();
    report(`store killed for ${seconds(outage)} under cross-node load: ${outcomes.length} requests, ${failed(outcomes).length} failed`);
    expect(outcomes.length).toBeGreaterThan(100);
    expect(failed(outcomes)).toEqual([]);
  });
});

describe('the hop, when visitors leave', () => {
  it('counts a visitor who left during a hop as cancelled, not as a retry', async () => {
    const clustered = { membership: store.url, clusterSecret: SECRET, internalAddress: '127.0.0.1:0', membershipTtlMs: 2_000 };
    const a = await startTestNode({ ...clustered, nodeId: 'a' });
    const b = await startTestNode({ ...clustered, nodeId: 'b' });
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    await connectClient(a, {
      // Answers only once the visitor is long gone.
      handler: async () => {
        arrived();
        await sleep(2_000);
        return new Response('late');
      },
    });
    await eventually(async () => b.node.membership.nodesFor(GROUP).some((n) => n.id === 'a'), 20_000, 'b to route to a');

    const hops = async (): Promise<Record<string, number>> =>
      Object.fromEntries((await b.node.metrics.hopRequests.get()).values.map((v) => [v.labels.result, v.value]));
    const total = async () => Object.values(await hops()).reduce((sum, n) => sum + n, 0);
    expect(await total()).toBe(0);
    const req = http.get({ host: '127.0.0.1', port: b.node.httpAddress.port, path: '/leaving', headers: { host: GROUP } });
    req.on('error', () => {});
    await arrival;
    req.destroy();
    await eventually(async () => (await total()) > 0, 10_000, 'the hop to be counted');
    const after = await hops();
    report(`hop metrics after a visitor left mid-hop: ${JSON.stringify(after)}`);
    expect(after).toEqual({ cancelled: 1 });
  });
});
