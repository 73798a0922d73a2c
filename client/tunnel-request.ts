/**
 * A request as it arrives through a tunnel: its v2 head and the stream it came on.
 * Every handler form (handler.ts) is served through this shape.
 */
import type { Duplex } from 'node:stream';
import { type RequestHead, encodeResponseHead } from '../shared/heads.js';
import { HOP_BY_HOP } from '../shared/http.js';

/** One request that arrived through the tunnel. */
export interface TunnelRequest {
  readonly head: RequestHead;
  /**
   * Read: the request body, to its end (when `head.body`), or an upgrade's stream.
   * Write: the response head (`writeResponseHead`), then its body; end() finishes it.
   * It closes early when the visitor goes away.
   */
  readonly stream: Duplex;
}

/** Serves one tunnel request; never throws (failures become answers or a cut stream). */
export type StreamServer = (request: TunnelRequest) => void;

/** A handler that takes tunnel requests as they are, such as the `reverst http` forwarder. */
export interface TunnelHandler {
  serveTunnelRequest: StreamServer;
}

/** Writes a response head onto a request stream; headers are flat, hop-by-hop ones are dropped. */
export function writeResponseHead(stream: Duplex, status: number, reason: string, headers: readonly string[], keepUpgrade = false): void {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(lower) || (keepUpgrade && lower === 'upgrade')) out.push(headers[i]!, headers[i + 1]!);
  }
  stream.write(encodeResponseHead({ status, reason, headers: out }));
}

/** A short plain-text answer of the client's own (a handler that failed, an origin that is down). */
export function writeTextResponse(stream: Duplex, status: number, text: string): void {
  if (stream.destroyed || stream.writableEnded) return;
  const body = `${text}\n`;
  writeResponseHead(stream, status, '', ['content-type', 'text/plain; charset=utf-8', 'content-length', String(Buffer.byteLength(body))]);
  stream.end(body);
}
