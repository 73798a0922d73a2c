// HTTP/1.1 message helpers shared by the fetch adapter and the origin forwarder.
import type { ServerResponse } from 'node:http';

export { HOP_BY_HOP, connectionListed, declaresBody } from '../shared/http.js';

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
