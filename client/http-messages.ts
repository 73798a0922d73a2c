// HTTP/1.1 message helpers shared by the fetch adapter and the origin forwarder.
import type { IncomingMessage, ServerResponse } from 'node:http';

/** RFC 9110 §7.6.1: these describe one connection (here, one tunnel stream), so they stop at each hop. */
export const HOP_BY_HOP_HEADERS: readonly string[] = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'];

/** HTTP/1.1 framing: a request has a body only if its headers say so (RFC 9112 §6.3). */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** A short plain-text answer if one can still be given; a response already under way is cut instead. */
export function replyText(res: ServerResponse, status: number, text: string): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${text}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
