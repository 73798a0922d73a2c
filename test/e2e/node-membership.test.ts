// A node's membership as the node uses it, with real Redis: the address it publishes for the
// hop (IPv6 in brackets), what it logs about the store, and what it lets out of its URL.
import http from 'node:http';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort, onCleanup, startRedis, useCleanup, type ServerHandle } from '../harness/index.js';
import { createMembership } from '../../data-plane/membership/index.js';
import { GROUP, captureLogs, connectClient, startTestNode, visit } from './helpers.js';

useCleanup();

let redis: ServerHandle;
beforeAll(async () => {
  redis = await startRedis();
});

const SECRET = 'node-membership-test-secret';
let namespaces = 0;
/** A store URL of its own per test, so tests never see each other's nodes. */
const storeUrl = () => `${redis.url}?namespace=node-membership-${process.pid}-${++namespaces}`;

describe('a clustered node', () => {
  it('publishes an IPv6 internal address in brackets, so other nodes can hop to it', async () => {
    const url = storeUrl();
    const a = await startTestNode({ nodeId: 'a', membership: url, internalAddress: '[::1]:0', clusterSecret: SECRET });
    const b = await startTestNode({ nodeId: 'b', membership: url, internalAddress: '[::1]:0', clusterSecret: SECRET });
    await connectClient(a);
    await expect.poll(() => b.node.membership.nodesFor(GROUP).map((n) => n.id), { timeout: 10_000 }).toEqual(['a']);
    expect(b.node.membership.nodesFor(GROUP)[0]!.address).toBe(`[::1]:${a.node.internalAddress!.port}`);
    // Node b holds no tunnel: the answer came over the hop to a.
    const res = await visit(b.node.httpAddress.port, '/through-the-hop');
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('PONG');
    expect((await b.node.metrics.hopRequests.get()).values).toEqual([expect.objectContaining({ labels: { result: 'response' }, value: 1 })]);
  });

  it('leaves the membership when its start fails after joining, instead of staying listed until its TTL', async () => {
    const url = storeUrl();
    const a = await startTestNode({ nodeId: 'a', membership: url, internalAddress: '127.0.0.1:0', clusterSecret: SECRET });
    // Node b joins, then cannot listen for HTTP on a's port. Its record would outlive the test.
    const starting = startTestNode({
      nodeId: 'b',
      membership: url,
      membershipTtlMs: 600_000,
      internalAddress: '127.0.0.1:0',
      clusterSecret: SECRET,
      httpAddress: `127.0.0.1:${a.node.httpAddress.port}`,
    });
    await expect(starting).rejects.toThrow(/already in use/);
    // A node joining now reads every record in the store.
    const probe = createMembership(url);
    onCleanup(() => probe.stop());
    await probe.start({ id: 'probe', address: '127.0.0.1:1' });
    expect(probe.health().ok).toBe(true);
    expect(
      probe
        .nodes()
        .map((n) => n.id)
        .sort(),
    ).toEqual(['a', 'probe']);
  });

  it('says "membership store reachable again" only after the store was unreachable', async () => {
    const logs = captureLogs();
    const t = await startTestNode({ membership: storeUrl(), internalAddress: '127.0.0.1:0', clusterSecret: SECRET, logger: logs.logger });
    // Joined: the health change that a restart would also bring.
    await logs.waitFor(/^membership joining -> ok$/);
    expect(t.node.membership.health().ok).toBe(true);
    expect(logs.lines.filter((l) => l.msg === 'membership store reachable again')).toEqual([]);

    await redis.kill();
    await logs.waitFor(/^membership store unreachable/);
    await redis.restart();
    await logs.waitFor(/^membership store reachable again$/, 20_000);
    expect(logs.lines.filter((l) => l.msg === 'membership store reachable again')).toHaveLength(1);
  });

  it('keeps the store credentials out of its logs and /readyz', async () => {
    const logs = captureLogs();
    const password = 'hunter2-do-not-print';
    // A lone user name is a credential too (NATS tokens are written so). Nothing listens there:
    // the node starts degraded, and /readyz says which store it cannot reach.
    const url = `redis://${password}@127.0.0.1:${await freePort()}`;
    const t = await startTestNode({
      membership: url,
      internalAddress: '127.0.0.1:0',
      clusterSecret: SECRET,
      managementAddress: '127.0.0.1:0',
      logger: logs.logger,
    });
    await logs.waitFor(/^membership store unreachable/);
    const readyz = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: t.node.managementAddress!.port, path: '/readyz' }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve(body));
        })
        .on('error', reject);
    });
    expect(readyz).toContain('redis://***@127.0.0.1:');
    expect(readyz).not.toContain(password);
    const logged = logs.lines.map((l) => JSON.stringify(l)).join('\n');
    expect(logged).toContain('redis://***@127.0.0.1:');
    expect(logged).not.toContain(password);
  });
});
