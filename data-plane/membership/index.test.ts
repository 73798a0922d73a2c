import { describe, expect, it } from 'vitest';
import { ReverstError } from '../../shared/errors.js';
import {
  createMembership,
  type Membership,
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_NAMESPACE,
  DEFAULT_RESYNC_MS,
  DEFAULT_TTL_MS,
  parseMembershipOptions,
} from './index.js';

describe('createMembership', () => {
  const accepted = ['memory', 'memory://', 'memory://cluster', 'redis://127.0.0.1:6379', 'rediss://cache:6380/2', 'nats://127.0.0.1:4222', 'NATS://u:p@host'];
  it.each(accepted)('accepts %s without connecting yet', (url) => {
    expect(createMembership(url).health()).toEqual({ ok: false, detail: 'not started' });
  });

  it.each(['etcd://127.0.0.1:2379', 'redis', '/var/run/redis.sock', '', 'http://[::1]:8222'])('rejects %j, naming the accepted forms', (url) => {
    let error: unknown;
    try {
      createMembership(url);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ReverstError);
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION' });
    expect((error as Error).message).toMatch(/^unsupported membership store ".*": use memory, memory:\/\/<name>, redis:\/\/.*rediss:\/\/.*nats:\/\//);
  });

  it('rejects a malformed URL for a known store', () => {
    expect(() => createMembership('nats://[::1')).toThrow(/^malformed URL for the membership store "nats:\/\/\[::1": use memory/);
  });

  it('keeps credentials out of the error message', () => {
    expect(() => createMembership('mongodb://admin:hunter2@db:27017')).toThrow(/"mongodb:\/\/\*\*\*@db:27017"/);
    expect(() => createMembership('etcd://T0KEN@db:2379')).toThrow(/"etcd:\/\/\*\*\*@db:2379"/);
  });

  it('takes the namespace from ?namespace= on the URL or from the options, refusing two different ones', () => {
    expect(() => createMembership('redis://127.0.0.1:6379?namespace=blue')).not.toThrow();
    expect(() => createMembership('redis://127.0.0.1:6379?namespace=blue', { namespace: 'blue' })).not.toThrow();
    expect(() => createMembership('nats://127.0.0.1:4222?namespace=blue', { namespace: 'green' })).toThrow(
      /membership namespace given twice, as "green" and in the store URL as "blue"/,
    );
    expect(() => createMembership('redis://127.0.0.1:6379?namespace=a:b')).toThrow(/namespace "a:b" may only contain/);
  });

  it('a private memory store is standalone: two of them never see each other', async () => {
    const a = createMembership('memory');
    const b = createMembership('memory');
    a.setGroups(['flipt.dev.local']);
    await a.start({ id: 'a', address: 'a:1' });
    await b.start({ id: 'b', address: 'b:1' });
    expect(a.health().ok).toBe(true);
    expect(b.nodes().map((n) => n.id)).toEqual(['b']);
    expect(b.nodesFor('flipt.dev.local')).toEqual([]);
    await Promise.all([a.stop(), b.stop()]);
  });

  it('rejects a second start() and a node without an id or address', async () => {
    const m = createMembership('memory');
    await expect(m.start({ id: '', address: 'a:1' })).rejects.toThrow(/non-empty id and address/);
    const n = createMembership('memory');
    await n.start({ id: 'n', address: 'n:1' });
    await expect(n.start({ id: 'n', address: 'n:1' })).rejects.toThrow(/already called/);
    await n.stop();
  });

  it('a throwing change listener breaks neither setGroups nor the store', async () => {
    const a = createMembership('memory://listener-test');
    const b = createMembership('memory://listener-test');
    b.on('change', () => {
      throw new Error('listener bug');
    });
    await a.start({ id: 'a', address: 'a:1' });
    await b.start({ id: 'b', address: 'b:1' });
    expect(() => b.setGroups(['g'])).not.toThrow();
    a.setGroups(['g']);
    await expect
      .poll(() =>
        b
          .nodesFor('g')
          .map((n) => n.id)
          .sort(),
      )
      .toEqual(['a', 'b']);
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe('Membership.releasedAt', () => {
  /** Resolves at the first 'change' of `m` after which `done` holds (at once if it holds already). */
  const until = (m: Membership, done: () => boolean): Promise<void> =>
    new Promise((resolve) => {
      if (done()) return resolve();
      const check = (): void => {
        if (!done()) return;
        m.off('change', check);
        resolve();
      };
      m.on('change', check);
    });
  const holders = (m: Membership, group: string) => m.nodesFor(group).map((n) => n.id);

  it("says when a group lost its last holder, this node's own tunnels included, until one holds it again", async () => {
    const a = createMembership('memory://released-test');
    const b = createMembership('memory://released-test');
    await a.start({ id: 'a', address: 'a:1' });
    await b.start({ id: 'b', address: 'b:1' });
    expect(a.releasedAt('g')).toBeUndefined(); // never held

    b.setGroups(['g']);
    await until(a, () => holders(a, 'g').includes('b'));
    expect(a.releasedAt('g')).toBeUndefined();

    // b's tunnel leaves (to move to a): for a moment nobody holds g, and a can tell it was held.
    const before = performance.now();
    b.setGroups([]);
    await until(a, () => holders(a, 'g').length === 0);
    const released = a.releasedAt('g')!;
    expect(released).toBeGreaterThanOrEqual(before);
    expect(released).toBeLessThanOrEqual(performance.now());
    expect(b.releasedAt('g')).toBeGreaterThanOrEqual(before);

    // Its new holder: a itself, which then lets go too.
    a.setGroups(['g']);
    expect(a.releasedAt('g')).toBeUndefined();
    await until(b, () => holders(b, 'g').includes('a'));
    expect(b.releasedAt('g')).toBeUndefined();
    a.setGroups([]);
    expect(a.releasedAt('g')).toBeGreaterThanOrEqual(released);
    await until(b, () => holders(b, 'g').length === 0);
    expect(b.releasedAt('g')).toBeGreaterThanOrEqual(released);
    await Promise.all([a.stop(), b.stop()]);
  });
});

describe('parseMembershipOptions', () => {
  it('applies the documented defaults', () => {
    expect(parseMembershipOptions()).toMatchObject({
      ttlMs: DEFAULT_TTL_MS,
      heartbeatMs: DEFAULT_HEARTBEAT_MS,
      resyncMs: DEFAULT_RESYNC_MS,
      namespace: DEFAULT_NAMESPACE,
    });
    expect(DEFAULT_HEARTBEAT_MS * 3).toBeLessThanOrEqual(DEFAULT_TTL_MS);
  });

  it('derives the heartbeat and the resync from a short TTL when none is given', () => {
    expect(parseMembershipOptions({ ttlMs: 1_500 })).toMatchObject({ heartbeatMs: 500, resyncMs: 1_500 });
    // A long TTL keeps the default periods: a dead node still leaves within the TTL plus one resync.
    expect(parseMembershipOptions({ ttlMs: 60_000 })).toMatchObject({ heartbeatMs: DEFAULT_HEARTBEAT_MS, resyncMs: DEFAULT_RESYNC_MS });
  });

  it('rejects a heartbeat that is not shorter than the TTL, saying what to change', () => {
    expect(() => parseMembershipOptions({ ttlMs: 1_000, heartbeatMs: 1_000 })).toThrow(
      /heartbeatMs \(1000\) must be shorter than ttlMs \(1000\).*lower heartbeatMs or raise ttlMs/,
    );
  });

  it.each([
    [{ ttlMs: 0 }, /ttlMs must be a positive whole number/],
    [{ resyncMs: 1.5 }, /resyncMs must be a positive whole number/],
    [{ heartbeatMs: -1 }, /heartbeatMs must be a positive whole number/],
    [{ namespace: 'a:b' }, /namespace "a:b" may only contain letters, digits, "-" and "_"/],
    [{ namespace: '' }, /namespace "" may only contain/],
  ])('rejects %j', (options, message) => {
    expect(() => parseMembershipOptions(options)).toThrow(message);
  });
});
