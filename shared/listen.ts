/**
 * Opening a TCP listener, or saying in one line which flag and address could not be opened and
 * what to do about it (both planes listen this way).
 */
import type { AddressInfo, Server } from 'node:net';
import { formatHostPort, type HostPort } from './address.js';
import { ReverstError } from './errors.js';

const WHY: Record<string, string> = {
  EADDRINUSE: 'is already in use: stop what holds it or pick another port',
  EACCES: 'needs privileges this process lacks (ports below 1024 do): pick a port above 1023',
  EADDRNOTAVAIL: 'is not an address of this machine: give one of its own addresses, or 0.0.0.0 for all',
  ENOTFOUND: 'names a host that does not resolve',
  EAI_AGAIN: 'names a host that does not resolve (yet)',
};

/** The one-line error for a socket that could not be opened. */
export function listenError(err: unknown, flag: string, protocol: 'UDP' | 'TCP', at: HostPort): ReverstError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const why = (code && WHY[code]) ?? `cannot be listened on: ${(err as Error)?.message ?? String(err)}`;
  return new ReverstError('ERR_LISTEN', `${flag}: ${protocol} ${formatHostPort(at)} ${why}${code && WHY[code] ? ` (${code})` : ''}`, { cause: err });
}

/** Listens on `at` (an HTTP server, or a plain TCP one such as the hop's) and resolves with the address bound (the port the system picked for 0). */
export function listen(server: Server, at: HostPort, flag: string): Promise<HostPort> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(listenError(err, flag, 'TCP', at));
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}
