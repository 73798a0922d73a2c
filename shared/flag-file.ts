import { readSecretBytes } from './config/secret-ref.js';
import { ReverstError } from './errors.js';

/**
 * Reads a file a flag names (a key, a certificate, a secret), or says which flag and why not.
 * The path may also be `k8s://secret/<namespace>/<name>/<key>`, read through the Kubernetes API.
 */
export async function readFlagFile(path: string, flag: string): Promise<Buffer> {
  try {
    return await readSecretBytes(path);
  } catch (err) {
    // A Kubernetes error already names the object and what to fix.
    if (err instanceof ReverstError) throw new ReverstError(err.code, `${flag}: ${err.message}`, { cause: err });
    throw new ReverstError('ERR_INVALID_OPTION', `${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
