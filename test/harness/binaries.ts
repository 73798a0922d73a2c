import { accessSync, constants } from 'node:fs';
import path from 'node:path';

// Debian installs some servers (nats-server) under sbin, which is not on a normal user's PATH.
const EXTRA_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

const found = new Map<string, string>();

/**
 * The absolute path of executable `name`, from PATH or the sbin directories.
 * Throws an error that says which Debian package to install when it is missing.
 */
export function findBinary(name: string, debianPackage: string = name): string {
  const cached = found.get(name);
  if (cached) return cached;
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), ...EXTRA_DIRS];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      found.set(name, candidate);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new Error(`${name} not found: install the Debian package ${debianPackage} (apt-get install -y ${debianPackage})`);
}
