import { readFile } from 'node:fs/promises';
import { ReverstError } from './errors.js';

/** Reads a file a flag names (a key, a certificate, a secret), or says which flag and why not. */
export async function readFlagFile(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ReverstError('ERR_INVALID_OPTION', `${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
