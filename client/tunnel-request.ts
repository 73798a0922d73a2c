/**
 * A request as it arrives through a tunnel: its v2 head and the stream it came on.
 * Every handler form (handler.ts) is served through this shape.
 */
import type { Duplex, Readable } from 'node:stream';
import { type RequestHead, encodeResponseHead } from '../shared/heads.js';
import { stopsHere } from '../shared/http.js';

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
    if (!stopsHere(headers[i]!.toLowerCase(), keepUpgrade)) out.push(headers[i]!, headers[i + 1]!);
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

/**
 * Reads and drops what is left of a request body once nothing will read it (the answer
 * went out without it). Bytes the node already sent count against the tunnel's
 * flow-control windows until they are read, and a few dozen such bodies would freeze
 * every request on the tunnel; the node resets a body it is still sending once the
 * answer is whole, so this reads no more than was in flight.
 */
export function discardBody(stream: Readable): void {
  if (!stream.readableEnded && !stream.destroyed) stream.resume();
}
