// No vitest import here: the rest of the harness must also load in plain scripts (bench, demos);
// the vitest wiring is in vitest.ts.

/** Something that releases a resource: kill a process, close a socket, remove a directory. */
export type CleanupFn = () => unknown;

// A cleanup that hangs must not hang the suite: give up on it and move on.
const CLEANUP_TIMEOUT_MS = 10_000;

const registry: CleanupFn[] = [];

/** Registers `fn` to run at the end of the current scope; returns a function that unregisters it. */
export function onCleanup(fn: CleanupFn): () => void {
  registry.push(fn);
  return () => {
    // Replaced rather than removed, so the marks that scopes took stay valid.
    const i = registry.lastIndexOf(fn);
    if (i >= 0) registry[i] = () => {};
  };
}

/** How many cleanups are registered: a mark to pass to `runCleanups` later. */
export function pendingCleanups(): number {
  return registry.length;
}

/**
 * Runs, newest first, every cleanup registered at or after index `from` (default: all of them).
 * Never throws: a failing or hanging cleanup is logged so the others still run.
 */
export async function runCleanups(from = 0): Promise<void> {
  while (registry.length > from) {
    const fn = registry.pop()!;
    try {
      await withTimeout(Promise.resolve().then(fn), CLEANUP_TIMEOUT_MS);
    } catch (err) {
      console.error('[harness] cleanup failed:', err);
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`cleanup did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
