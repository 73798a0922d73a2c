// HTTP/1.1 facts the client and the data-plane both rely on.
import type { IncomingMessage } from 'node:http';

/** RFC 9110 §7.6.1 and RFC 9112: these describe one connection (here, one tunnel stream or hop), so they stop at each hop. */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/** HTTP/1.1 framing: a request has a body only if its headers say so (RFC 9112 §6.3). */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}
