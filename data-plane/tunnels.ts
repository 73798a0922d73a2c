import { EventEmitter } from 'node:events';
import type { LoadBalancing } from '../shared/config/index.js';
import { ReverstError } from '../shared/errors.js';
import type { QuicConnection, QuicStream } from '../shared/quic/index.js';

/** One registered client connection serving a group. */
export interface Tunnel {
  readonly id: string;
  readonly group: string;
  readonly connection: QuicConnection;
  /** The registration stream, kept open for control frames (drain). */
  readonly control: QuicStream;
  /** The credentials it registered with, checked again when its group's authentication changes. */
  readonly authorization?: string | undefined;
  /** Requests currently being served through this tunnel. */
  inFlight: number;
}

/** What the proxy needs: a tunnel for a group, skipping those already tried. */
export interface TunnelPicker {
  /** A tunnel not in `exclude`; one whose client is answering when there is such a tunnel. */
  pick(group: string, exclude?: ReadonlySet<Tunnel>): Tunnel | undefined;
  /** Whether a tunnel not in `exclude`, whose client is answering, could take a request now. */
  hasAnswering(group: string, exclude?: ReadonlySet<Tunnel>): boolean;
}

/**
 * A tunnel whose client has left sent data unanswered for a second (the connection's
 * 'suspect'): it may be dead or frozen. New requests go to other tunnels while there
 * are any; the unresponsive timeout still decides when it is dropped.
 */
export const isSuspect = (t: Tunnel): boolean => t.connection.suspect;

/**
 * The balanced set of one group's tunnels. Round robin by default; least
 * in-flight picks the tunnel with the fewest active requests (ties in turn).
 * Suspect tunnels are picked only when no other can be.
 */
class TunnelSet {
  readonly members: Tunnel[] = [];
  #next = 0;

  constructor(public policy: LoadBalancing) {}

  pick(exclude?: ReadonlySet<Tunnel>): Tunnel | undefined {
    return this.#pick(exclude, false) ?? this.#pick(exclude, true);
  }

  hasAnswering(exclude?: ReadonlySet<Tunnel>): boolean {
    return this.members.some((t) => !exclude?.has(t) && !t.connection.isClosing && !isSuspect(t));
  }

  #pick(exclude: ReadonlySet<Tunnel> | undefined, suspectsToo: boolean): Tunnel | undefined {
    const n = this.members.length;
    let best: Tunnel | undefined;
    let bestAt = 0;
    for (let i = 0; i < n; i++) {
      const at = (this.#next + i) % n;
      const t = this.members[at]!;
      if (exclude?.has(t) || t.connection.isClosing || (!suspectsToo && isSuspect(t))) continue;
      if (this.policy === 'round-robin') {
        this.#next = (at + 1) % n;
        return t;
      }
      if (!best || t.inFlight < best.inFlight) {
        best = t;
        bestAt = at;
      }
    }
    if (best) this.#next = (bestAt + 1) % n;
    return best;
  }

  remove(t: Tunnel): boolean {
    const i = this.members.indexOf(t);
    if (i < 0) return false;
    this.members.splice(i, 1);
    if (this.#next > i) this.#next--;
    if (this.#next >= this.members.length) this.#next = 0;
    return true;
  }
}

/**
 * Every tunnel on this node, by group. A tunnel leaves the moment its
 * connection ends. Emits 'change' (group, count) when a group's count changes.
 */
export class TunnelRegistry extends EventEmitter implements TunnelPicker {
  readonly #sets = new Map<string, TunnelSet>();
  #policies: (group: string) => LoadBalancing;

  constructor(policies: (group: string) => LoadBalancing = () => 'round-robin') {
    super();
    this.#policies = policies;
  }

  /** Policies come from the groups config, which can be reloaded. */
  setPolicies(policies: (group: string) => LoadBalancing): void {
    this.#policies = policies;
    for (const [group, set] of this.#sets) set.policy = policies(group);
  }

  add(tunnel: Tunnel): void {
    let set = this.#sets.get(tunnel.group);
    if (!set) {
      set = new TunnelSet(this.#policies(tunnel.group));
      this.#sets.set(tunnel.group, set);
    }
    set.members.push(tunnel);
    void tunnel.connection.closed.then(() => this.remove(tunnel));
    this.emit('change', tunnel.group, set.members.length);
  }

  remove(tunnel: Tunnel): void {
    const set = this.#sets.get(tunnel.group);
    if (!set?.remove(tunnel)) return;
    if (set.members.length === 0) this.#sets.delete(tunnel.group);
    this.emit('change', tunnel.group, set.members.length);
  }

  pick(group: string, exclude?: ReadonlySet<Tunnel>): Tunnel | undefined {
    return this.#sets.get(group)?.pick(exclude);
  }

  hasAnswering(group: string, exclude?: ReadonlySet<Tunnel>): boolean {
    return this.#sets.get(group)?.hasAnswering(exclude) ?? false;
  }

  count(group: string): number {
    return this.#sets.get(group)?.members.length ?? 0;
  }

  groups(): string[] {
    return [...this.#sets.keys()];
  }

  all(): Tunnel[] {
    return [...this.#sets.values()].flatMap((s) => s.members);
  }
}

/** A request was taken off a tunnel whose client answered nothing since the request went out. */
export class TunnelSilentError extends ReverstError {
  override name = 'TunnelSilentError';
  constructor(tunnelId: string) {
    super('ERR_TUNNEL_SILENT', `tunnel ${tunnelId} acknowledged nothing of the request for a second; trying another tunnel`);
  }
}

type SilentWaiter = { since: number; callback: () => void };
// One 'suspect' listener per connection, however many requests wait on it.
const silentWaiters = new WeakMap<QuicConnection, Set<SilentWaiter>>();

/**
 * Calls `callback` once if the tunnel turns suspect while its client has sent
 * nothing at all since `since` (performance.now(), taken before the request's
 * first byte went out): the request then never reached a live client, and
 * another tunnel may take it. Returns the function that stops watching.
 */
export function whenSilent(tunnel: Tunnel, since: number, callback: () => void): () => void {
  const conn = tunnel.connection;
  let waiters = silentWaiters.get(conn);
  if (!waiters) {
    const set = new Set<SilentWaiter>();
    waiters = set;
    silentWaiters.set(conn, set);
    conn.on('suspect', () => {
      for (const waiter of [...set]) {
        if (conn.heardSince(waiter.since)) continue;
        set.delete(waiter);
        waiter.callback();
      }
    });
  }
  const waiter: SilentWaiter = { since, callback };
  waiters.add(waiter);
  return () => void waiters.delete(waiter);
}
