/**
 * Cluster membership: which nodes exist and which tunnel groups each one holds, so that a
 * node without a local tunnel for a group can forward to one that has it (design §5).
 * One interface; the store is chosen by URL scheme (memory, redis/rediss, nats).
 */
import type { EventEmitter } from 'node:events';
import { ReverstError } from '../../shared/errors.js';
import { LazyStore } from './lazy-store.js';
import { MemoryStore } from './memory.js';
import { parseMembershipOptions, type MembershipOptions } from './options.js';
import { redactUrl } from '../../shared/redact.js';
import { StoreMembership } from './store-membership.js';

export {
  DEFAULT_HEARTBEAT_MS,
  DEFAULT_NAMESPACE,
  DEFAULT_RESYNC_MS,
  DEFAULT_TTL_MS,
  parseMembershipOptions,
  type MembershipOptions,
} from './options.js';

export interface NodeInfo {
  readonly id: string;
  /** Internal hop `host:port`. */
  readonly address: string;
}

export interface MembershipHealth {
  ok: boolean;
  detail: string;
}

export interface MembershipEvents {
  /** What nodes() or nodesFor() return has changed. */
  change: [];
  /** Health went ok <-> degraded (or left the initial joining state). */
  health: [health: MembershipHealth];
}

export interface Membership extends EventEmitter<MembershipEvents> {
  /**
   * Joins: publishes our record (with a TTL), then keeps it fresh and the route table in sync.
   * Resolves once joined, or at the first store failure with health() degraded: joining then
   * completes in the background as soon as the store answers.
   */
  start(self: NodeInfo): Promise<void>;
  /**
   * The full set of groups this node holds at least one tunnel for. Publishes in the
   * background only if the set changed; never blocks or throws (failures are retried, and
   * everything is re-published when the store comes back).
   */
  setGroups(groups: Iterable<string>): void;
  /**
   * Nodes holding `group`, this node first if it does; answered from memory, never from the
   * store. Nodes whose record expired are dropped at the next resync.
   */
  nodesFor(group: string): NodeInfo[];
  /**
   * When `group` lost its last holder, this node included, as this node saw it (performance.now()
   * milliseconds): a tunnel moving to another node (a drain, a client reconnecting) leaves its
   * group without a holder for a moment. Undefined while some node holds it, or if none did lately.
   */
  releasedAt(group: string): number | undefined;
  /** Every known node, this one first. */
  nodes(): NodeInfo[];
  /** Degraded while the store is unreachable; routing then uses the last known table. */
  health(): MembershipHealth;
  /**
   * Leaves and closes every connection. `leave` (default true) deletes our record so other
   * nodes drop us at once; `leave: false` is a crash as others see it: the record expires by TTL.
   */
  stop(options?: { leave?: boolean }): Promise<void>;
}

/** The URL forms `createMembership` accepts, for error messages and help. */
export const MEMBERSHIP_URL_FORMS =
  'memory, memory://<name>, redis://[:password@]host:port[/db], rediss://… or nats://[user:password@]host:port, each with an optional ?namespace=<name>';

/**
 * A Membership over the store `url` names:
 * - `memory`: in this process only, for `--standalone`; `memory://<name>` shares one store
 *   among every Membership in this process given the same name (in-process clusters, tests);
 * - `redis://…`, `rediss://…`: Redis (keys under `<namespace>:`, pub/sub for changes);
 * - `nats://…`: a NATS JetStream key-value bucket `<namespace>-membership` and its watch.
 * The namespace comes from `options.namespace` or the URL's `?namespace=` (the same if both).
 */
export function createMembership(url: string, options: MembershipOptions = {}): Membership {
  const scheme = url === 'memory' ? 'memory' : /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  const invalid = (problem: string) =>
    new ReverstError('ERR_INVALID_OPTION', `${problem} membership store ${JSON.stringify(redactUrl(url))}: use ${MEMBERSHIP_URL_FORMS}`);
  if (scheme !== 'memory' && scheme !== 'redis' && scheme !== 'rediss' && scheme !== 'nats') throw invalid('unsupported');
  if (scheme !== 'memory' && !URL.canParse(url)) throw invalid('malformed URL for the');
  const { storeUrl, namespace } = splitNamespace(url);
  if (namespace !== undefined && options.namespace !== undefined && namespace !== options.namespace) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      `membership namespace given twice, as ${JSON.stringify(options.namespace)} and in the store URL as ${JSON.stringify(namespace)}: give it once`,
    );
  }
  const resolved = parseMembershipOptions({ ...options, namespace: options.namespace ?? namespace });
  const logger = resolved.logger.child({ component: 'membership' });
  if (scheme === 'memory') return new StoreMembership(new MemoryStore(storeUrl.slice('memory://'.length), resolved.namespace), resolved);
  // Each backend's client library is loaded only when a node uses that backend.
  const store =
    scheme === 'nats'
      ? new LazyStore(redactUrl(storeUrl), async () => new (await import('./nats.js')).NatsStore(storeUrl, resolved.namespace, resolved.ttlMs, logger))
      : new LazyStore(redactUrl(storeUrl), async () => new (await import('./redis.js')).RedisStore(storeUrl, resolved.namespace, logger));
  return new StoreMembership(store, resolved);
}

/** `?namespace=` is ours, not the store client's (ioredis would read it as one of its options): take it out. */
function splitNamespace(url: string): { storeUrl: string; namespace: string | undefined } {
  const query = url.indexOf('?');
  if (query < 0) return { storeUrl: url, namespace: undefined };
  const params = new URLSearchParams(url.slice(query + 1));
  const namespace = params.get('namespace') ?? undefined;
  params.delete('namespace');
  const rest = params.toString();
  return { storeUrl: url.slice(0, query) + (rest ? `?${rest}` : ''), namespace };
}
