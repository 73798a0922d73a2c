import net from 'node:net';
import { collect, onCleanup } from '../harness/index.js';
import { basic, connect, type Handler } from '../../client/index.js';
import { toStreamServer, type TunnelHandler } from '../../client/handler.js';
import { type Logger, silentLogger } from '../../shared/log.js';
import type { NodeOptions } from '../../data-plane/node.js';
import { GROUP, startTestNode, visit, type TestNode } from './helpers.js';

export interface ThroughNode extends TestNode {
  /** The node's public HTTP port: what a visitor connects to. */
  port: number;
  url: string;
}

/** A real node with one tunnel client serving `handler`: requests to `port` reach it through the tunnel. */
export async function throughNode(handler: Handler, options: Partial<NodeOptions> & { logger?: Logger } = {}): Promise<ThroughNode> {
  const { logger, ...nodeOptions } = options;
  const t = await startTestNode(nodeOptions);
  const tunnel = await connect({
    addresses: [t.address],
    serverName: GROUP,
    ca: t.ca.cert,
    group: GROUP,
    auth: basic('user', 'pass'),
    handler,
    logger,
  });
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  const port = t.node.httpAddress.port;
  return { ...t, port, url: `http://127.0.0.1:${port}` };
}

/** Sends `raw` as is on a new connection to the node and returns everything that comes back until the node closes it. */
export async function rawExchange(port: number, raw: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1');
  socket.write(raw);
  return (await collect(socket)).toString('latin1');
}

/** A request with `Connection: close`, so the node ends the connection after answering. */
export const rawRequest = (lines: string[], body = ''): string => `${[...lines, `Host: ${GROUP}`, 'Connection: close'].join('\r\n')}\r\n\r\n${body}`;

/**
 * `handler` (any form) behind a wrapper that sees each request stream, and a promise per
 * stream that resolves once it has closed. A stream the client never lets go of keeps
 * its share of the tunnel's flow-control window and the client's bookkeeping for good.
 */
export function watchStreams(handler: Handler): { handler: TunnelHandler; closed: Array<Promise<unknown>> } {
  const serve = toStreamServer(handler, silentLogger);
  const closed: Array<Promise<unknown>> = [];
  return {
    closed,
    handler: {
      serveTunnelRequest: (request) => {
        // Closed whatever ended it: its end, or a reset (which once() would take for a failure).
        closed.push(new Promise((resolve) => request.stream.once('close', resolve)));
        serve(request);
      },
    },
  };
}

/** POSTs `count` bodies of 700 KB, one after another: more than a tunnel stream's reader holds in memory. */
export async function postBodies(port: number, count = 5): Promise<string[]> {
  const body = Buffer.alloc(700 << 10, 'x');
  const answers: string[] = [];
  for (let i = 0; i < count; i++) {
    const reply = await visit(port, `/${i}`, { method: 'POST', body });
    answers.push(`${reply.status} ${reply.body}`);
  }
  return answers;
}
