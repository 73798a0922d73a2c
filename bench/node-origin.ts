// The benchmark's origin when nginx is not installed: node:http answering the same paths as the
// nginx origin (bench/nginx.ts ORIGIN_PATHS). Prints {"port","pid"} on stdout, serves until SIGTERM.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ORIGIN_PATHS } from './nginx.js';

const SMALL = Buffer.alloc(1024, 'a');
const LARGE_BYTES = 10_000_000;
const BLOCK = Buffer.alloc(64 << 10, 0x5a);

function serveLarge(res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': LARGE_BYTES });
  let left = LARGE_BYTES;
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
}

const server = http.createServer((req, res) => {
  if (req.method === 'PUT' && req.url === ORIGIN_PATHS.upload) {
    // Like nginx's WebDAV PUT: the answer comes once the whole body is in.
    req.resume();
    req.on('end', () => res.writeHead(204).end());
    return;
  }
  req.resume();
  if (req.url === ORIGIN_PATHS.large) return serveLarge(res);
  if (req.url === ORIGIN_PATHS.small) return void res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': SMALL.length }).end(SMALL);
  res.writeHead(404).end();
});
server.keepAliveTimeout = 120_000;
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
