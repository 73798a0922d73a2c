import http from 'node:http';
import type { Duplex } from 'node:stream';
import { rawTextResponse, replyText } from '../shared/http.js';
import { HOP_FROM_HEADER, HOP_GROUP_HEADER, HOP_SECRET_HEADER, secretChecker } from './hop.js';
import type { Metrics } from './metrics.js';
import type { PublicProxy } from './proxy.js';

export interface HopListenerDeps {
  /** Shared by the cluster's nodes; a request without it is answered 401 and goes nowhere. */
  secret: string;
  maxHeaderSize: number;
  metrics: Metrics;
  proxy: Pick<PublicProxy, 'onHopRequest' | 'onUpgrade'>;
  /** Called for each request served, so a drain can wait for it. */
  track(res: http.ServerResponse): void;
}

const UNAUTHORIZED = '401 Unauthorized: missing or wrong cluster secret';

/**
 * The receiving end of the internal hop: requests other nodes forward here for a
 * group whose tunnel this node holds. They are served from local tunnels only.
 */
export function createHopListener(deps: HopListenerDeps): http.Server {
  const { metrics, proxy } = deps;
  const secretMatches = secretChecker(deps.secret);
  const server = http.createServer({ maxHeaderSize: deps.maxHeaderSize }, (req, res) => {
    if (!secretMatches(req.headers[HOP_SECRET_HEADER])) {
      metrics.hopReceived.inc({ result: 'unauthorized' });
      replyText(res, 401, UNAUTHORIZED);
      return;
    }
    const group = req.headers[HOP_GROUP_HEADER];
    if (typeof group !== 'string' || typeof req.headers[HOP_FROM_HEADER] !== 'string') {
      metrics.hopReceived.inc({ result: 'bad_request' });
      replyText(res, 400, `400 Bad Request: hop requests carry ${HOP_GROUP_HEADER} and ${HOP_FROM_HEADER}`);
      return;
    }
    metrics.hopReceived.inc({ result: 'served' });
    deps.track(res);
    proxy.onHopRequest(req, res, group);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const group = req.headers[HOP_GROUP_HEADER];
    if (!secretMatches(req.headers[HOP_SECRET_HEADER]) || typeof group !== 'string') {
      metrics.hopReceived.inc({ result: 'unauthorized' });
      socket.end(rawTextResponse(401, UNAUTHORIZED));
      return;
    }
    metrics.hopReceived.inc({ result: 'served' });
    proxy.onUpgrade(req, socket, head, group);
  });
  return server;
}
