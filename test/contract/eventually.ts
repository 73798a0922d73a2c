import { setTimeout as sleep } from 'node:timers/promises';

const POLL_INTERVAL_MS = 20;

/**
 * Calls `check` until it stops throwing and returns its value; after `timeoutMs` rethrows
 * its last error, with how long we waited. For state that settles asynchronously, in place
 * of fixed sleeps.
 */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs: number): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() - started >= timeoutMs) {
        if (err instanceof Error) err.message = `still failing after ${timeoutMs} ms: ${err.message}`;
        throw err;
      }
    }
    await sleep(POLL_INTERVAL_MS);
  }
}
