import { EventEmitter } from 'node:events';
import { ReverstError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Membership, MembershipEvents, MembershipHealth, NodeInfo } from './index.js';
import type { ResolvedMembershipOptions } from './options.js';
import { RouteTable, sameSet } from './route-table.js';
import type { MembershipStore, NodeRecord, StoreListener } from './store.js';

/** First retry after a failed store operation; doubles up to the heartbeat period. */
const RETRY_MIN_MS = 100;

/** Store work, in the order a sync pass does it: publishing first, since the rest is moot if others cannot see us. */
const STEPS = ['publish', 'heartbeat', 'resync'] as const;
type Step = (typeof STEPS)[number];

/**
 * The one Membership implementation; backends differ only in their MembershipStore.
 *
 * Store work runs in sync passes, one at a time, so a heartbeat never overtakes a publish
 * and a leave never overtakes either. Callers only mark work as due (`#due`); a failed step
 * stays due and is retried with backoff; after the store comes back everything is due again.
 */
export class StoreMembership extends EventEmitter<MembershipEvents> implements Membership {
  readonly #store: MembershipStore;
  readonly #options: ResolvedMembershipOptions;
  readonly #logger: Logger;
  readonly #table = new RouteTable();
  /** This node's own groups as a table of one, for when it stopped holding one (releasedAt). */
  readonly #own = new RouteTable();
  readonly #due = new Set<Step>();
  #self: NodeInfo | undefined;
  #groups: ReadonlySet<string> = new Set();
  #phase: 'new' | 'running' | 'stopped' = 'new';
  #connected = false;
  /** Undefined until the first pass or failure. */
  #ok: boolean | undefined;
  #problem = '';
  #pass: Promise<void> | undefined;
  #retryDelayMs = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #resyncTimer: NodeJS.Timeout | undefined;
  #settleStart: () => void = () => {};
  #stopping: Promise<void> | undefined;

  constructor(store: MembershipStore, options: ResolvedMembershipOptions) {
    super();
    this.#store = store;
    this.#options = options;
    this.#logger = options.logger.child({ component: 'membership', store: store.name });
  }

  async start(self: NodeInfo): Promise<void> {
    if (this.#phase !== 'new') throw new Error('Membership.start() was already called: create one Membership per node');
    if (!self.id || !self.address) {
      throw new ReverstError('ERR_INVALID_OPTION', `a membership node needs a non-empty id and address, got ${JSON.stringify(self)}`);
    }
    this.#self = Object.freeze({ id: self.id, address: self.address });
    this.#phase = 'running';
    const firstAttempt = new Promise<void>((resolve) => (this.#settleStart = resolve));
    const { heartbeatMs, resyncMs } = this.#options;
    this.#heartbeatTimer = setInterval(() => this.#schedule('heartbeat'), heartbeatMs);
    this.#resyncTimer = setInterval(() => this.#schedule('resync'), resyncMs);
    this.#store.open(this.#listener);
    this.#emitChange();
    // Resolves once joined, or at the first failure: a node must serve its own tunnels while
    // the store is down, so joining then finishes in the background and health() says so.
    await firstAttempt;
  }

  setGroups(groups: Iterable<string>): void {
    if (this.#phase === 'stopped') return;
    const next = new Set(groups);
    if (sameSet(next, this.#groups)) return;
    this.#groups = next;
    this.#own.apply('self', { address: 'self', groups: [...next] });
    if (this.#phase !== 'running') return; // published by start()
    this.#emitChange();
    this.#schedule('publish');
  }

  nodesFor(group: string): NodeInfo[] {
    const nodes = this.#table.nodesFor(group);
    if (this.#phase === 'running' && this.#groups.has(group)) nodes.unshift(this.#self!);
    return nodes;
  }

  releasedAt(group: string): number | undefined {
    if (this.nodesFor(group).length > 0) return undefined;
    const others = this.#table.releasedAt(group);
    const own = this.#own.releasedAt(group);
    return others === undefined || (own !== undefined && own > others) ? own : others;
  }

  nodes(): NodeInfo[] {
    const nodes = this.#table.nodes();
    if (this.#phase === 'running') nodes.unshift(this.#self!);
    return nodes;
  }

  health(): MembershipHealth {
    if (this.#phase !== 'running') return { ok: false, detail: this.#phase === 'new' ? 'not started' : 'stopped' };
    if (this.#ok === undefined) return { ok: false, detail: `joining ${this.#store.name}` };
    if (this.#ok) return { ok: true, detail: `${this.#store.name}: joined, ${this.#table.size} other node(s)` };
    return {
      ok: false,
      detail: `${this.#store.name} unavailable (${this.#problem}); routing from the last known table of ${this.#table.size} other node(s)`,
    };
  }

  stop(options: { leave?: boolean } = {}): Promise<void> {
    this.#stopping ??= this.#shutdown(options.leave ?? true);
    return this.#stopping;
  }

  async #shutdown(leave: boolean): Promise<void> {
    const wasRunning = this.#phase === 'running';
    this.#phase = 'stopped';
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#resyncTimer);
    clearTimeout(this.#retryTimer);
    this.#settleStart();
    if (!wasRunning) return;
    await this.#pass; // never rejects; stops after the step in flight
    if (leave && this.#connected) {
      try {
        await this.#store.remove(this.#self!.id);
      } catch (err) {
        this.#logger.warn('could not delete our record on leave; other nodes drop it when it expires', { err });
      }
    }
    await this.#store.close();
  }

  readonly #listener: StoreListener = {
    onRecord: (id, record) => {
      if (this.#phase !== 'running') return;
      if (id === this.#self!.id) {
        // Someone deleted our record (a flush, or a process reusing our id leaving): restore it.
        if (!record) this.#schedule('publish');
        return;
      }
      if (this.#table.apply(id, record)) this.#emitChange();
    },
    onConnected: () => {
      if (this.#phase !== 'running') return;
      this.#connected = true;
      // The store may have lost our record (a restarted Redis starts empty) and we may have
      // missed events: publish everything and re-read everything.
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#retryDelayMs = 0;
      this.#due.add('publish').add('resync');
      this.#kick();
    },
    onDisconnected: (reason) => {
      if (this.#phase !== 'running') return;
      this.#connected = false;
      this.#degrade(reason);
      this.#settleStart();
    },
  };

  #schedule(step: Step): void {
    this.#due.add(step);
    this.#kick();
  }

  #kick(): void {
    if (this.#pass || this.#nextStep() === undefined) return;
    this.#pass = this.#runPass().finally(() => {
      this.#pass = undefined;
      // Work marked due after the pass's last check would otherwise wait for the next timer.
      if (!this.#retryTimer) this.#kick();
    });
  }

  #nextStep(): Step | undefined {
    if (this.#phase !== 'running' || !this.#connected) return undefined;
    return STEPS.find((step) => this.#due.has(step));
  }

  async #runPass(): Promise<void> {
    let step: Step | undefined;
    try {
      while ((step = this.#nextStep())) {
        this.#due.delete(step);
        await this.#perform(step);
      }
      this.#retryDelayMs = 0;
      if (this.#connected && this.#phase === 'running') this.#setOk();
    } catch (err) {
      this.#due.add(step!);
      this.#degrade(`${step} failed: ${(err as Error)?.message ?? err}`);
      this.#scheduleRetry();
    } finally {
      this.#settleStart();
    }
  }

  async #perform(step: Step): Promise<void> {
    const { id } = this.#self!;
    const { ttlMs } = this.#options;
    switch (step) {
      case 'publish':
        await this.#store.put(id, this.#record(), ttlMs);
        this.#due.delete('heartbeat'); // the write just renewed the TTL
        return;
      case 'heartbeat':
        if (!(await this.#store.refresh(id, this.#record(), ttlMs))) {
          this.#logger.info('our record was gone from the store (expired or flushed); writing it again');
          this.#due.add('publish');
        }
        return;
      case 'resync': {
        this.#table.beginListing();
        const records = await this.#store.list();
        records.delete(id);
        if (this.#table.replace(records)) this.#emitChange();
        return;
      }
    }
  }

  #record(): NodeRecord {
    return { address: this.#self!.address, groups: [...this.#groups].sort() };
  }

  #scheduleRetry(): void {
    this.#retryDelayMs = Math.min(this.#options.heartbeatMs, Math.max(RETRY_MIN_MS, this.#retryDelayMs * 2));
    // Jitter, so that nodes that failed together do not retry together.
    const delay = this.#retryDelayMs * (0.5 + Math.random() / 2);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#kick();
    }, delay);
  }

  #setOk(): void {
    if (this.#ok === true) return;
    this.#logger.info(`membership ${this.#ok === undefined ? 'joining' : 'degraded'} -> ok`, { nodes: this.#table.size });
    this.#ok = true;
    this.#emitHealth();
  }

  #degrade(problem: string): void {
    this.#problem = problem;
    if (this.#ok === false) {
      this.#logger.debug('membership still degraded', { problem });
      return;
    }
    const from = this.#ok === undefined ? 'joining' : 'ok';
    this.#logger.warn(`membership ${from} -> degraded: routing from the last known table`, { problem, nodes: this.#table.size });
    this.#ok = false;
    this.#emitHealth();
  }

  // A throwing listener is a bug elsewhere; it must not break the sync pass or the store's event loop.
  #emitChange(): void {
    try {
      this.emit('change');
    } catch (err) {
      this.#logger.error("a membership 'change' listener threw", { err });
    }
  }

  #emitHealth(): void {
    try {
      this.emit('health', this.health());
    } catch (err) {
      this.#logger.error("a membership 'health' listener threw", { err });
    }
  }
}
