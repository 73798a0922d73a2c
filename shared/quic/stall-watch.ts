/**
 * Notices when this whole process was frozen (SIGSTOP, a suspended VM or laptop,
 * a very long GC pause): one timer for the process, however many connections
 * listen. After such a freeze a peer may have given up on us without our
 * knowing, so each connection checks that its peer still answers.
 */
import { performance } from 'node:perf_hooks';

/** How often the watch looks at the clock. */
const TICK_MS = 250;
/** A tick this much later than due means the process was frozen, not merely busy. */
export const STALL_MS = 1_000;

type StallListener = (stalledMs: number) => void;

const listeners = new Set<StallListener>();
let timer: NodeJS.Timeout | undefined;
let lastTick = 0;

function tick(): void {
  const now = performance.now();
  const late = now - lastTick - TICK_MS;
  lastTick = now;
  if (late < STALL_MS) return;
  for (const listener of [...listeners]) listener(late);
}

/** Calls `listener` after each freeze of the process, with how long it lasted; returns the unsubscribe. */
export function onStall(listener: StallListener): () => void {
  listeners.add(listener);
  if (!timer) {
    lastTick = performance.now();
    timer = setInterval(tick, TICK_MS);
    // Watching must never keep a process alive.
    timer.unref();
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}
