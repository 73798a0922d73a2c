import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { pendingCleanups, runCleanups } from './cleanup.js';

// Registry lengths at the start of each open scope (file, describe, test), innermost last.
const marks: number[] = [];

/**
 * Wires the registry into vitest for the enclosing file or `describe`: whatever a test registers is
 * cleaned after that test, and whatever a `beforeAll` registers after the last test of the scope.
 * Call it before the scope's own hooks so its marks are taken first.
 */
export function useCleanup(): void {
  beforeAll(() => {
    marks.push(pendingCleanups());
  });
  beforeEach(() => {
    marks.push(pendingCleanups());
  });
  afterEach(() => runCleanups(marks.pop()));
  // The outermost scope also sweeps what was registered at collection time, outside any hook.
  afterAll(() => {
    const mark = marks.pop() ?? 0;
    return runCleanups(marks.length === 0 ? 0 : mark);
  });
}
