// One client of two dies (kill -9) or freezes (SIGSTOP) under load. Requests must not wait on
// the silent tunnel until the node drops it: after about a second it is skipped, and requests
// it never acknowledged move to the other tunnel. Only requests that had already reached the
// dead client may fail.
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../harness/index.js';
import { GROUP, startTestNode } from '../e2e/helpers.js';
import { type Answer, get, load, report, seconds, sized, sleep, spawnExampleClient } from './helpers.js';

useCleanup();

/** Long, so that a request waiting for the drop would show: the fix must not depend on it. */
const UNRESPONSIVE_TIMEOUT_MS = 8_000;
const WORKERS = 8;

/** The longest stretch after `from` in which no request completed. */
function longestGap(answers: Answer[], from: number, to: number): number {
  const times = [from, ...answers.map((a) => a.doneAt).filter((t) => t > from && t < to), to].sort((a, b) => a - b);
  return Math.max(...times.slice(1).map((t, i) => t - times[i]!));
}

async function twoClients() {
  const t = await startTestNode({ unresponsiveTimeoutMs: UNRESPONSIVE_TIMEOUT_MS });
  const clients = [spawnExampleClient(t.address, t.ca, 'client-a'), spawnExampleClient(t.address, t.ca, 'client-b')];
  await expect.poll(() => t.node.registry.count(GROUP), { timeout: 60_000 }).toBe(2);
  return { t, victim: clients[0]! };
}

describe('one client of two goes silent under load', () => {
  it('killed (kill -9): requests move to the other tunnel within about a second, and none that had not reached it fails', async () => {
    const { t, victim } = await twoClients();
    let droppedAt = 0;
    t.node.registry.on('change', (_group: string, count: number) => {
      if (count === 1) droppedAt ||= performance.now();
    });

    const visitors = load(t.node.httpAddress.port, WORKERS, 5);
    await sleep(1_000);
    const killedAt = performance.now();
    await victim.kill('SIGKILL');
    const goneAt = performance.now();
    await expect.poll(() => droppedAt, { timeout: UNRESPONSIVE_TIMEOUT_MS + 10_000 }).toBeGreaterThan(0);
    await sleep(sized(500, 5_000));
    const answers = await visitors.stop();

    const after = answers.filter((a) => a.sentAt >= goneAt);
    const straddling = answers.filter((a) => a.sentAt < killedAt && a.doneAt > killedAt);
    const failed = answers.filter((a) => a.status !== 200);
    const maxAfter = Math.max(...after.map((a) => a.doneAt - a.sentAt));
    const gap = longestGap(answers, goneAt, droppedAt);
    report(
      `kill -9 of one of two clients under load: ${answers.length} requests, ${failed.length} failed; ` +
        `slowest request sent after the kill ${seconds(maxAfter)}; longest stretch without a completed request ${seconds(gap)}; ` +
        `the node dropped the dead tunnel ${seconds(droppedAt - goneAt)} after the kill`,
    );
    // Sent after the client was gone: none can have reached it, so none fails.
    expect(after.length).toBeGreaterThan(100);
    expect(after.filter((a) => a.status !== 200)).toEqual([]);
    // None waited for the node to drop the dead tunnel (8 s): a second or so, then another tunnel took it.
    expect(after.filter((a) => a.sentAt < droppedAt - 1_500 && a.doneAt >= droppedAt)).toEqual([]);
    expect(maxAfter).toBeLessThan(UNRESPONSIVE_TIMEOUT_MS / 2);
    // Only requests already under way at the kill may have reached the dead client.
    expect(failed.length).toBeLessThanOrEqual(straddling.length);
  });

  it('frozen (SIGSTOP): skipped while silent, kept, and served again once it answers', async () => {
    const { t, victim } = await twoClients();
    const tunnels = t.node.registry.all();
    const visitors = load(t.node.httpAddress.port, WORKERS, 5);
    await sleep(500);
    victim.child.kill('SIGSTOP');
    const frozenAt = performance.now();
    await expect.poll(() => tunnels.filter((tunnel) => tunnel.connection.suspect).length, { timeout: 10_000 }).toBe(1);
    // Well inside the node's unresponsive timeout: the frozen tunnel stays registered.
    await sleep(2_000);
    expect(t.node.registry.count(GROUP)).toBe(2);
    victim.child.kill('SIGCONT');
    await expect.poll(() => tunnels.some((tunnel) => tunnel.connection.suspect), { timeout: 10_000 }).toBe(false);
    const answers = await visitors.stop();

    const during = answers.filter((a) => a.sentAt >= frozenAt);
    const maxDuring = Math.max(...during.map((a) => a.doneAt - a.sentAt));
    report(
      `one of two clients frozen for ~3 s under load: ${answers.length} requests, ${answers.filter((a) => a.status !== 200).length} failed, slowest ${seconds(maxDuring)}`,
    );
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(maxDuring).toBeLessThan(UNRESPONSIVE_TIMEOUT_MS / 2);
    // Both tunnels serve again.
    const served = await Promise.all(Array.from({ length: 8 }, () => get(t.node.httpAddress.port)));
    expect(served.every((a) => a.body === 'PONG')).toBe(true);
    for (const tunnel of tunnels) expect(tunnel.inFlight).toBe(0);
    expect(t.node.registry.count(GROUP)).toBe(2);
  });
});
