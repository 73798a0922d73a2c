import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onCleanup } from './cleanup.js';

/** A new directory in the system's temporary directory, removed (with what is in it) with the current cleanup scope. */
export function tempDir(prefix = 'reverst-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
