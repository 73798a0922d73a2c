// The plain Node one-hop proxy the benchmark measures reverst against: what one Node process can
// forward at all. node:http server in front, an undici Pool (keep-alive) to the origin, bodies
// streamed both ways. Argument: the origin's port. Prints {"port","pid"}, serves until SIGTERM.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import { Pool } from 'undici';

const originPort = Number(process.argv[2]);
const pool = new Pool(`http://127.0.0.1:${originPort}`, { connections: 256, keepAliveTimeout: 120_000 });

// RFC 9110 §7.6.1: meaningful for one connection only.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade']);

function forwardable(headers: http.IncomingHttpHeaders | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  pool.request({ method: req.method as 'GET', path: req.url ?? '/', headers: forwardable(req.headers), body: hasBody ? req : null }).then(
    (answer) => {
      res.writeHead(answer.statusCode, forwardable(answer.headers));
      pipeline(answer.body, res, () => {});
    },
    () => {
      if (!res.headersSent) res.writeHead(502).end('origin failed');
      else res.destroy();
    },
  );
});
server.keepAliveTimeout = 120_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void pool.close();
});
