import { Duplex } from 'node:stream';
import { QuicError, QuicStreamResetError } from './errors.js';
import type { NativeConnection } from './native.js';

const EMPTY = new Uint8Array(0);
// Largest read taken from quiche in one call; bigger reads mean fewer JS↔native crossings.
const READ_CHUNK = 64 << 10;
// One scratch buffer for every stream: reads are copied out at once, and JS is single-threaded.
const scratch = Buffer.allocUnsafe(READ_CHUNK);

/**
 * Read and throw away what quiche holds for stream `id`, before its read side is shut down.
 * quiche 0.18 counts bytes as consumed (and returns their connection-level credit to the peer)
 * only when stream_recv reads them: the bytes that stream_shutdown(Read) or a RESET_STREAM from
 * the peer discards are lost to the connection's flow-control window for good, and two dozen
 * abandoned uploads of a MiB would freeze a tunnel (fixed upstream in quiche 0.24.7). True when
 * the peer's side is still open: it is told to stop by the shutdown that follows.
 */
export function discardUnread(native: NativeConnection, id: number): boolean {
  for (;;) {
    let r: [number, boolean] | null;
    try {
      r = native.streamRecv(id, scratch);
    } catch {
      return false; // reset by the peer, or gone: nothing more will come
    }
    if (r === null) return true;
    if (r[1]) return false;
  }
}

/** What a stream needs from its connection: kept narrow so the two stay decoupled. */
export interface StreamHost {
  readonly native: NativeConnection;
  readonly remoteAddress: { host: string; port: number };
  readonly localAddress: { host: string; port: number };
  /** The stream has queued output (or a FIN) to hand to quiche. */
  wantWrite(stream: QuicStream): void;
  /** The stream's reader asked for more after backpressure. */
  wantRead(stream: QuicStream): void;
  /** First bytes (or FIN) accepted by quiche: the stream now exists on the wire. */
  streamCreated(stream: QuicStream): void;
  /** quiche took bytes or a FIN from a stream: they are to be sent, not held back. */
  handedOver(): void;
  /** The stream's reader stopped taking data: quiche may hold more of the peer's for it. */
  readerPaused(stream: QuicStream): void;
  /** The stream is gone; reset whichever directions did not finish. */
  streamClosed(stream: QuicStream, unfinished: { read: boolean; write: boolean }, code: number): void;
}

/**
 * One bidirectional QUIC stream as a Node Duplex, usable as a socket by
 * node:http on either side. Writes are queued in JS and handed to quiche by
 * the connection's loop, so the FIN rides on the last data write; reads stop
 * pulling from quiche while the consumer is behind, which lets QUIC flow
 * control push back on the peer.
 */
export class QuicStream extends Duplex {
  readonly id: number;
  readonly #host: StreamHost;
  readonly #native: NativeConnection;
  readonly #writeBuffer: number;

  #created: boolean;
  #readPaused = false;
  #readDone = false;
  #queue: Uint8Array[] = [];
  #queued = 0;
  #writeCb: ((err?: Error | null) => void) | undefined;
  #finalCb: ((err?: Error | null) => void) | undefined;
  #finRequested = false;
  #finSent = false;
  /** Bytes quiche took from us on this stream. */
  #sent = 0;
  #resetCode = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(host: StreamHost, id: number, created: boolean, writeBuffer: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 << 10, writableHighWaterMark: 64 << 10 });
    this.#host = host;
    this.#native = host.native;
    this.id = id;
    this.#created = created;
    this.#writeBuffer = writeBuffer;
  }

  get created(): boolean {
    return this.#created;
  }

  /** Our reader paused (its buffer is full) while quiche may hold more of the peer's data. */
  get readerBehind(): boolean {
    return this.#readPaused && !this.#readDone && !this.destroyed;
  }

  /** Whether quiche took any of our data for the peer: then the peer may hold some of it unread. */
  get sentData(): boolean {
    return this.#sent > 0;
  }

  // net.Socket look-alikes that node:http reads or calls.
  get remoteAddress(): string {
    return this.#host.remoteAddress.host;
  }
  get remotePort(): number {
    return this.#host.remoteAddress.port;
  }
  get localAddress(): string {
    return this.#host.localAddress.host;
  }
  get localPort(): number {
    return this.#host.localAddress.port;
  }
  get remoteFamily(): string {
    return this.remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
  }
  readonly encrypted = true;
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  /** Like net.Socket#setTimeout: emit 'timeout' after `ms` without reads or writes (0 turns it off). */
  setTimeout(ms: number, onTimeout?: () => void): this {
    if (onTimeout) this.once('timeout', onTimeout);
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = ms > 0 && !this.destroyed ? setTimeout(() => this.emit('timeout'), ms) : undefined;
    this.#idleTimer?.unref();
    return this;
  }

  /** Abandon the stream in both directions with an application error code. */
  reset(code = 0): void {
    this.#resetCode = code;
    this.destroy();
  }

  /** Pull what quiche holds for this stream, until it is empty or our reader is full. */
  pull(): void {
    if (this.#readDone || this.#readPaused || this.destroyed) return;
    for (;;) {
      let r: [number, boolean] | null;
      try {
        r = this.#native.streamRecv(this.id, scratch);
      } catch (err) {
        this.#fail(err);
        return;
      }
      if (r === null) return;
      const [n, fin] = r;
      this.#idleTimer?.refresh();
      const more = n > 0 ? this.push(Buffer.from(scratch.subarray(0, n))) : true;
      if (fin) {
        this.#readDone = true;
        this.push(null);
        return;
      }
      if (!more) {
        this.#readPaused = true;
        this.#host.readerPaused(this);
        return;
      }
    }
  }

  /** Hand queued output to quiche. Returns true while something is still waiting for capacity. */
  pump(): boolean {
    if (this.destroyed) return false;
    while (this.#queue.length > 0) {
      const chunk = this.#queue[0]!;
      const last = this.#finRequested && this.#queue.length === 1;
      let sent: number | null;
      try {
        sent = this.#native.streamSend(this.id, chunk, last);
      } catch (err) {
        this.#fail(err);
        return false;
      }
      if (sent === null) return this.#stillOpen();
      this.#markCreated();
      this.#queued -= sent;
      this.#sent += sent;
      if (sent < chunk.length) {
        // quiche took part: the rest (and any FIN) waits for more credit.
        this.#queue[0] = chunk.subarray(sent);
        this.#releaseWriter();
        return true;
      }
      this.#queue.shift();
      if (last) this.#finSent = true;
    }
    if (this.#finRequested && !this.#finSent) {
      let sent: number | null;
      try {
        sent = this.#native.streamSend(this.id, EMPTY, true);
      } catch (err) {
        this.#fail(err);
        return false;
      }
      if (sent === null) return this.#stillOpen();
      this.#markCreated();
      this.#finSent = true;
    }
    this.#idleTimer?.refresh();
    // Releasing the writer can re-enter _write synchronously and queue more.
    this.#releaseWriter();
    if (this.#finSent && this.#finalCb) {
      const cb = this.#finalCb;
      this.#finalCb = undefined;
      cb();
    }
    return this.#queue.length > 0 || (this.#finRequested && !this.#finSent);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#enqueue(chunk);
    if (this.#queued <= this.#writeBuffer) cb();
    else this.#writeCb = cb;
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    for (const { chunk } of chunks) this.#enqueue(chunk);
    if (this.#queued <= this.#writeBuffer) cb();
    else this.#writeCb = cb;
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#finRequested = true;
    this.#finalCb = cb;
    this.#host.wantWrite(this);
  }

  override _read(): void {
    if (!this.#readPaused) return;
    this.#readPaused = false;
    this.#host.wantRead(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    const code = err instanceof QuicStreamResetError ? err.resetCode : this.#resetCode;
    this.#queue = [];
    this.#queued = 0;
    // A pending write or end callback must not be left hanging.
    const pending = this.#writeCb ?? this.#finalCb;
    this.#writeCb = this.#finalCb = undefined;
    this.#host.streamClosed(this, { read: !this.#readDone, write: !this.#finSent }, code);
    pending?.(err ?? new QuicError('ERR_QUIC_CLOSED', `stream ${this.id} destroyed`));
    cb(err);
  }

  #enqueue(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#queue.push(chunk);
    this.#queued += chunk.length;
    this.#host.wantWrite(this);
  }

  #releaseWriter(): void {
    if (this.#writeCb && this.#queued <= this.#writeBuffer) {
      const cb = this.#writeCb;
      this.#writeCb = undefined;
      cb();
    }
  }

  #markCreated(): void {
    this.#host.handedOver();
    if (this.#created) return;
    this.#created = true;
    this.#host.streamCreated(this);
  }

  /**
   * quiche answers "no room yet" both for a full window and for a stream it has
   * already discarded (the peer reset it after our side finished reading). Ask
   * for the capacity, which throws for a discarded stream, so such a writer fails
   * at once instead of waiting forever. True while the stream can still take data.
   */
  #stillOpen(): boolean {
    if (!this.#created) return true;
    try {
      this.#native.streamCapacity(this.id);
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (message.startsWith('InvalidStreamState')) {
        this.#finSent = true; // nothing of ours is left in quiche to reset
        this.destroy(new QuicStreamResetError(this.id, 0));
      } else this.#fail(err);
      return false;
    }
  }

  /**
   * The connection is gone. A stream that had received everything keeps it for its reader
   * (the peer may close right behind its last bytes) and is destroyed once that is read;
   * any other ends with `err`.
   */
  connectionEnded(err: Error): void {
    if (this.destroyed) return;
    if (!this.#readDone || this.readableEnded) return void this.destroy(err);
    this.#finSent = true; // nothing of ours can reach the peer now: fail writes, reset nothing
    this.#queue = [];
    this.#queued = 0;
    this.once('end', () => this.destroy());
  }

  /**
   * quiche tells of the peer's STOP_SENDING only through our next write, and
   * forgets a reset that arrives after our reading finished. A stream with
   * nothing to write (a long poll, a slow handler) would never learn that the
   * peer gave up on it; the connection calls this now and then. (A RESET_STREAM
   * on a direction still being read is seen by the reader, once it reads.)
   */
  checkAbandoned(): void {
    // While reading, the reader sees a reset; only STOP_SENDING could go unseen, and our peers
    // send it with a reset or RESET_DELAY_MS ahead of one (a reader that is behind is asked at
    // once: checkStopped). So a stream still reading (a tunnel's control stream) is skipped.
    if (!this.#readDone || this.destroyed || this.#finRequested || this.#queue.length > 0) return;
    this.#stillOpen();
  }

  /**
   * A reader that is behind leaves the peer's data in quiche, where a RESET_STREAM would drop it
   * without returning its connection credit (see discardUnread). So a peer that gives up on a
   * stream it has written to first sends only STOP_SENDING, and resets its side a little later
   * (QuicConnection#resetLater); the connection calls this for such readers whenever datagrams
   * arrive, and a stopped stream is destroyed here, its unread data discarded with credit.
   */
  checkStopped(): void {
    if (this.readerBehind) this.#stillOpen();
  }

  /** quiche reports stream errors as Error strings; turn them into ours. */
  #fail(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const reset = /Stream(?:Reset|Stopped)\((\d+)\)/.exec(message);
    if (reset) {
      // The peer abandoned one direction; quiche already finished that side.
      if (message.startsWith('StreamReset')) this.#readDone = true;
      else this.#finSent = true;
      this.destroy(new QuicStreamResetError(this.id, Number(reset[1])));
      return;
    }
    this.destroy(new QuicError('ERR_QUIC_PROTOCOL', `stream ${this.id}: ${message}`, { cause: err }));
  }
}
