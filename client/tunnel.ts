/**
 * A tunnel keeps `connections` registrations alive on a group for as long as it runs:
 * it dials, registers, serves, and when a connection is lost or a node drains, connects
 * again (backing off while attempts fail, moving through the addresses in order). It
 * stops for good only when closed or when the node says retrying cannot help.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { NotFoundError, RegistrationError, ServerError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { AddressRing, Backoff } from './backoff.js';
import { DEFAULT_CLOSE_GRACE_MS, HEALTHY_AFTER_MS, parseConnectOptions, type Address, type ConnectOptions, type TunnelOptions } from './options.js';
import { openSession, type Session } from './session.js';

export interface ReadyEvent {
  address: string;
  nodeId: string;
}

export interface ReconnectingEvent {
  /** Consecutive failures (1 for the first retry). */
  attempt: number;
  delayMs: number;
  /** Why the last attempt or connection failed. */
  error: Error;
  /** The address that failed; the next attempt goes to the next one. */
  address: string;
}

export interface DrainEvent {
  address: string;
  nodeId: string;
  /** The node closes the connection after this long; a replacement is being connected. */
  deadlineMs: number;
}

export interface TunnelEvents {
  ready: [ReadyEvent];
  reconnecting: [ReconnectingEvent];
  drain: [DrainEvent];
  /** Only emitted when a listener is attached: the error that stopped the tunnel. */
  error: [RegistrationError];
  /** Stopped: with the error that stopped it, or undefined after close(). */
  close: [RegistrationError | undefined];
}

export interface CloseTunnelOptions {
  /** How long in-flight requests may run on before they are reset (default 5 s). */
  graceMs?: number;
}

/** One slot holds one registration at a time, plus those it is moving away from after a drain. */
interface Slot {
  index: number;
  session?: Session | undefined;
  /** Drained sessions and the time (performance.now()) their node closes them. */
  retiring: Map<Session, number>;
}

/** What stops the tunnel: a refusal retrying cannot help, but "not found" if the caller waits for the group. */
const isFatal = (error: unknown, options: TunnelOptions): error is RegistrationError =>
  error instanceof RegistrationError && !error.retryable && !(options.retryNotFound && error instanceof NotFoundError);
const asError = (error: unknown): Error => (error instanceof Error ? error : new ServerError(String(error)));

export class Tunnel extends EventEmitter<TunnelEvents> {
  /** Settles (never rejects) once the tunnel has stopped: with the error that stopped it, or undefined after close(). */
  readonly closed: Promise<RegistrationError | undefined>;
  /** Resolves at the first registration; rejects if the tunnel stops before one. */
  readonly ready: Promise<void>;

  readonly #options: TunnelOptions;
  readonly #logger: Logger;
  readonly #stop = new AbortController();
  readonly #slots: Slot[];
  readonly #loops: Promise<void>[];
  #resolveClosed!: (error: RegistrationError | undefined) => void;
  #resolveReady!: () => void;
  #rejectReady!: (error: unknown) => void;
  #shutdown: Promise<void> | undefined;
  #registered = false;

  /**
   * Starts at once. `connect()` is this plus waiting for `ready`; construct it yourself to
   * hear 'reconnecting' while the first registration is still being attempted.
   */
  constructor(connectOptions: ConnectOptions) {
    super();
    const options = parseConnectOptions(connectOptions);
    this.#options = options;
    this.#logger = options.logger;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    // Whoever needs it awaits `ready`; a tunnel nobody waits on must not raise an unhandled rejection.
    this.ready.catch(() => {});

    this.#slots = Array.from({ length: options.connections }, (_, index) => ({ index, retiring: new Map() }));
    this.#loops = this.#slots.map((slot) => this.#hold(slot));
    options.signal?.addEventListener('abort', () => void this.close(), { once: true });
    if (options.signal?.aborted) void this.close();
  }

  /** The registrations held right now. */
  get tunnels(): ReadyEvent[] {
    return this.#slots.flatMap(({ session }) => (session ? [{ address: session.address.text, nodeId: session.nodeId }] : []));
  }

  /** Stop reconnecting, let in-flight requests finish (up to `graceMs`), close every connection. */
  close(options: CloseTunnelOptions = {}): Promise<void> {
    return this.#stopAll(options.graceMs ?? DEFAULT_CLOSE_GRACE_MS, undefined);
  }

  /** Keeps one registration alive until the tunnel stops. */
  async #hold(slot: Slot): Promise<void> {
    const { addresses, minDelayMs, maxDelayMs } = this.#options;
    // Slots start at different addresses so that, given several nodes, they land on different ones.
    const ring = new AddressRing(addresses, slot.index);
    const backoff = new Backoff({ minDelayMs, maxDelayMs });
    let duplicates = 0;

    while (!this.#stop.signal.aborted) {
      const address = ring.current;
      let session: Session;
      try {
        session = await this.#open(address);
      } catch (error) {
        if (this.#stop.signal.aborted) return;
        if (isFatal(error, this.#options)) return this.#fail(error);
        ring.advance();
        await this.#pause(backoff, asError(error), address);
        continue;
      }
      if (this.#stop.signal.aborted) {
        await session.close();
        return;
      }
      // Two tunnels on one node do not survive that node: try the other addresses first.
      if (duplicates < ring.size - 1 && this.#heldElsewhere(session.nodeId, slot)) {
        duplicates++;
        this.#logger.debug('node already held by another connection; trying the next address', { nodeId: session.nodeId });
        await session.close();
        ring.advance();
        continue;
      }
      duplicates = 0;

      const readyAt = performance.now();
      const outcome = await this.#serve(slot, session);
      if (this.#stop.signal.aborted) return;
      if (performance.now() - readyAt >= HEALTHY_AFTER_MS) backoff.reset();
      // Whatever ended it, that node is likely going away: prefer the next address.
      ring.advance();
      if ('deadlineMs' in outcome) {
        // The drained connection keeps serving meanwhile: connect its replacement at once.
        this.#retire(slot, session, outcome.deadlineMs);
        continue;
      }
      if (isFatal(outcome.error, this.#options)) return this.#fail(outcome.error);
      await this.#pause(backoff, outcome.error ?? new ServerError('connection closed'), address);
    }
  }

  #open(address: Address): Promise<Session> {
    return openSession({
      ...this.#options,
      address,
      logger: this.#logger.child({ address: address.text }),
      signal: this.#stop.signal,
    });
  }

  /** Serves on `session` until it ends or its node drains. */
  async #serve(slot: Slot, session: Session): Promise<{ deadlineMs: number } | { error: Error | undefined }> {
    slot.session = session;
    // The replacement is up: drained connections may go once their in-flight requests finish.
    for (const [old, closesAt] of slot.retiring) void old.close(Math.max(0, closesAt - performance.now()));

    const ready: ReadyEvent = { address: session.address.text, nodeId: session.nodeId };
    this.#logger.info('tunnel ready', { ...ready });
    this.#registered = true;
    this.emit('ready', ready);
    this.#resolveReady();

    const outcome = await new Promise<{ deadlineMs: number } | { error: Error | undefined }>((resolve) => {
      session.once('drain', (deadlineMs) => resolve({ deadlineMs }));
      void session.ended.then((error) => resolve({ error }));
    });
    slot.session = undefined;
    if ('deadlineMs' in outcome) {
      this.#logger.info('node draining; connecting a replacement', { ...ready, deadlineMs: outcome.deadlineMs });
      this.emit('drain', { ...ready, deadlineMs: outcome.deadlineMs });
    }
    return outcome;
  }

  /** Keep a drained session until its replacement is ready or its node's deadline passes. */
  #retire(slot: Slot, session: Session, deadlineMs: number): void {
    slot.retiring.set(session, performance.now() + deadlineMs);
    const deadline = setTimeout(() => void session.close(), deadlineMs);
    void session.ended.then(() => {
      clearTimeout(deadline);
      slot.retiring.delete(session);
    });
  }

  #heldElsewhere(nodeId: string, slot: Slot): boolean {
    return this.#slots.some((other) => other !== slot && other.session?.nodeId === nodeId);
  }

  async #pause(backoff: Backoff, error: Error, address: Address): Promise<void> {
    const delayMs = backoff.next();
    const event: ReconnectingEvent = { attempt: backoff.attempt, delayMs, error, address: address.text };
    this.#logger.warn('tunnel attempt failed; retrying', { address: address.text, attempt: event.attempt, delayMs, error: error.message });
    this.emit('reconnecting', event);
    try {
      await delay(delayMs, undefined, { signal: this.#stop.signal });
    } catch {
      // Closed while waiting.
    }
  }

  /** Called from inside a slot's loop, so it must not wait for the loops to end. */
  #fail(error: RegistrationError): void {
    void this.#stopAll(0, error);
  }

  #stopAll(graceMs: number, error: RegistrationError | undefined): Promise<void> {
    this.#shutdown ??= (async () => {
      this.#stop.abort();
      const sessions = this.#slots.flatMap((slot) => [...(slot.session ? [slot.session] : []), ...slot.retiring.keys()]);
      await Promise.all(sessions.map((session) => session.close(graceMs)));
      // A dial in progress cannot be cancelled: wait for it, so nothing outlives close().
      await Promise.all(this.#loops);
      this.#rejectReady(error ?? this.#options.signal?.reason ?? new ServerError('tunnel closed before it registered'));
      if (error && this.listenerCount('error') > 0) this.emit('error', error);
      // Before the first registration the error reaches the caller as connect()'s rejection.
      else if (error && this.#registered) this.#logger.error('tunnel stopped', { error: error.message });
      this.#resolveClosed(error);
      this.emit('close', error);
    })();
    return this.#shutdown;
  }
}

/**
 * Register on a tunnel group and serve the requests it receives. Resolves once the first
 * registration succeeds; rejects if the node refuses it for good (UnauthorizedError,
 * NotFoundError unless `retryNotFound`, BadRequestError, ServerNameError), and keeps
 * retrying anything else.
 */
export async function connect(options: ConnectOptions): Promise<Tunnel> {
  const tunnel = new Tunnel(options);
  await tunnel.ready;
  return tunnel;
}
