import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBinary } from './binaries.js';
import { launchServer, tcpAnswers, type ServerHandle } from './launcher.js';

/**
 * A throw-away nats-server with JetStream on a free port, loopback only. Its store directory
 * survives restarts (so KV buckets and streams come back, as they would in production) and is
 * removed at cleanup.
 */
export function startNats(): Promise<ServerHandle> {
  const command = findBinary('nats-server');
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'reverst-nats-'));
  return launchServer({
    name: 'nats-server',
    command,
    args: (port) => ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir],
    url: (port) => `nats://127.0.0.1:${port}`,
    // The server greets every new connection with an INFO line before anything else.
    probe: (port) => tcpAnswers(port, (received) => received.startsWith('INFO ')),
    dispose: () => rmSync(storeDir, { recursive: true, force: true }),
  });
}
