// The serving side of the tunnel benchmark (bench/tunnel.ts), in a process of its own so that the
// load generator never shares an event loop with what it measures. Two modes, one request listener:
//
//   origin                                    a plain node:http server on 127.0.0.1:0 (the direct baseline)
//   tunnel <key> <cert> <ca> <groups> <name>  a standalone data-plane node AND a tunnel client registered
//                                             on it, both in this one process; the client serves the
//                                             same listener, so a tunnelled request is answered here
//
// Either way it prints one JSON line on stdout with the public HTTP port, then serves until SIGTERM,
// when it closes everything and exits by itself (the parent reports a process that does not).
// Warnings and errors of the node and the client go to stderr as JSON lines. The body sizes here are
// the ones bench/tunnel.ts checks.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type Tunnel } from '../client/index.js';
import { startNode, type DataPlaneNode } from '../data-plane/node.js';
import { createLogger } from '../shared/log.js';

const SMALL_BODY_BYTES = 1024;
const BULK_BYTES = 10_000_000;

const SMALL_BODY = Buffer.alloc(SMALL_BODY_BYTES, 'a');
const BLOCK = Buffer.alloc(64 << 10, 0x5a);

/** GET /download: BULK_BYTES; POST /upload: the byte count of the body; anything else: 1 KB. */
function listener(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'GET' && path === '/download') {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BULK_BYTES });
    let left = BULK_BYTES;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, BLOCK.length);
        left -= n;
        if (!res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => (left = 0));
    pump();
    return;
  }
  if (req.method === 'POST' && path === '/upload') {
    let n = 0;
    req.on('data', (chunk: Buffer) => (n += chunk.length));
    req.on('end', () => {
      const body = String(n);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    return;
  }
  // Drain whatever body came, so the connection can carry the next request.
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': SMALL_BODY_BYTES }).end(SMALL_BODY);
}

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function onSigterm(stop: () => Promise<void>): void {
  process.once('SIGTERM', () => {
    stop().catch((err: unknown) => {
      process.stderr.write(`tunnel-peer: stopping failed: ${String(err)}\n`);
      process.exitCode = 1;
    });
  });
}

async function origin(): Promise<void> {
  const server = http.createServer(listener);
  const port = await listen(server);
  onSigterm(() => closeServer(server));
  process.stdout.write(JSON.stringify({ httpPort: port, pid: process.pid }) + '\n');
}

async function tunnel([keyPath, certPath, caPath, groupsPath, serverName]: string[]): Promise<void> {
  const logger = createLogger({ level: 'warn' });
  let node: DataPlaneNode | undefined;
  let client: Tunnel | undefined;
  try {
    node = await startNode({
      tunnelAddress: '127.0.0.1:0',
      httpAddress: '127.0.0.1:0',
      serverName: serverName!,
      key: readFileSync(keyPath!),
      cert: readFileSync(certPath!),
      groups: groupsPath!,
      watchGroups: false,
      // The node's defaults (README flags): 1 min idle, 30 s keep-alive, 1 min request timeout, 16 KB headers.
      maxIdleTimeoutMs: 60_000,
      keepAlivePeriodMs: 30_000,
      requestTimeoutMs: 60_000,
      maxHeaderSize: 16_384,
      logger: logger.child({ side: 'node' }),
    });
    client = await connect({
      addresses: [`127.0.0.1:${node.tunnelAddress.port}`],
      serverName,
      ca: readFileSync(caPath!),
      group: serverName!,
      handler: listener,
      logger: logger.child({ side: 'client' }),
    });
  } catch (err) {
    await client?.close({ graceMs: 0 });
    await node?.stop();
    throw err;
  }
  // Any of these during the run is worth reporting: the parent counts these lines.
  client.on('reconnecting', ({ attempt, delayMs, error }) => logger.warn('bench: tunnel reconnecting', { attempt, delayMs, error: error?.message }));
  client.on('drain', () => logger.warn('bench: tunnel drained'));
  const tunnelClient = client;
  const dataPlane = node;
  onSigterm(async () => {
    await tunnelClient.close({ graceMs: 1_000 });
    await dataPlane.stop();
  });
  process.stdout.write(JSON.stringify({ httpPort: node.httpAddress.port, pid: process.pid }) + '\n');
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'origin') await origin();
else if (mode === 'tunnel') await tunnel(args);
else throw new Error(`tunnel-peer: unknown mode ${JSON.stringify(mode)} (origin or tunnel)`);
