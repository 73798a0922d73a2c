/**
 * The hop's framing (docs/PROTOCOL.md, "The hop"): pooled TCP connections between
 * nodes, one exchange at a time on each, carrying the same v2 heads as a tunnel
 * stream so the node holding the tunnel splices the hop into a stream without
 * parsing HTTP again. Bodies travel as length-prefixed chunks ended by an empty one,
 * which keeps a connection reusable; after an Upgrade request's heads the bytes are
 * raw both ways and the connection is not reused.
 *
 *   connection:  "RVSTHOP2" u16+secret u16+node id                        (once, sender → holder)
 *   request:     u16+group  v2-request-head  [chunks… end]                (sender → holder)
 *   answer:      0x01 v2-response-head [chunks… end]  |  0x02 (no tunnel here)  |  0x03 u16+reason (refused; closes)
 *   chunk:       u32 length + bytes; end: u32 0
 */
import { ProtocolError } from '../shared/errors.js';

export const HOP_MAGIC = Buffer.from('RVSTHOP2', 'latin1');

export const Answer = {
  /** A response head follows (from the tunnel, or the node's own answer such as a 504). */
  Response: 0x01,
  /** This node holds no tunnel for the group: nothing was processed, another node may take it. */
  NoTunnel: 0x02,
  /** The connection is refused (wrong cluster secret, not a hop peer); a reason follows and the connection closes. */
  Refused: 0x03,
} as const;

/** TCP keep-alive probes start after this much silence on a hop connection, on both ends. */
export const HOP_KEEPALIVE_MS = 15_000;

/** Group names, node ids, secrets and reasons: short by nature; anything longer is not a peer of ours. */
const MAX_SHORT_STRING = 4096;
const END = Buffer.alloc(4);

export function shortString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_SHORT_STRING) throw new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', `hop field of ${bytes.length} bytes is over ${MAX_SHORT_STRING}`);
  const out = Buffer.allocUnsafe(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  bytes.copy(out, 2);
  return out;
}

export function preamble(secret: string, nodeId: string): Buffer {
  return Buffer.concat([HOP_MAGIC, shortString(secret), shortString(nodeId)]);
}

export function chunkHeader(length: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(length, 0);
  return out;
}

export const endOfBody = (): Buffer => END;

/**
 * Reads fields off a connection's bytes as they arrive. `take*` return undefined
 * while the field is incomplete and leave the bytes for the next call.
 */
export class WireReader {
  // Unread bytes are store[start, end). A lone chunk is kept as it is; bytes that
  // arrive behind unread ones are copied into a store that grows by doubling, so a
  // field arriving in many small pieces costs linear time, not a concat per piece.
  // Bytes are only ever written at or after `end`, so views handed out stay valid.
  #store: Buffer = Buffer.alloc(0);
  #start = 0;
  #end = 0;
  #owned = false;

  push(chunk: Buffer): void {
    const live = this.#end - this.#start;
    if (live === 0) {
      this.#store = chunk;
      this.#start = 0;
      this.#end = chunk.length;
      this.#owned = false;
      return;
    }
    if (!this.#owned || this.#store.length - this.#end < chunk.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * (live + chunk.length), 4096));
      this.#store.copy(grown, 0, this.#start, this.#end);
      this.#store = grown;
      this.#start = 0;
      this.#end = live;
      this.#owned = true;
    }
    chunk.copy(this.#store, this.#end);
    this.#end += chunk.length;
  }

  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Where reading stands, to go back to when a group of fields turns out incomplete. */
  checkpoint(): number {
    return this.#start;
  }

  rollback(checkpoint: number): void {
    this.#start = checkpoint;
  }

  /** Everything not yet taken (the reader is left empty). */
  drain(): Buffer {
    const rest = this.#view();
    this.#start = this.#end;
    return rest;
  }

  takeBytes(n: number): Buffer | undefined {
    if (this.buffered < n) return undefined;
    const out = this.#store.subarray(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  takeByte(): number | undefined {
    if (this.buffered < 1) return undefined;
    return this.#store[this.#start++];
  }

  takeString(): string | undefined {
    if (this.buffered < 2) return undefined;
    const n = this.#store.readUInt16BE(this.#start);
    if (n > MAX_SHORT_STRING) throw new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', `hop field of ${n} bytes is over ${MAX_SHORT_STRING}`);
    if (this.buffered < 2 + n) return undefined;
    const text = this.#store.toString('utf8', this.#start + 2, this.#start + 2 + n);
    this.#start += 2 + n;
    return text;
  }

  /** A whole v2 head frame (length prefix included), by the head codec's own prefix. */
  takeHead(split: (buf: Buffer) => { payload: Buffer; rest: Buffer } | undefined): Buffer | undefined {
    const live = this.#view();
    const parts = split(live);
    if (!parts) return undefined;
    const frame = live.subarray(0, live.length - parts.rest.length);
    this.#start += frame.length;
    return frame;
  }

  #view(): Buffer {
    return this.#store.subarray(this.#start, this.#end);
  }
}

/**
 * Undoes the chunk framing as bytes arrive: hands over each piece of body data at
 * once (nothing is held back to make whole chunks) and says when the empty chunk ends it.
 */
export class ChunkReader {
  #left = 0;
  #header: Buffer | undefined;

  /** Feeds `buf`; returns the bytes after the end of the body, or undefined if it has not ended yet. */
  feed(buf: Buffer, onData: (data: Buffer) => void): Buffer | undefined {
    let at = 0;
    while (at < buf.length) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, buf.length - at);
        onData(buf.subarray(at, at + n));
        this.#left -= n;
        at += n;
        continue;
      }
      const need = 4 - (this.#header?.length ?? 0);
      const part = buf.subarray(at, at + need);
      at += part.length;
      this.#header = this.#header ? Buffer.concat([this.#header, part]) : part;
      if (this.#header.length < 4) return undefined;
      const length = this.#header.readUInt32BE(0);
      this.#header = undefined;
      if (length === 0) return buf.subarray(at);
      this.#left = length;
    }
    return undefined;
  }
}
