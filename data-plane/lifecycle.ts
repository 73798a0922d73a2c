/**
 * How a running node ends: `drain()` (SIGTERM) moves tunnels away and lets requests in
 * flight finish before stopping; `stop()` (a second signal) closes everything at once.
 */
import type http from 'node:http';
import type { Logger } from '../shared/log.js';
import { CloseCode, encodeFrame } from '../shared/protocol.js';
import type { QuicServer } from '../shared/quic/index.js';
import type { Cluster } from './cluster.js';
import type { TunnelRegistry } from './tunnels.js';

/** How long tunnels get, after the drain frame, to connect elsewhere before the node closes them. */
export const DEFAULT_DRAIN_DEADLINE_MS = 10_000;
/** How long requests in flight get to finish on drain. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;

/** Polls `done` until it holds or `ms` pass (drains only: rare, and a 25 ms poll costs nothing). */
async function waitUntil(done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
}

/** Whether the node takes new work, and how many requests (public and hop) a drain waits for. */
export class Intake {
  draining = false;
  #inFlight = 0;

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Counts a request (a public response, or a hop exchange) until it closes. */
  readonly track = (res: { once(event: 'close', listener: () => void): unknown }): void => {
    this.#inFlight++;
    res.once('close', () => this.#inFlight--);
  };
}

/** What a node closes when it ends. */
export interface NodeParts {
  registry: TunnelRegistry;
  groups: { close(): void };
  quic: QuicServer;
  publicServer: http.Server;
  management: http.Server | undefined;
  cluster: Cluster;
}

export interface LifecycleOptions {
  drainDeadlineMs?: number | undefined;
  drainTimeoutMs?: number | undefined;
}

export class NodeLifecycle {
  /** Resolves once the node has stopped. */
  readonly closed: Promise<void>;
  readonly #parts: NodeParts;
  readonly #intake: Intake;
  readonly #log: Logger;
  readonly #options: LifecycleOptions;
  #resolveClosed!: () => void;
  #stopping: Promise<void> | undefined;

  constructor(parts: NodeParts, intake: Intake, log: Logger, options: LifecycleOptions) {
    this.#parts = parts;
    this.#intake = intake;
    this.#log = log;
    this.#options = options;
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Close everything now. */
  stop(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  /** Stop taking requests, tell tunnels to move, let in-flight requests finish, then stop. */
  async drain(): Promise<void> {
    const { registry, publicServer, cluster } = this.#parts;
    if (this.#intake.draining) return this.stop();
    this.#intake.draining = true;
    const deadlineMs = this.#options.drainDeadlineMs ?? DEFAULT_DRAIN_DEADLINE_MS;
    this.#log.info('draining', { tunnels: registry.all().length, inFlight: this.#intake.inFlight });
    for (const t of registry.all()) t.control.write(encodeFrame({ Type: 'drain', DeadlineMs: deadlineMs }));
    // New visitors go elsewhere; requests already here finish.
    publicServer.close();
    publicServer.closeIdleConnections();
    const started = Date.now();
    // In a cluster, keep serving (hops included) until the clients have moved
    // their tunnels to other nodes; a node alone has nowhere to send them.
    if (cluster.clustered) await waitUntil(() => registry.all().length === 0, deadlineMs);
    const timeoutMs = this.#options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    await waitUntil(() => this.#intake.inFlight === 0, Math.max(0, timeoutMs - (Date.now() - started)));
    await this.stop();
  }

  async #shutdown(): Promise<void> {
    const { groups, publicServer, cluster, quic, management } = this.#parts;
    this.#intake.draining = true;
    groups.close();
    publicServer.closeAllConnections();
    // Leave first, so other nodes stop sending requests here.
    await cluster.leave();
    await Promise.all([
      new Promise<void>((r) => publicServer.close(() => r())),
      quic.close({ code: CloseCode.NoError, reason: 'node stopped' }),
      management ? new Promise<void>((r) => management.close(() => r())) : undefined,
      cluster.close(),
    ]);
    this.#log.info('node stopped');
    this.#resolveClosed();
  }
}
