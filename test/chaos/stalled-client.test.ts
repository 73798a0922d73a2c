// A client process frozen (SIGSTOP: a GC pause, a VM hiccup, a laptop lid) and let go again
// (SIGCONT) must be serving again within seconds of resuming, whether the node dropped it
// meanwhile (its close waits in the client's socket) or forgot it without a word (it restarted).
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../harness/index.js';
import { BASIC_GROUP_YAML, GROUP, startTestNode, testCerts, writeGroups } from '../e2e/helpers.js';
import { NodeProcess, get, report, seconds, sized, sleep, spawnExampleClient } from './helpers.js';

useCleanup();

/** Well above the second or two a client needs, well below what waiting out its timers took (8 to 67 s). */
const RECOVERY_BOUND_MS = 6_000;

describe('a client frozen and let go', () => {
  it.each(sized([3, 8], [3, 10, 20]))(
    'frozen %i s: the node drops it after its unresponsive timeout, and it is back within seconds of resuming',
    async (stallS) => {
      const t = await startTestNode({ unresponsiveTimeoutMs: 5_000 });
      const client = spawnExampleClient(t.address, t.ca);
      await expect.poll(() => t.node.registry.count(GROUP), { timeout: 60_000 }).toBe(1);
      expect((await get(t.node.httpAddress.port)).body).toBe('PONG');

      let droppedAt: number | undefined;
      let backAt: number | undefined;
      t.node.registry.on('change', (_group: string, count: number) => {
        if (count === 0) droppedAt ??= performance.now();
        else if (droppedAt !== undefined) backAt ??= performance.now();
      });

      client.child.kill('SIGSTOP');
      const stoppedAt = performance.now();
      // Visitors keep coming: their requests wait on the frozen tunnel, which is how the node notices.
      const during = Array.from({ length: Math.ceil(stallS * 2) }, (_, i) => sleep(i * 500).then(() => get(t.node.httpAddress.port, `/${i}`, 60_000)));
      await sleep(stallS * 1_000);
      client.child.kill('SIGCONT');
      const resumedAt = performance.now();

      // Serving again: a request gets the example's answer.
      let servedAt = 0;
      for (;;) {
        const answer = await get(t.node.httpAddress.port, '/after', 10_000);
        if (answer.status === 200) {
          servedAt = answer.doneAt;
          break;
        }
        if (performance.now() - resumedAt > 90_000) throw new Error(`not serving 90 s after resuming (last answer ${answer.status} ${answer.body})`);
        await sleep(100);
      }
      const answers = await Promise.all(during);
      const recoveredMs = servedAt - resumedAt;
      report(
        `client frozen ${stallS} s: ${droppedAt === undefined ? 'kept by the node' : `dropped ${seconds(droppedAt - stoppedAt)} after freezing`}, ` +
          `serving again ${seconds(recoveredMs)} after resuming; requests during the freeze: ` +
          `${answers.filter((a) => a.status === 200).length} served, ${answers.filter((a) => a.status !== 200).length} refused (${[...new Set(answers.map((a) => a.status))].join('/')})`,
      );
      if (stallS > 5) {
        // Longer than the node's unresponsive timeout: it let the tunnel go, and the client registered again.
        expect(droppedAt).toBeDefined();
        expect(backAt).toBeDefined();
      }
      expect(recoveredMs).toBeLessThan(RECOVERY_BOUND_MS);
      // Every visitor got an answer (served, or refused by the node while no tunnel was there), none hung.
      expect(answers.every((a) => a.status !== 0)).toBe(true);
    },
  );

  it('frozen while its node was killed and restarted on the same ports: it notices nobody knows it and registers again', async () => {
    const certs = await testCerts();
    const node = await NodeProcess.start({ certs, groupsPath: writeGroups(BASIC_GROUP_YAML) });
    const client = spawnExampleClient(node.address, certs.ca);
    await expect.poll(() => node.tunnels(), { timeout: 60_000 }).toBe(1);

    client.child.kill('SIGSTOP');
    // Killed without a word: no close reaches the client. The new process knows nothing of its connection.
    await node.proc.kill('SIGKILL');
    await node.run();
    await sleep(sized(3_000, 10_000));
    client.child.kill('SIGCONT');
    const resumedAt = performance.now();
    await expect.poll(() => node.tunnels(), { timeout: 90_000, interval: 100 }).toBe(1);
    const recoveredMs = performance.now() - resumedAt;
    report(`client frozen while its node restarted: registered again ${seconds(recoveredMs)} after resuming`);
    expect(recoveredMs).toBeLessThan(RECOVERY_BOUND_MS);
    expect((await get(node.httpPort)).body).toBe('PONG');
  });
});
