/**
 * The node's part in a cluster: its membership (which node holds which group), the hop
 * that forwards a request to a node holding the group's tunnel, and the listener that
 * receives such hops. A node alone (`memory` membership) has the membership and nothing else.
 */
import { formatHostPort, type HostPort } from '../shared/address.js';
import { ReverstError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { HopClient, type HopTarget } from './hop.js';
import { type HopListener, type HopListenerDeps, createHopListener } from './hop-listener.js';
import { LISTENER_FLAGS, listen } from './listeners.js';
import { createMembership, type Membership, type MembershipHealth } from './membership/index.js';
import type { Metrics } from './metrics.js';
import type { PublicProxy, Remote, TriedHolders } from './proxy.js';
import type { TunnelRegistry } from './tunnels.js';

/** How long a request waits for a moving tunnel (see ProxyDeps.awaitHolder): a reconnect or hand-over takes well under this. */
export const HANDOVER_WAIT_MS = 2_000;
/** A group whose last holder left this recently is likely moving, not gone: requests for it wait for the next holder. */
export const HANDOVER_WINDOW_MS = 5_000;

export interface ClusterOptions {
  nodeId: string;
  /** `memory` (this node alone), `redis://…` or `nats://…`, optionally with `?namespace=`. */
  membership: string;
  namespace?: string | undefined;
  ttlMs?: number | undefined;
  /** Where this node's hop listener binds (cluster only). */
  internalAddress?: HostPort | undefined;
  clusterSecret?: string | undefined;
  registry: TunnelRegistry;
  metrics: Metrics;
  logger: Logger;
}

/** Whether `url` names a store shared with other nodes. */
export const isClustered = (url: string): boolean => !/^memory(:|$)/.test(url);

export class Cluster {
  readonly membership: Membership;
  /** Whether other nodes share the store: only then is there a hop. */
  readonly clustered: boolean;
  readonly #options: ClusterOptions;
  readonly #hop: HopClient | undefined;
  readonly #turns = new Map<string, number>();
  readonly #holderWaiters = new Set<() => void>();
  #listener: HopListener | undefined;
  #address: HostPort | undefined;

  /** Checks the options and builds the membership; opens nothing yet. */
  constructor(options: ClusterOptions) {
    this.#options = options;
    this.clustered = isClustered(options.membership);
    if (this.clustered && (!options.internalAddress || !options.clusterSecret)) {
      throw new ReverstError(
        'ERR_INVALID_OPTION',
        '--membership with a shared store needs --internal-address (where other nodes reach this one) and --cluster-secret or --cluster-secret-file',
      );
    }
    const log = options.logger;
    // Timing (heartbeat, resync) follows from the TTL in parseMembershipOptions, nowhere else.
    this.membership = createMembership(options.membership, {
      ttlMs: options.ttlMs,
      namespace: options.namespace,
      logger: log.child({ component: 'membership' }),
    });
    this.#hop = this.clustered ? new HopClient(options.nodeId, options.clusterSecret!, log.child({ component: 'hop' })) : undefined;

    const { registry, metrics } = options;
    const wake = (): void => {
      for (const waiter of [...this.#holderWaiters]) waiter();
    };
    registry.on('change', () => this.membership.setGroups(registry.groups()));
    registry.on('change', wake);
    this.membership.on('change', wake);
    this.membership.on('change', () => metrics.membershipEvents.inc({ type: 'change' }));
    let outage = false;
    this.membership.on('health', (health: MembershipHealth) => {
      metrics.membershipEvents.inc({ type: health.ok ? 'store_ok' : 'store_degraded' });
      // Joining is not recovering: only a store that was unreachable can be reachable again.
      if (health.ok && outage) log.info('membership store reachable again', { detail: health.detail });
      if (!health.ok)
        log.warn('membership store unreachable: local tunnels keep serving, cross-node routing uses the last known table', { detail: health.detail });
      outage = !health.ok;
    });
  }

  /** Where the proxy sends requests for groups held elsewhere; undefined for a node alone. */
  get remote(): Remote | undefined {
    const hop = this.#hop;
    if (!hop) return undefined;
    const { metrics } = this.#options;
    return {
      targets: (group) => this.#targets(group),
      open: (target, group, head) => hop.open(target, group, head),
      count: (result) => metrics.hopRequests.inc({ result }),
    };
  }

  /** The hop listener's bound address (cluster only, once listening). */
  get internalAddress(): HostPort | undefined {
    return this.#address;
  }

  /**
   * Resolves true as soon as a holder of `group` that the request has not tried appears (a
   * tunnel here, or another node; a tried node counts again once its record left and came
   * back), false after HANDOVER_WAIT_MS without one. False at once unless the group is moving:
   * its last holder left within HANDOVER_WINDOW_MS, or holders turned the request away (a
   * tunnel here that is closing, nodes whose records this node has not yet seen change).
   */
  awaitHolder(group: string, tried: TriedHolders): Promise<boolean> {
    const { registry, nodeId } = this.#options;
    const stale = new Set(tried.nodes);
    const held = (): boolean => {
      if (registry.hasAnswering(group, tried.tunnels)) return true;
      if (!this.clustered) return false;
      const listed = new Set(this.membership.nodesFor(group).map((n) => n.id));
      listed.delete(nodeId);
      for (const id of stale) if (!listed.has(id)) stale.delete(id);
      for (const id of listed) if (!stale.has(id)) return true;
      return false;
    };
    if (held()) return Promise.resolve(true);
    const released = this.membership.releasedAt(group);
    // Moving: nodes listed as holders turned the request away, or every tunnel still here is
    // closing (its client is leaving) or silent. A request that live tunnels here failed (the
    // client refused it, the handler broke) has nothing to wait for: it fails at once.
    const turnedAway = stale.size > 0 || (registry.count(group) > 0 && !registry.hasAnswering(group));
    const moving = turnedAway || (released !== undefined && performance.now() - released < HANDOVER_WINDOW_MS);
    if (!moving) return Promise.resolve(false);
    // Woken by route changes, not by a timer per request: a hand-over can park many requests.
    return new Promise<boolean>((resolve) => {
      const waiter = (): void => {
        if (!held()) return;
        this.#holderWaiters.delete(waiter);
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#holderWaiters.delete(waiter);
        resolve(false);
      }, HANDOVER_WAIT_MS);
      this.#holderWaiters.add(waiter);
    });
  }

  /** Opens the hop listener (cluster only), serving hops through `proxy`. */
  async listen(proxy: Pick<PublicProxy, 'serveHop'>, track: HopListenerDeps['track']): Promise<void> {
    const { internalAddress, clusterSecret, metrics, logger } = this.#options;
    if (!this.clustered) return;
    this.#listener = createHopListener({ secret: clusterSecret!, metrics, proxy, track, logger: logger.child({ component: 'hop' }) });
    this.#address = await listen(this.#listener, internalAddress!, LISTENER_FLAGS.internal);
  }

  /** Publishes this node; other nodes reach it at its hop listener (brackets for IPv6, so the hop's URL is valid). */
  join(): Promise<void> {
    // A node alone has no hop listener: nobody forwards to it.
    return this.membership.start({ id: this.#options.nodeId, address: this.#address ? formatHostPort(this.#address) : 'standalone' });
  }

  /** Leaves the membership first, so other nodes stop forwarding here, then drops hop connections. */
  async leave(): Promise<void> {
    await this.membership.stop({ leave: true });
    this.#listener?.closeAllConnections();
  }

  /** Closes the hop listener and the hop's pool; after a failed start, the membership without leaving. */
  async close(): Promise<void> {
    await Promise.all([
      this.membership.stop({ leave: false }),
      this.#listener?.listening ? new Promise<void>((resolve) => this.#listener!.close(() => resolve())) : undefined,
      this.#hop?.close(),
    ]);
  }

  /** Other nodes holding the group, rotated per request so load spreads over them. */
  #targets(group: string): HopTarget[] {
    const nodes = this.membership.nodesFor(group).filter((n) => n.id !== this.#options.nodeId);
    if (nodes.length < 2) return nodes;
    const turn = (this.#turns.get(group) ?? 0) % nodes.length;
    this.#turns.set(group, turn + 1);
    return [...nodes.slice(turn), ...nodes.slice(0, turn)];
  }
}
