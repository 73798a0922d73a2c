/**
 * The Membership contract, run against every backend (membership.test.ts): whatever the store,
 * nodes see each other, group changes travel as events, leaving is immediate, a crash is
 * noticed within the TTL plus one resync, and a store outage degrades without breaking routing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { createMembership, type Membership, type MembershipOptions, type NodeInfo } from '../../data-plane/membership/index.js';
import { onCleanup } from '../harness/index.js';
import { eventually } from './eventually.js';

export interface MembershipBackend {
  name: string;
  /** The store URL for a cluster; `namespace` is unique per test (memory uses it as the store name). */
  url(namespace: string): string;
  /** Crash the store and bring it back on the same port; absent where there is no server (memory). */
  outage?: { kill(): Promise<void>; restart(): Promise<void> };
}

// Short timings keep the suite quick; every deadline below is derived from them.
const TTL_MS = 1_500;
const HEARTBEAT_MS = 300;
const RESYNC_MS = 1_000;
/** Tests of the event path use this resync period, so only an event can deliver the change in time. */
const NO_RESYNC_MS = 60_000;
/** Changes travel in milliseconds; the deadline leaves room for a loaded 2-core CI machine. */
const EVENT_DEADLINE_MS = 1_000;
/** A crashed node is gone once its record expired and the next resync ran (plus scheduling slack). */
const EXPIRY_DEADLINE_MS = TTL_MS + RESYNC_MS + 1_000;
/** How long the store stays down in the outage case. */
const OUTAGE_MS = 2_000;
/** Reconnect backoff (ioredis ≤ 2 s, nats.js 1 s) plus JetStream's own recovery after a restart. */
const RECOVERY_DEADLINE_MS = 10_000;

const FLIPT = 'flipt.dev.local';
const OTHER = 'other.dev.local';

let clusters = 0;

/** A fresh namespace on the backend's store and a way to join nodes to it; nodes stop at cleanup. */
function cluster(backend: MembershipBackend, overrides: MembershipOptions = {}) {
  const namespace = `contract-${backend.name}-${process.pid}-${++clusters}`;
  const url = backend.url(namespace);
  return {
    async join(id: string, groups: string[] = []): Promise<Membership> {
      const node = createMembership(url, { namespace, ttlMs: TTL_MS, heartbeatMs: HEARTBEAT_MS, resyncMs: RESYNC_MS, ...overrides });
      onCleanup(() => node.stop({ leave: false }));
      node.setGroups(groups);
      await node.start({ id, address: addressOf(id) });
      return node;
    },
  };
}

const addressOf = (id: string) => `${encodeURIComponent(id)}.internal:7443`;
const ids = (nodes: NodeInfo[]) => nodes.map((n) => n.id).sort();

export function membershipContract(backend: MembershipBackend): void {
  it('keeps clusters with different namespaces apart in one store (?namespace= on the URL)', async () => {
    const base = backend.url(`shared-${process.pid}-${++clusters}`);
    const suffix = `${process.pid}-${clusters}`;
    const join = async (namespace: string, id: string) => {
      const node = createMembership(`${base}?namespace=${namespace}-${suffix}`, { ttlMs: TTL_MS, heartbeatMs: HEARTBEAT_MS, resyncMs: RESYNC_MS });
      onCleanup(() => node.stop({ leave: false }));
      node.setGroups([FLIPT]);
      await node.start({ id, address: addressOf(id) });
      return node;
    };
    const blueA = await join('blue', 'a');
    const green = await join('green', 'g');
    const blueB = await join('blue', 'b');
    // Joining reads the whole store: what a node sees right after start() is what its namespace holds.
    expect(ids(blueB.nodes())).toEqual(['a', 'b']);
    expect(ids(green.nodes())).toEqual(['g']);
    await eventually(() => expect(ids(blueA.nodesFor(FLIPT))).toEqual(['a', 'b']), EVENT_DEADLINE_MS);
    // b's join reached a as an event; g's, written earlier into the same store, never did.
    expect(ids(blueA.nodes())).toEqual(['a', 'b']);
    expect(ids(green.nodesFor(FLIPT))).toEqual(['g']);
  });

  it('a node that joins sees the nodes already there, and they see it', async () => {
    const c = cluster(backend);
    const a = await c.join('a');
    const b = await c.join('b');

    expect(a.health()).toMatchObject({ ok: true });
    // Joining reads the whole store before start() resolves.
    expect(b.nodes()).toEqual([
      { id: 'b', address: addressOf('b') },
      { id: 'a', address: addressOf('a') },
    ]);
    await eventually(() => expect(ids(a.nodes())).toEqual(['a', 'b']), EVENT_DEADLINE_MS);
    expect(a.nodes().find((n) => n.id === 'b')?.address).toBe(addressOf('b'));
  });

  it('setGroups reaches the other nodes through change events, long before a resync', async () => {
    const c = cluster(backend, { resyncMs: NO_RESYNC_MS });
    const a = await c.join('a');
    const b = await c.join('b');
    let changes = 0;
    b.on('change', () => changes++);

    a.setGroups([FLIPT, OTHER]);
    // Our own groups route locally at once, before the store has seen them.
    expect(ids(a.nodesFor(FLIPT))).toEqual(['a']);
    await eventually(() => {
      expect(ids(b.nodesFor(FLIPT))).toEqual(['a']);
      expect(ids(b.nodesFor(OTHER))).toEqual(['a']);
    }, EVENT_DEADLINE_MS);
    expect(changes).toBeGreaterThan(0);

    a.setGroups([OTHER]);
    expect(a.nodesFor(FLIPT)).toEqual([]);
    await eventually(() => {
      expect(b.nodesFor(FLIPT)).toEqual([]);
      expect(ids(b.nodesFor(OTHER))).toEqual(['a']);
    }, EVENT_DEADLINE_MS);
  });

  it('groups set before start() are published when the node joins', async () => {
    const c = cluster(backend);
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b');
    expect(ids(b.nodesFor(FLIPT))).toEqual(['a']);
    expect(ids(a.nodesFor(FLIPT))).toEqual(['a']);
  });

  it('returns every node that holds a group, this node first', async () => {
    const c = cluster(backend);
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b', [FLIPT, OTHER]);
    const observer = await c.join('observer');

    expect(ids(observer.nodesFor(FLIPT))).toEqual(['a', 'b']);
    expect(ids(observer.nodesFor(OTHER))).toEqual(['b']);
    expect(observer.nodesFor('unknown.dev.local')).toEqual([]);
    await eventually(() => expect(a.nodesFor(FLIPT).map((n) => n.id)).toEqual(['a', 'b']), EVENT_DEADLINE_MS);
    expect(b.nodesFor(FLIPT).map((n) => n.id)).toEqual(['b', 'a']);
  });

  it('stop() leaves: the other nodes drop the node at once', async () => {
    const c = cluster(backend, { resyncMs: NO_RESYNC_MS });
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b');
    expect(ids(b.nodesFor(FLIPT))).toEqual(['a']);

    await a.stop();
    await eventually(() => {
      expect(ids(b.nodes())).toEqual(['b']);
      expect(b.nodesFor(FLIPT)).toEqual([]);
    }, EVENT_DEADLINE_MS);
    expect(a.health()).toEqual({ ok: false, detail: 'stopped' });
    await a.stop(); // idempotent
  });

  it('stop({ leave: false }), a crash as others see it: the node drops out within the TTL plus one resync', async () => {
    const c = cluster(backend);
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b');

    const crashedAt = Date.now();
    await a.stop({ leave: false });
    expect(ids(b.nodes())).toEqual(['a', 'b']); // nothing told b yet: the record must expire
    await eventually(() => expect(ids(b.nodes())).toEqual(['b']), EXPIRY_DEADLINE_MS);
    expect(b.nodesFor(FLIPT)).toEqual([]);
    // A leave would have been seen within milliseconds; an expiry takes most of a TTL (less
    // however late the last heartbeat was, hence the margin).
    expect(Date.now() - crashedAt).toBeGreaterThanOrEqual(TTL_MS / 2);
  });

  it('a group held by a node that vanished is no longer routed to it', async () => {
    const c = cluster(backend);
    const a = await c.join('a', [FLIPT, OTHER]);
    const b = await c.join('b', [FLIPT]);
    const observer = await c.join('observer');
    expect(ids(observer.nodesFor(FLIPT))).toEqual(['a', 'b']);

    await a.stop({ leave: false });
    await eventually(() => {
      expect(ids(observer.nodesFor(FLIPT))).toEqual(['b']);
      expect(observer.nodesFor(OTHER)).toEqual([]);
      expect(ids(b.nodesFor(FLIPT))).toEqual(['b']);
    }, EXPIRY_DEADLINE_MS);
  });

  it('a node whose record is deleted behind its back writes it again', async () => {
    const c = cluster(backend, { resyncMs: NO_RESYNC_MS });
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b');
    // A stray process with our id (a misconfiguration, or our previous incarnation) leaves,
    // deleting the record we share.
    const stray = await c.join('a', [OTHER]);
    await stray.stop();
    await eventually(() => {
      expect(ids(b.nodesFor(FLIPT))).toEqual(['a']);
      expect(b.nodesFor(OTHER)).toEqual([]);
    }, EVENT_DEADLINE_MS);
    expect(a.health().ok).toBe(true);
  });

  it('node ids and group names may be any string', async () => {
    const c = cluster(backend, { resyncMs: NO_RESYNC_MS });
    const odd = 'node 1/ü.*>:[x]';
    const groups = ['*.dev.local', 'a b/c:d', 'ümlaut.example', '..', '>'];
    const a = await c.join(odd, groups);
    const b = await c.join('b');
    for (const group of groups) expect(ids(b.nodesFor(group))).toEqual([odd]);
    expect(b.nodesFor('x.dev.local')).toEqual([]); // '*' is a name here, not a wildcard

    a.setGroups(['new.dev.local']);
    await eventually(() => expect(ids(b.nodesFor('new.dev.local'))).toEqual([odd]), EVENT_DEADLINE_MS);
    await a.stop();
    await eventually(() => expect(ids(b.nodes())).toEqual(['b']), EVENT_DEADLINE_MS);
  });

  it('stop() releases every socket and timer it made', async () => {
    const before = handleCounts();
    const c = cluster(backend);
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b');
    await eventually(() => expect(ids(a.nodes())).toEqual(['a', 'b']), EVENT_DEADLINE_MS);

    await Promise.all([a.stop(), b.stop({ leave: false })]);
    // At most as many as before: the previous test's sockets may still have been closing then.
    await eventually(() => {
      const after = handleCounts();
      for (const kind of HANDLE_KINDS) expect(after[kind], kind).toBeLessThanOrEqual(before[kind]);
    }, 1_000);
  });

  it.skipIf(!backend.outage)('a store outage degrades health but keeps routing; after the restart everything is published again', async () => {
    const outage = backend.outage!;
    const c = cluster(backend);
    const a = await c.join('a', [FLIPT]);
    const b = await c.join('b');
    await eventually(() => expect(ids(a.nodes())).toEqual(['a', 'b']), EVENT_DEADLINE_MS);
    const health: boolean[] = [];
    b.on('health', (h) => health.push(h.ok));

    const killedAt = Date.now();
    await outage.kill();
    await eventually(() => {
      expect(a.health().ok).toBe(false);
      expect(b.health().ok).toBe(false);
    }, EVENT_DEADLINE_MS);
    expect(b.health().detail).toMatch(/last known table of 1 other node/);
    // The last known table stays in use, and setGroups neither blocks nor throws.
    expect(ids(b.nodesFor(FLIPT))).toEqual(['a']);
    a.setGroups([FLIPT, OTHER]);
    expect(ids(a.nodesFor(OTHER))).toEqual(['a']);
    // A node (re)started now must still come up, degraded, to serve its own tunnels.
    const early = await c.join('early', [FLIPT]);
    expect(early.health()).toMatchObject({ ok: false, detail: expect.stringMatching(/unavailable/) });
    expect(ids(early.nodesFor(FLIPT))).toEqual(['early']);

    await sleep(Math.max(0, OUTAGE_MS - (Date.now() - killedAt)));
    // Even past the TTL the last table holds: nothing could have told us the nodes are gone.
    expect(ids(b.nodesFor(FLIPT))).toEqual(['a']);
    await outage.restart();

    await eventually(() => {
      for (const node of [a, b, early]) expect(node.health()).toMatchObject({ ok: true });
    }, RECOVERY_DEADLINE_MS);
    // What changed during the outage was published once the store came back.
    await eventually(() => {
      expect(ids(b.nodesFor(OTHER))).toEqual(['a']);
      expect(ids(b.nodesFor(FLIPT))).toEqual(['a', 'early']);
    }, EXPIRY_DEADLINE_MS);
    expect(health.at(0)).toBe(false);
    expect(health.at(-1)).toBe(true);
    expect(health.filter((ok, i) => ok === health[i - 1])).toEqual([]); // transitions only

    const late = await c.join('late');
    expect(ids(late.nodes())).toEqual(['a', 'b', 'early', 'late']);
    expect(ids(late.nodesFor(FLIPT))).toEqual(['a', 'early']);
    expect(ids(late.nodesFor(OTHER))).toEqual(['a']);
  });
}

const HANDLE_KINDS = ['TCPSocketWrap', 'Timeout'] as const;

/** Sockets and timers alive in this process, by kind. */
function handleCounts(): Record<(typeof HANDLE_KINDS)[number], number> {
  const active = process.getActiveResourcesInfo();
  return { TCPSocketWrap: active.filter((k) => k === 'TCPSocketWrap').length, Timeout: active.filter((k) => k === 'Timeout').length };
}
