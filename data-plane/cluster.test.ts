// Cluster.awaitHolder: what a request that found no holder for its group waits for, with
// membership over a real Redis (a memory store is a node alone: no other nodes to wait for).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onCleanup, startRedis, useCleanup, type ServerHandle } from '../test/harness/index.js';
import { silentLogger } from '../shared/log.js';
import { Cluster } from './cluster.js';
import { Metrics } from './metrics.js';
import type { TriedHolders } from './proxy.js';
import { type Tunnel, TunnelRegistry } from './tunnels.js';

useCleanup();

const GROUP = 'moving.example';
const nothingTried: TriedHolders = { tunnels: new Set(), nodes: new Set() };

let redis: ServerHandle;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis.stop());

let clusters = 0;

/** Nodes of one cluster (their own namespace), joined; they leave at cleanup. */
async function nodes(...ids: string[]): Promise<Cluster[]> {
  return (await nodesWithRegistries(...ids)).map(({ cluster }) => cluster);
}

async function nodesWithRegistries(...ids: string[]): Promise<{ cluster: Cluster; registry: TunnelRegistry }[]> {
  const namespace = `await-holder-${process.pid}-${++clusters}`;
  return Promise.all(
    ids.map(async (nodeId) => {
      const registry = new TunnelRegistry();
      const cluster = new Cluster({
        nodeId,
        membership: redis.url,
        namespace,
        internalAddress: { host: '127.0.0.1', port: 1 },
        clusterSecret: 'secret',
        registry,
        metrics: new Metrics(),
        logger: silentLogger,
      });
      onCleanup(async () => {
        await cluster.leave();
        await cluster.close();
      });
      await cluster.join();
      return { cluster, registry };
    }),
  );
}

/** Resolves at the first membership change of `node` after which `done` holds (at once if it holds). */
const until = (node: Cluster, done: () => boolean): Promise<void> =>
  new Promise((resolve) => {
    if (done()) return resolve();
    const check = (): void => {
      if (!done()) return;
      node.membership.off('change', check);
      resolve();
    };
    node.membership.on('change', check);
  });
const holders = (node: Cluster) => node.membership.nodesFor(GROUP).map((n) => n.id);

/** What `promise` has settled to once pending callbacks ran, or 'pending'. */
const settled = <T>(promise: Promise<T>): Promise<T | 'pending'> => Promise.race([promise, new Promise<'pending'>((r) => setImmediate(() => r('pending')))]);

describe('Cluster.awaitHolder', () => {
  it('waits past a holder that turned the request away (its route is stale) until the next holder appears', async () => {
    const [a, b, c] = await nodes('a', 'b', 'c');
    b!.membership.setGroups([GROUP]);
    await until(a!, () => holders(a!).includes('b'));

    // b's tunnel already left for c, but a has not seen either record change: b answered "no tunnel here".
    const waited = a!.awaitHolder(GROUP, { tunnels: new Set(), nodes: new Set(['b']) });
    let holdersWhenResolved: string[] | undefined;
    void waited.then(() => (holdersWhenResolved = holders(a!)));
    c!.membership.setGroups([GROUP]);
    expect(await waited).toBe(true);
    expect(holdersWhenResolved).toContain('c');
  });

  it("waits past this node's own tunnel that is closing (its client left for another node) until the next holder appears", async () => {
    const [first, second] = await nodesWithRegistries('a', 'c');
    const [a, c, registry] = [first!.cluster, second!.cluster, first!.registry];
    // The client closed its connection here after registering elsewhere; the registry lets go once the close completes.
    const leaving = {
      id: 'a-1',
      group: GROUP,
      connection: { isClosing: true, suspect: false, closed: new Promise(() => {}) },
      inFlight: 0,
    } as unknown as Tunnel;
    registry.add(leaving);

    // Whether the request tried it and failed, or skipped it as closing.
    const waited = a!.awaitHolder(GROUP, { tunnels: new Set(), nodes: new Set() });
    let holdersWhenResolved: string[] | undefined;
    void waited.then(() => (holdersWhenResolved = holders(a!)));
    c!.membership.setGroups([GROUP]);
    expect(await waited).toBe(true);
    expect(holdersWhenResolved).toContain('c');
  });

  it('waits for the next holder of a group whose last holder just left, on a node that never served it', async () => {
    const [a, b, c] = await nodes('a', 'b', 'c');
    b!.membership.setGroups([GROUP]);
    await until(a!, () => holders(a!).includes('b'));
    b!.membership.setGroups([]);
    await until(a!, () => holders(a!).length === 0);

    const waited = a!.awaitHolder(GROUP, nothingTried);
    let holdersWhenResolved: string[] | undefined;
    void waited.then(() => (holdersWhenResolved = holders(a!)));
    c!.membership.setGroups([GROUP]);
    expect(await waited).toBe(true);
    expect(holdersWhenResolved).toEqual(['c']);
  });

  it('answers false at once when the live tunnels here failed the request: nothing is moving', async () => {
    const [node] = await nodesWithRegistries('a');
    const { cluster: a, registry } = node!;
    const live = {
      id: 'a-1',
      group: GROUP,
      connection: { isClosing: false, suspect: false, closed: new Promise(() => {}) },
      inFlight: 0,
    } as unknown as Tunnel;
    registry.add(live);
    // The client refused the request, or its handler broke: its tunnel stays, and no other is coming.
    expect(await settled(a.awaitHolder(GROUP, { tunnels: new Set([live]), nodes: new Set() }))).toBe(false);
  });

  it('answers false at once for a group nobody held lately: nothing is moving', async () => {
    const [a] = await nodes('a');
    expect(await settled(a!.awaitHolder(GROUP, nothingTried))).toBe(false);
  });
});
