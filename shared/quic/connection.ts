import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import {
  QuicClosedError,
  QuicError,
  QuicIdleTimeoutError,
  QuicPeerUnresponsiveError,
  QuicTlsError,
  isCryptoError,
  tlsAlertOf,
  type QuicCloseInfo,
} from './errors.js';
import { SHUTDOWN_READ, SHUTDOWN_WRITE, type NativeConnection, type NativeConnectionError, type Stats } from './native.js';
import { CLOSE_DRAIN_LIMIT_MS, type QuicTransportOptions } from './options.js';
import { sendSlab } from './buffers.js';
import { onStall } from './stall-watch.js';
import { QuicStream, discardUnread, type StreamHost } from './stream.js';

export interface HostPort {
  host: string;
  port: number;
}

/** Where a connection's packets go: one shared server socket, or a client's own. */
export interface PacketSink {
  sendPacket(buf: Buffer, offset: number, length: number, to: HostPort): void;
  /** The connection has ended; forget it (and close a client's socket). */
  release(conn: QuicConnection): void;
  /**
   * Runs `conn.runTurn()` soon, after the current batch of I/O, together with the other
   * connections of the endpoint (see QuicServer). Without it, each connection sets its own
   * immediate.
   */
  runSoon?(conn: QuicConnection): void;
}

/** A graceful close waits at most this long for the peer to acknowledge what was sent. */
const ACK_WAIT_LIMIT_MS = 1_000;
/** quiche's timeout() below this means its loss-detection timer is armed (data in flight). */
const LOSS_TIMER_CEILING_MS = 1_000;
// Packets handed to the socket per loop turn before reads get a turn again.
const MAX_PACKETS_PER_TURN = 128;
/**
 * Acknowledge at once when a turn brings this many datagrams, as RFC 9000 §13.2.2 advises, so a
 * sender is never held back. Counted per turn, not since the last flush: datagrams that carry
 * only acknowledgements need none, and counting them (they cannot be told apart here) would have
 * each side answer the other's lone acknowledgement with one of its own, two datagrams each way
 * per request for good.
 */
const ACK_EVERY = 2;
/** A liveness check that runs this late means this process was blocked: it proves nothing about the peer. */
const LATE_CHECK_MS = 250;
/** How often streams with nothing to write ask quiche whether the peer abandoned them (see QuicStream#checkAbandoned). */
const ABANDONED_SWEEP_MS = 1_000;
/**
 * A live peer acknowledges within a round trip and its ack delay (25 ms): data
 * unanswered this long makes the connection suspect, so new work goes to
 * another peer while it is still given the full unresponsive timeout to answer.
 */
export const SUSPECT_AFTER_MS = 1_000;
/**
 * After this process was frozen, the peer must answer a probe within this long
 * (three pings in it), or it is taken to have dropped the connection meanwhile.
 */
export const STALL_PROBE_MS = 1_000;
const STALL_PROBE_PINGS = 3;
/** Datagrams that queued up during a freeze are read before the probe goes out; only answers after it count. */
const STALL_BACKLOG_MS = 100;
/** The longest drain after the peer's close (see #limitPeerCloseDrain); normally 3 PTO, well under this. */
const PEER_CLOSE_DRAIN_LIMIT_MS = 1_000;
/**
 * How long a stream we gave up on, with our data possibly unread at the peer, waits between our
 * STOP_SENDING and our RESET_STREAM (see #resetLater). The peer's reader lets go as soon as the
 * STOP_SENDING arrives; the reset must come in a later batch of datagrams. A peer that does not
 * (an older version) learns of it by the reset, as before.
 */
const RESET_DELAY_MS = 250;

// One sweep for every established connection of the process, not a timer each: ten thousand
// idle tunnels then cost one callback a second instead of ten thousand.
const swept = new Set<QuicConnection>();
let sweepTimer: NodeJS.Timeout | undefined;

function startSweeping(conn: QuicConnection): void {
  swept.add(conn);
  if (sweepTimer) return;
  sweepTimer = setInterval(() => {
    for (const c of swept) c.sweepAbandoned();
  }, ABANDONED_SWEEP_MS);
  sweepTimer.unref();
}

function stopSweeping(conn: QuicConnection): void {
  swept.delete(conn);
  if (swept.size > 0 || !sweepTimer) return;
  clearInterval(sweepTimer);
  sweepTimer = undefined;
}

interface OpenWaiter {
  resolve(stream: QuicStream): void;
  reject(err: Error): void;
}

export interface CloseOptions {
  /** Application error code sent to the peer (default 0). */
  code?: number;
  reason?: string;
  /** Let open streams finish for up to this long before resetting them (default 0). */
  graceMs?: number;
}

/**
 * One QUIC connection driven by our own loop: packets in → quiche → stream
 * reads; stream writes → quiche → packets out; one timer from quiche's
 * timeout(). Every turn of the loop runs in one setImmediate after a batch of
 * datagrams or writes, so reads are batched and writes coalesce.
 */
export class QuicConnection extends EventEmitter implements StreamHost {
  readonly native: NativeConnection;
  readonly isServer: boolean;
  readonly remoteAddress: HostPort;
  readonly localAddress: HostPort;
  /** Resolves (never rejects) once the connection has ended, with why. */
  readonly closed: Promise<QuicCloseInfo>;

  readonly #options: QuicTransportOptions;
  readonly #sink: PacketSink;
  /** Largest UDP payload we send: larger to a peer on this machine. */
  readonly #sendPayload: number;
  readonly #streams = new Map<number, QuicStream>();
  readonly #writers = new Set<QuicStream>();
  readonly #readers = new Set<QuicStream>();
  // Streams whose reader is behind: the peer's data waits in quiche (see QuicStream#checkStopped).
  readonly #paused = new Set<QuicStream>();
  // Resets held back until the peer could let go of its side (see #resetLater), oldest first.
  readonly #lateResets: { id: number; code: number; due: number }[] = [];
  #lateResetTimer: NodeJS.Timeout | undefined;
  readonly #waiters: OpenWaiter[] = [];
  // Peer-opened stream ids not seen yet (ids below the highest seen, when packets reorder).
  readonly #peerGaps = new Set<number>();
  #nextPeerId: number;
  #nextLocalId: number;
  // Local streams handed out but not yet created in quiche: they still need the peer's credit.
  #reserved = 0;

  #scheduled = false;
  // What the next flush is for: datagrams to acknowledge, and whether anything else waits to go out.
  #unacked = 0;
  #turnDatagrams = 0;
  #mustFlush = false;
  #ackDue = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerDeadline = 0;
  /** When the next keep-alive ping is due (performance.now()), 0 for none: it shares #timer. */
  #keepAliveDue = 0;
  // Liveness (see #trackUnanswered): when a datagram last arrived, and since when sent data has waited.
  #lastHeard = 0;
  #lastInFlight = 0;
  #unansweredSince = 0;
  #closeSent = false;
  #liveness: NodeJS.Timeout | undefined;
  #livenessDue = 0;
  #suspect = false;
  #suspectTimer: NodeJS.Timeout | undefined;
  #suspectDue = 0;
  #unwatchStalls: (() => void) | undefined;
  #probing = false;
  #peerCloseLimit: NodeJS.Timeout | undefined;

  #established = false;
  #closing = false;
  #final = false;
  #abortError: QuicError | undefined;
  #closeRequest: { code: number; reason: string } | undefined;
  #resolveClosed!: (info: QuicCloseInfo) => void;

  constructor(
    native: NativeConnection,
    init: { isServer: boolean; options: QuicTransportOptions; sink: PacketSink; remote: HostPort; local: HostPort; sendPayload: number },
  ) {
    super();
    this.native = native;
    this.isServer = init.isServer;
    this.#options = init.options;
    this.#sink = init.sink;
    this.#sendPayload = init.sendPayload;
    this.remoteAddress = init.remote;
    this.localAddress = init.local;
    // Bidi stream ids: client-opened 0, 4, 8…; server-opened 1, 5, 9…
    this.#nextLocalId = init.isServer ? 1 : 0;
    this.#nextPeerId = init.isServer ? 0 : 1;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  get established(): boolean {
    return this.#established;
  }

  get isClosing(): boolean {
    return this.#closing || this.#final;
  }

  /**
   * Something we sent has waited SUSPECT_AFTER_MS with nothing heard from the peer:
   * it may be gone. Emits 'suspect' when this turns true and 'responsive' when the
   * peer is heard again. Always false with the unresponsive timeout off.
   */
  get suspect(): boolean {
    return this.#suspect;
  }

  /**
   * Whether any packet from the peer arrived at or after `time` (a performance.now()
   * value). False means the peer has acknowledged nothing sent since then.
   */
  heardSince(time: number): boolean {
    return this.#lastHeard >= time;
  }

  /** Streams open right now (either side opened them). */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** The negotiated ALPN protocol. */
  get alpn(): string {
    return Buffer.from(this.native.applicationProto()).toString();
  }

  /** The SNI the client asked for (server side). */
  get serverName(): string | null {
    return this.native.serverName();
  }

  /** The peer's certificate chain, DER-encoded, leaf first. */
  peerCertificates(): Buffer[] {
    return (this.native.peerCertChain() ?? []).map((c) => Buffer.from(c));
  }

  stats(): Stats {
    return this.native.stats();
  }

  /**
   * Open a bidirectional stream. Waits for the peer's stream credit instead of
   * failing when the peer's limit is reached; rejects once the connection closes.
   */
  openStream(): Promise<QuicStream> {
    if (this.#closing || this.#final) return Promise.reject(this.#closedError());
    if (this.#waiters.length === 0 && this.#credit() > 0) return Promise.resolve(this.#createLocalStream());
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /**
   * Close the connection. Open streams get `graceMs` to finish and are then
   * reset; the returned promise always settles, even if the peer is gone.
   */
  close(options: CloseOptions = {}): Promise<QuicCloseInfo> {
    if (!this.#closing && !this.#final) {
      this.#closing = true;
      this.#closeRequest = { code: options.code ?? 0, reason: options.reason ?? '' };
      this.#rejectWaiters();
      const grace = options.graceMs ?? 0;
      if (grace > 0) {
        const deadline = setTimeout(() => this.#closeNow(), grace);
        const check = (): void => {
          if (this.#streams.size > 0) return;
          this.off('streamClosed', check);
          clearTimeout(deadline);
          // Streams that ended here may still have bytes in flight, and
          // CONNECTION_CLOSE abandons them: let the peer acknowledge first.
          void this.#acknowledged(Math.min(grace, ACK_WAIT_LIMIT_MS)).then(() => this.#closeNow());
        };
        this.on('streamClosed', check);
        check();
      } else {
        this.#closeNow();
      }
    }
    return this.closed;
  }

  /**
   * Resolves once nothing sent is waiting for an acknowledgement, or after `limitMs`.
   * quiche does not expose bytes in flight, but it arms its loss-detection timer
   * (well under a second) exactly while something is unacknowledged; otherwise
   * its next timeout is the idle timer or none.
   */
  async #acknowledged(limitMs: number): Promise<void> {
    const until = performance.now() + limitMs;
    while (!this.#final && performance.now() < until) {
      const next = this.native.timeout();
      if (next === null || next >= LOSS_TIMER_CEILING_MS) return;
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Lets streams that finished reading and have nothing to write learn whether the peer gave up on them (see QuicStream#checkAbandoned). */
  sweepAbandoned(): void {
    for (const stream of this.#streams.values()) stream.checkAbandoned();
  }

  // --- used by endpoints -------------------------------------------------

  /** A datagram for this connection arrived. */
  receive(data: Buffer, from: HostPort): void {
    if (this.#final) return;
    try {
      this.native.recv(data, { from, to: this.localAddress });
      // Only a packet quiche took counts as hearing from the peer: not garbage or spoofs.
      this.#lastHeard = performance.now();
      this.#unacked++;
      this.#turnDatagrams++;
      if (this.#suspect) {
        this.#suspect = false;
        this.emit('responsive');
      }
    } catch {
      // A packet quiche rejects (undecryptable, stale) is dropped; fatal errors surface as isClosed().
    }
    this.schedule();
  }

  /**
   * Give up on the connection at once, telling the peer (a transport close it need not
   * answer), so that it can let go too: a server counts a handshake given up by its client
   * against its handshakes in progress until it hears so.
   */
  giveUp(err: QuicError): void {
    if (this.#final) return;
    try {
      this.native.close(false, 0, Buffer.from(err.message.slice(0, 100)));
      this.#flush();
    } catch {
      // Already closing.
    }
    this.abort(err);
  }

  /** End the connection at once with a local error (connect timeout, refused). */
  abort(err: QuicError): void {
    if (this.#final) return;
    this.#abortError ??= err;
    this.#finalize();
  }

  /** Run one loop turn soon (after the current batch of I/O). */
  schedule(): void {
    if (this.#scheduled || this.#final) return;
    this.#scheduled = true;
    if (this.#sink.runSoon) this.#sink.runSoon(this);
    else setImmediate(this.#turn);
  }

  /** The turn schedule() asked for, run by the endpoint that batches them. */
  runTurn(): void {
    this.#turn();
  }

  // --- StreamHost ----------------------------------------------------------

  handedOver(): void {
    this.#mustFlush = true;
  }

  wantWrite(stream: QuicStream): void {
    this.#writers.add(stream);
    this.schedule();
  }

  wantRead(stream: QuicStream): void {
    this.#paused.delete(stream);
    this.#readers.add(stream);
    this.schedule();
  }

  readerPaused(stream: QuicStream): void {
    this.#paused.add(stream);
  }

  streamCreated(stream: QuicStream): void {
    if (stream.id % 2 === this.#nextLocalId % 2) this.#reserved--;
  }

  streamClosed(stream: QuicStream, unfinished: { read: boolean; write: boolean }, code: number): void {
    if (this.#streams.get(stream.id) !== stream) return;
    this.#streams.delete(stream.id);
    this.#writers.delete(stream);
    this.#readers.delete(stream);
    this.#paused.delete(stream);
    if (!stream.created) {
      // Never reached the wire: just give back the credit it held.
      this.#reserved--;
    } else if (!this.#final) {
      // Shutting down unfinished directions sends RESET_STREAM / STOP_SENDING so
      // the peer stops, and quiche can collect the stream and return its credit.
      const peerWriting = unfinished.read && this.#stopReading(stream.id, code);
      if (unfinished.write) {
        // Our data may sit unread at the peer, where a reset would lose its credit: let the
        // STOP_SENDING just sent reach the peer first, so that it can let go of it.
        if (peerWriting && stream.sentData) this.#resetLater(stream.id, code);
        else this.#shutdown(stream.id, SHUTDOWN_WRITE, code);
      }
      this.schedule();
    }
    this.emit('streamClosed', stream);
  }

  // --- the loop -----------------------------------------------------------

  readonly #turn = (): void => {
    this.#scheduled = false;
    if (this.#final) return;
    const native = this.native;
    // Announce the connection before its first streams, so 'stream' has a listener.
    if (!this.#established && native.isEstablished()) this.#onEstablished();

    // Writes queued before this turn go to quiche first. Writes made while the
    // reads below are delivered wait for the next turn, after Node's nextTick
    // queue has run: an end() that follows a read (as pipe() does) then carries
    // its FIN on the data. quiche 0.18 never retransmits a FIN sent on its own
    // once the data before it is acknowledged, so a lost one would leave the
    // peer waiting for the end forever.
    const blocked = this.#writers.size > 0 ? this.#pumpWriters() : undefined;

    if (this.#readers.size > 0) {
      for (const s of this.#readers) s.pull();
      this.#readers.clear();
    }
    if (native.isReadable()) {
      for (const id of native.readable()) this.#onReadable(id);
    }
    // A STOP_SENDING for a reader that is behind comes ahead of the peer's reset (see #resetLater).
    if (this.#paused.size > 0 && this.#turnDatagrams > 0) {
      for (const s of this.#paused) s.checkStopped();
    }
    while (this.#waiters.length > 0 && this.#credit() > 0) this.#waiters.shift()!.resolve(this.#createLocalStream());

    if (this.#ackMayWait()) {
      this.#ackDue ||= performance.now() + this.#options.ackDelayMs;
    } else {
      this.#flush();
      // Sending can free capacity (quiche recomputes it while it builds packets) with
      // no later event to retry on: a writer left blocked now could wait forever.
      if (blocked && this.#pumpUnblocked(blocked)) this.#flush();
    }

    // A handshake the peer refused is over once it says so. After an established connection's
    // peer closed, nothing more can come or go: quiche would keep it draining for three probe
    // timeouts (seconds on a busy node, tens after a freeze of this process), and with it the
    // peer's place in every count. What had arrived is handed to the streams above; only a
    // reader that is behind holds the connection, for PEER_CLOSE_DRAIN_LIMIT_MS at most.
    if (native.isClosed() || (native.isDraining() && (!this.#established || (native.peerError() !== null && !this.#readerBehind())))) this.#finalize();
    else {
      if (this.#established && native.isDraining()) this.#limitPeerCloseDrain();
      this.#armTimer();
    }
  };

  /** A stream whose reader paused with data of the peer's still in quiche. */
  #readerBehind(): boolean {
    for (const s of this.#streams.values()) if (s.readerBehind) return true;
    return false;
  }

  /**
   * The cap on waiting for a reader that is behind after the peer's close (see #turn).
   */
  #limitPeerCloseDrain(): void {
    if (this.#peerCloseLimit || this.native.peerError() === null) return;
    this.#peerCloseLimit = setTimeout(() => this.#finalize(), PEER_CLOSE_DRAIN_LIMIT_MS);
  }

  /**
   * Nothing but an acknowledgement of one datagram would go out now: hold it back so it rides
   * with the data that usually follows (writes made while this turn delivered reads go out on
   * the next turn), until ackDelayMs has passed. Only an established connection with nothing
   * of its own to send waits.
   */
  #ackMayWait(): boolean {
    const arrived = this.#turnDatagrams;
    this.#turnDatagrams = 0;
    if (this.#mustFlush || !this.#established || this.#closing || this.#unacked === 0 || arrived >= ACK_EVERY) return false;
    return this.#ackDue === 0 || performance.now() < this.#ackDue;
  }

  #flush(): void {
    this.#unacked = 0;
    this.#mustFlush = false;
    this.#ackDue = 0;
    const native = this.native;
    const slab = sendSlab;
    for (let i = 0; i < MAX_PACKETS_PER_TURN; i++) {
      const room = slab.room(this.#sendPayload);
      let r: [number, unknown] | null;
      try {
        r = native.send(room);
      } catch {
        // quiche closes the connection on fatal send errors; isClosed() reports it.
        return;
      }
      if (r === null) return;
      const len = r[0];
      slab.used(len);
      this.#sink.sendPacket(room, 0, len, this.remoteAddress);
    }
    // More to send: yield so reads (acks) get their turn, then continue.
    this.schedule();
  }

  /** Hand every pending writer's output to quiche; returns those still blocked. */
  #pumpWriters(): QuicStream[] {
    const writers = [...this.#writers];
    this.#writers.clear();
    const blocked: QuicStream[] = [];
    for (const s of writers) if (s.pump()) blocked.push(s);
    for (const s of blocked) this.#writers.add(s);
    return blocked;
  }

  /** Pump the blocked writers that quiche has capacity for now; true if any moved. */
  #pumpUnblocked(blocked: QuicStream[]): boolean {
    let moved = false;
    for (const s of blocked) {
      if (!this.#writers.has(s)) continue;
      let capacity = 0;
      try {
        capacity = this.native.streamCapacity(s.id);
      } catch {
        capacity = 1; // stopped or not yet created: pump() sorts it out
      }
      if (capacity === 0) continue;
      moved = true;
      if (!s.pump()) this.#writers.delete(s);
    }
    return moved;
  }

  #armTimer(): void {
    const quicheMs = this.native.timeout();
    if (this.#established && !this.#closeSent && this.#options.unresponsiveTimeoutMs > 0) this.#trackUnanswered(quicheMs);
    // One timer for quiche's deadline, a held-back acknowledgement and the next keep-alive.
    let ms = quicheMs;
    if (this.#ackDue !== 0 || this.#keepAliveDue !== 0) {
      const now = performance.now();
      const ours = Math.min(this.#ackDue || Infinity, this.#keepAliveDue || Infinity) - now;
      ms = Math.max(0, Math.min(quicheMs ?? Infinity, ours));
    }
    if (ms === null) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      return;
    }
    const deadline = performance.now() + ms;
    // Re-arming costs more than firing a little early; keep a timer that is close enough.
    if (this.#timer && Math.abs(deadline - this.#timerDeadline) < 1) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerDeadline = deadline;
    this.#timer = setTimeout(this.#onTimer, Math.max(0, Math.ceil(ms)));
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    if (this.#final) return;
    // Early for quiche when it fired for one of ours: then it does nothing.
    this.native.onTimeout();
    if (this.#keepAliveDue !== 0 && performance.now() >= this.#keepAliveDue - 1 && !this.#closing) {
      this.native.sendAckEliciting();
      this.#keepAliveDue = performance.now() + this.#options.keepAliveMs;
    }
    this.#mustFlush = true;
    this.#turn();
  };

  /**
   * A peer that dies without a word would hold the connection until the idle
   * timeout. While something we sent waits for an acknowledgement, a live peer
   * answers within a round trip; nothing heard for unresponsiveTimeoutMs means it
   * is gone. A peer with nothing to say is never suspected: it is only waited on
   * while our data is.
   *
   * "Data waits" is read from quiche's loss timer being armed (see #acknowledged)
   * when a wait begins. Only hearing from the peer ends a wait: unanswered, quiche
   * backs its probe timer off past LOSS_TIMER_CEILING_MS (28, 56, … 1792 ms on
   * loopback), which says nothing about the peer. A path whose round trip alone
   * exceeds about 300 ms arms that timer above the ceiling from the start, so
   * such a peer is left to the idle timeout.
   */
  #trackUnanswered(next: number | null): void {
    if (next !== null && next < LOSS_TIMER_CEILING_MS) {
      this.#lastInFlight = performance.now();
      if (this.#unansweredSince !== 0) return;
      this.#unansweredSince = this.#lastInFlight;
      this.#armLiveness(this.#options.unresponsiveTimeoutMs);
      this.#armSuspect(Math.min(SUSPECT_AFTER_MS, this.#options.unresponsiveTimeoutMs));
    } else if (this.#unansweredSince !== 0 && this.#lastHeard > this.#lastInFlight) {
      this.#unansweredSince = 0; // answered since data last waited
    }
  }

  /** How long the peer has been silent while our data waited (0 when nothing waits). */
  #quietFor(now: number): number {
    return this.#unansweredSince === 0 ? 0 : now - Math.max(this.#unansweredSince, this.#lastHeard);
  }

  #armLiveness(ms: number): void {
    if (this.#liveness) return;
    this.#livenessDue = performance.now() + ms;
    this.#liveness = setTimeout(this.#checkLiveness, Math.ceil(ms));
    this.#liveness.unref();
  }

  readonly #checkLiveness = (): void => {
    this.#liveness = undefined;
    if (this.#final || this.#closeSent || this.#unansweredSince === 0) return;
    const now = performance.now();
    const limit = this.#options.unresponsiveTimeoutMs;
    if (now - this.#livenessDue > LATE_CHECK_MS) {
      // This process was blocked: the peer's answers may be sitting unread. Wait afresh.
      this.#unansweredSince = now;
      this.#armLiveness(limit);
      return;
    }
    const quiet = this.#quietFor(now);
    if (quiet < limit) {
      this.#armLiveness(limit - quiet);
      return;
    }
    // Timers run before pending datagrams are read: let those in first, then decide.
    setImmediate(() => {
      if (this.#final || this.#closeSent || this.#unansweredSince === 0) return;
      const still = this.#quietFor(performance.now());
      if (still < limit) return this.#armLiveness(limit - still);
      this.#dropUnresponsive(limit);
    });
  };

  #armSuspect(ms: number): void {
    if (this.#suspectTimer || this.#suspect) return;
    this.#suspectDue = performance.now() + ms;
    this.#suspectTimer = setTimeout(this.#checkSuspect, Math.ceil(ms));
    this.#suspectTimer.unref();
  }

  /** As #checkLiveness, at the suspect threshold: marks the connection suspect instead of dropping it. */
  readonly #checkSuspect = (): void => {
    this.#suspectTimer = undefined;
    if (this.#final || this.#closeSent || this.#unansweredSince === 0 || this.#suspect) return;
    const limit = Math.min(SUSPECT_AFTER_MS, this.#options.unresponsiveTimeoutMs);
    const now = performance.now();
    // Blocked here, the peer's answers may be sitting unread: wait afresh.
    const quiet = now - this.#suspectDue > LATE_CHECK_MS ? 0 : this.#quietFor(now);
    if (quiet < limit) {
      this.#armSuspect(limit - quiet);
      return;
    }
    // Let datagrams already waiting in the socket in first.
    setImmediate(() => {
      if (this.#final || this.#closeSent || this.#unansweredSince === 0 || this.#suspect) return;
      const still = this.#quietFor(performance.now());
      if (still < limit) {
        this.#armSuspect(limit - still);
        return;
      }
      this.#suspect = true;
      this.emit('suspect');
    });
  };

  /**
   * This process was frozen. A peer that meanwhile dropped the connection and
   * forgot it answers nothing, ever (its close, if it sent one, may be lost), and
   * quiche's own timers, stretched by the freeze, would take many seconds to say
   * so. Ask: a peer that answers none of a few pings within STALL_PROBE_MS is gone.
   */
  readonly #probeAfterStall = async (): Promise<void> => {
    if (this.#probing || this.#closing || this.#final) return;
    this.#probing = true;
    try {
      await pause(STALL_BACKLOG_MS);
      const since = performance.now();
      for (let i = 0; i < STALL_PROBE_PINGS; i++) {
        if (this.#closing || this.#final || this.#lastHeard >= since) return;
        try {
          this.native.sendAckEliciting();
        } catch {
          return; // closing already
        }
        this.#mustFlush = true; // a ping, not an acknowledgement to hold back
        this.schedule();
        await pause(STALL_PROBE_MS / STALL_PROBE_PINGS);
      }
      if (this.#closing || this.#final || this.#lastHeard >= since) return;
      // Frozen again while probing: the answers may be unread; the next freeze probes again.
      if (performance.now() - since > STALL_PROBE_MS + LATE_CHECK_MS) return;
      this.#dropUnresponsive(STALL_PROBE_MS);
    } finally {
      this.#probing = false;
    }
  };

  #dropUnresponsive(limit: number): void {
    try {
      // Say so, in case the peer was only slow: it will not be heard here again.
      this.native.close(false, 0, Buffer.from('peer unresponsive'));
      this.#flush();
    } catch {
      // Already closing.
    }
    this.abort(new QuicPeerUnresponsiveError(limit));
  }

  #onEstablished(): void {
    this.#established = true;
    // The last of the handshake (a client's Finished, a server's HANDSHAKE_DONE) goes at once.
    this.#mustFlush = true;
    if (this.#options.keepAliveMs > 0) this.#keepAliveDue = performance.now() + this.#options.keepAliveMs;
    if (this.#options.unresponsiveTimeoutMs > 0) {
      // A probe that fails (a close listener that throws, say) must not become an unhandled rejection.
      const probe = (): void =>
        void this.#probeAfterStall().catch((err: unknown) => this.abort(new QuicError('ERR_QUIC_PROTOCOL', 'liveness probe failed', { cause: err })));
      this.#unwatchStalls = onStall(probe);
    }
    startSweeping(this);
    this.emit('established');
  }

  #onReadable(id: number): void {
    let stream = this.#streams.get(id);
    if (!stream) {
      if (id % 2 === this.#nextPeerId % 2 && (id >= this.#nextPeerId || this.#peerGaps.has(id))) {
        stream = this.#acceptPeerStream(id);
        if (!stream) return;
      } else {
        // Data for a stream we already let go of: drop it.
        this.#stopReading(id, 0);
        return;
      }
    }
    stream.pull();
  }

  #acceptPeerStream(id: number): QuicStream | undefined {
    for (let gap = this.#nextPeerId; gap < id; gap += 4) this.#peerGaps.add(gap);
    this.#peerGaps.delete(id);
    if (id >= this.#nextPeerId) this.#nextPeerId = id + 4;
    if (this.#closing) {
      this.#shutdown(id, SHUTDOWN_READ, 0);
      this.#shutdown(id, SHUTDOWN_WRITE, 0);
      return undefined;
    }
    const stream = new QuicStream(this, id, true, this.#options.streamWriteBuffer);
    this.#streams.set(id, stream);
    if (this.listenerCount('stream') === 0) {
      // Nobody serves peer streams here: refuse it rather than keep an unwatched stream.
      stream.on('error', () => {}).reset(0);
      return undefined;
    }
    this.emit('stream', stream);
    return stream;
  }

  #createLocalStream(): QuicStream {
    const id = this.#nextLocalId;
    this.#nextLocalId += 4;
    this.#reserved++;
    const stream = new QuicStream(this, id, false, this.#options.streamWriteBuffer);
    this.#streams.set(id, stream);
    return stream;
  }

  #credit(): number {
    return this.native.peerStreamsLeftBidi() - this.#reserved;
  }

  /**
   * Stop reading stream `id`: what quiche holds for it is read and thrown away first, so its
   * connection credit comes back (see discardUnread), then STOP_SENDING tells the peer to stop.
   * True if the peer was still writing.
   */
  #stopReading(id: number, code: number): boolean {
    const open = discardUnread(this.native, id);
    this.#shutdown(id, SHUTDOWN_READ, code);
    return open;
  }

  /**
   * Reset our side of stream `id` after RESET_DELAY_MS. Sent together with our STOP_SENDING, the
   * reset would reach a peer whose reader is behind before it could read what it holds, and
   * quiche 0.18 would drop that without returning its connection credit. The peer's reader lets
   * go when the STOP_SENDING arrives (QuicStream#checkStopped), which also makes quiche reset our
   * side; this reset is then a no-op.
   */
  #resetLater(id: number, code: number): void {
    this.#lateResets.push({ id, code, due: performance.now() + RESET_DELAY_MS });
    this.#lateResetTimer ??= setTimeout(this.#resetDue, RESET_DELAY_MS);
  }

  readonly #resetDue = (): void => {
    this.#lateResetTimer = undefined;
    if (this.#final) return;
    const now = performance.now();
    let reset = 0;
    while (reset < this.#lateResets.length && this.#lateResets[reset]!.due <= now + 1) {
      const { id, code } = this.#lateResets[reset++]!;
      this.#shutdown(id, SHUTDOWN_WRITE, code);
    }
    this.#lateResets.splice(0, reset);
    if (this.#lateResets.length > 0) this.#lateResetTimer = setTimeout(this.#resetDue, Math.max(1, this.#lateResets[0]!.due - now));
    if (reset > 0) this.schedule();
  };

  #shutdown(id: number, direction: number, code: number): void {
    this.#mustFlush = true;
    try {
      this.native.streamShutdown(id, direction, code);
    } catch {
      // Already finished or collected on that side: nothing to stop.
    }
  }

  #closeNow(): void {
    if (this.#final) return;
    this.#closeSent = true;
    const { code, reason } = this.#closeRequest ?? { code: 0, reason: '' };
    // Our own close ends the streams without an error, as closing a socket would.
    for (const s of [...this.#streams.values()]) s.destroy();
    try {
      this.native.close(true, code, Buffer.from(reason));
    } catch {
      // Already closing (quiche says Done).
    }
    this.#mustFlush = true;
    this.#turn();
    // quiche drains for 3 PTO after CONNECTION_CLOSE; cap the wait whatever the PTO.
    if (!this.#final) setTimeout(() => this.#finalize(), CLOSE_DRAIN_LIMIT_MS).unref();
  }

  #rejectWaiters(): void {
    const err = this.#closedError();
    for (const w of this.#waiters.splice(0)) w.reject(err);
  }

  #closedError(): QuicError {
    return this.#abortError ?? this.closeInfo().error ?? new QuicClosedError(this.closeInfo());
  }

  /** Why the connection ended (or is ending), from quiche's view and ours. */
  closeInfo(): QuicCloseInfo {
    if (this.#abortError) return { byPeer: false, app: false, code: 0, reason: this.#abortError.message, error: this.#abortError };
    const peer = this.native.peerError();
    if (peer) return describe(peer, true);
    const local = this.native.localError();
    if (local) return describe(local, false);
    if (this.native.isTimedOut()) {
      return { byPeer: false, app: false, code: 0, reason: 'idle timeout', error: new QuicIdleTimeoutError(this.#options.idleTimeoutMs) };
    }
    const req = this.#closeRequest ?? { code: 0, reason: '' };
    return { byPeer: false, app: true, code: req.code, reason: req.reason };
  }

  #finalize(): void {
    if (this.#final) return;
    this.#final = true;
    this.#closing = true;
    if (this.#timer) clearTimeout(this.#timer);
    stopSweeping(this);
    if (this.#liveness) clearTimeout(this.#liveness);
    if (this.#suspectTimer) clearTimeout(this.#suspectTimer);
    if (this.#peerCloseLimit) clearTimeout(this.#peerCloseLimit);
    if (this.#lateResetTimer) clearTimeout(this.#lateResetTimer);
    this.#unwatchStalls?.();
    const info = this.closeInfo();
    const err = info.error ?? new QuicClosedError(info);
    for (const s of [...this.#streams.values()]) s.connectionEnded(err);
    this.#streams.clear();
    this.#writers.clear();
    this.#readers.clear();
    this.#paused.clear();
    for (const w of this.#waiters.splice(0)) w.reject(err);
    this.#sink.release(this);
    this.#resolveClosed(info);
    if (info.error && this.listenerCount('error') > 0) this.emit('error', info.error);
    this.emit('close', info);
  }
}

/** A timer that never keeps the process alive. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function describe(e: NativeConnectionError, byPeer: boolean): QuicCloseInfo {
  const reason = Buffer.from(e.reason).toString();
  const info: QuicCloseInfo = { byPeer, app: e.isApp, code: e.errorCode, reason };
  if (!e.isApp && isCryptoError(e.errorCode)) info.error = new QuicTlsError(tlsAlertOf(e.errorCode), byPeer, reason || undefined);
  else if (!e.isApp && e.errorCode !== 0) {
    info.error = new QuicError(
      'ERR_QUIC_PROTOCOL',
      `QUIC transport error 0x${e.errorCode.toString(16)} (${byPeer ? 'peer' : 'local'})${reason ? `: ${reason}` : ''}`,
    );
  }
  return info;
}
