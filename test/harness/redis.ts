import { findBinary } from './binaries.js';
import { launchServer, tcpAnswers, type ServerHandle } from './launcher.js';

/**
 * A throw-away redis-server on a free port: no persistence (a restart starts empty, like a
 * crash of a cache), loopback only. Cleaned up with the current scope.
 */
export function startRedis(): Promise<ServerHandle> {
  const command = findBinary('redis-server');
  return launchServer({
    name: 'redis-server',
    command,
    args: (port) => ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    url: (port) => `redis://127.0.0.1:${port}`,
    probe: (port) => tcpAnswers(port, (received) => received.includes('+PONG'), 'PING\r\n'),
  });
}
