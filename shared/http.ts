// HTTP/1.1 facts the client and the data-plane both rely on.
import { STATUS_CODES, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';

/** RFC 9110 §7.6.1 and RFC 9112: these describe one connection (here, one tunnel stream or hop), so they stop at each hop. */
const HOP_BY_HOP_HEADERS: readonly string[] = [
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

export const HOP_BY_HOP: ReadonlySet<string> = new Set(HOP_BY_HOP_HEADERS);

/** Whether a header (lower-case) stops at this hop; `Upgrade` goes on in an upgrade's exchange. */
export const stopsHere = (lower: string, upgrade = false): boolean => HOP_BY_HOP.has(lower) && !(upgrade && lower === 'upgrade');

/** A short plain-text answer if one can still be given; a response already under way is cut instead. */
export function replyText(res: ServerResponse, status: number, text: string, headers: OutgoingHttpHeaders = {}): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${text}\n`;
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/**
 * An HTTP/1.1 response head as text, for a socket that left node:http (an upgrade, a
 * parse error): the one place that writes a head by hand. `headers` is flat.
 */
export function responseHeadText(status: number, reason: string, headers: readonly string[]): string {
  let head = `HTTP/1.1 ${status} ${reason || STATUS_CODES[status] || ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${head}\r\n`;
}

/** The same answer as raw bytes, for a socket that left HTTP (an upgrade, a parse error); it closes the connection. */
export function rawTextResponse(status: number, text: string, extra: Readonly<Record<string, string>> = {}): string {
  const body = `${text}\n`;
  const headers = ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body))];
  for (const [name, value] of Object.entries(extra)) if (name !== 'connection') headers.push(name, value);
  headers.push('connection', 'close');
  return responseHeadText(status, '', headers) + body;
}
