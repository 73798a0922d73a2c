import { ReverstError } from '../../shared/errors.js';
import { silentLogger, type Logger } from '../../shared/log.js';

/**
 * How long a node's record lives without a heartbeat: a crashed node stops receiving
 * forwarded requests within this (plus one resync). Three heartbeats fit in it, so a
 * live node survives two lost heartbeats or a multi-second GC pause or store hiccup.
 */
export const DEFAULT_TTL_MS = 6_000;
/** A third of the TTL (see above); never more than a third of a smaller `ttlMs`. */
export const DEFAULT_HEARTBEAT_MS = 2_000;
/**
 * Change events are at-most-once (Redis pub/sub drops them during a disconnect) and TTL
 * expiry sends none, so every node re-reads the whole store this often: it bounds how
 * long a missed event or an expired node can linger. One listing per node every 5 s is cheap.
 */
export const DEFAULT_RESYNC_MS = 5_000;
/**
 * Clusters sharing one store keep apart by namespace: Redis keys start `<namespace>:`,
 * the NATS bucket is `<namespace>-membership`.
 */
export const DEFAULT_NAMESPACE = 'reverst';

export interface MembershipOptions {
  /** Node record time-to-live (default {@link DEFAULT_TTL_MS}). */
  ttlMs?: number | undefined;
  /** How often a node refreshes its record (default {@link DEFAULT_HEARTBEAT_MS}); must be below `ttlMs`. */
  heartbeatMs?: number | undefined;
  /** How often a node re-reads the whole store (default {@link DEFAULT_RESYNC_MS}, or `ttlMs` if shorter). */
  resyncMs?: number | undefined;
  /** Letters, digits, `-` and `_` (default {@link DEFAULT_NAMESPACE}). */
  namespace?: string | undefined;
  logger?: Logger | undefined;
}

export type ResolvedMembershipOptions = { [K in keyof MembershipOptions]-?: NonNullable<MembershipOptions[K]> };

// Valid in a Redis key prefix and in a NATS bucket name alike.
const NAMESPACE_RE = /^[A-Za-z0-9_-]+$/;

const invalid = (message: string) => new ReverstError('ERR_INVALID_OPTION', message);

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw invalid(`membership option ${name} must be a positive whole number of milliseconds, got ${value}`);
  }
  return value;
}

/** `namespace` if it can name a Redis key prefix and a NATS bucket alike; throws otherwise. */
export function checkNamespace(namespace: string): string {
  if (!NAMESPACE_RE.test(namespace)) {
    throw invalid(`membership namespace ${JSON.stringify(namespace)} may only contain letters, digits, "-" and "_"`);
  }
  return namespace;
}

/** Applies defaults and rejects values (or combinations) that cannot work. */
export function parseMembershipOptions(options: MembershipOptions = {}): ResolvedMembershipOptions {
  const ttlMs = positiveInteger('ttlMs', options.ttlMs, DEFAULT_TTL_MS);
  const heartbeatMs = positiveInteger('heartbeatMs', options.heartbeatMs, Math.max(1, Math.min(DEFAULT_HEARTBEAT_MS, Math.floor(ttlMs / 3))));
  if (heartbeatMs >= ttlMs) {
    throw invalid(
      `membership heartbeatMs (${heartbeatMs}) must be shorter than ttlMs (${ttlMs}), ` +
        `or a live node's record expires between heartbeats: lower heartbeatMs or raise ttlMs`,
    );
  }
  // A resync also drops expired nodes: with a TTL below the default period, it runs once per TTL.
  const resyncMs = positiveInteger('resyncMs', options.resyncMs, Math.min(DEFAULT_RESYNC_MS, ttlMs));
  const namespace = checkNamespace(options.namespace ?? DEFAULT_NAMESPACE);
  return { ttlMs, heartbeatMs, resyncMs, namespace, logger: options.logger ?? silentLogger };
}
