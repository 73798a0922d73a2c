import http from 'node:http';
import type { Metrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready, or what is degraded, for operators reading /readyz. */
  details: Record<string, unknown>;
}

/**
 * The management listener: /metrics (Prometheus text), /healthz (the process
 * answers) and /readyz (the node takes traffic: 503 while starting or draining).
 */
export function createManagementServer(metrics: Metrics, readiness: () => Readiness): http.Server {
  return http.createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/metrics') {
      const body = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body);
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (path === '/readyz') {
      const r = readiness();
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(`${JSON.stringify({ ready: r.ready, ...r.details })}\n`);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n');
    }
  });
}
