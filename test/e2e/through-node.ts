import net from 'node:net';
import { collect, onCleanup } from '../harness/index.js';
import { basic, connect, type Handler } from '../../client/index.js';
import type { NodeOptions } from '../../data-plane/node.js';
import type { Logger } from '../../shared/log.js';
import { GROUP, startTestNode, type TestNode } from './helpers.js';

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
