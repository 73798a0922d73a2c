/**
 * What a membership backend must do: keep one record per node with a TTL, tell about
 * other nodes' changes, and list everything. The route table, heartbeats, resync, retries
 * and health are shared (store-membership.ts), so each backend stays a thin adapter.
 *
 * A node's groups live inside its record rather than in per-group keys: one key per node
 * means a heartbeat refreshes one thing, a dead node's groups expire with it in one step
 * (never a group pointing at a node that is already gone), and a change is one atomic write.
 * The price is that a change rewrites the node's whole group list, a few kilobytes at most.
 */
export interface NodeRecord {
  /** Internal hop `host:port`. */
  address: string;
  groups: readonly string[];
}

export interface StoreListener {
  /** Another node's record was written, or deleted (`undefined`) when it left. */
  onRecord(id: string, record: NodeRecord | undefined): void;
  /** The store is usable (again): our record may be gone and change events may have been missed. */
  onConnected(): void;
  /** The store cannot be used right now; `reason` says why, for health and logs. */
  onDisconnected(reason: string): void;
}

export interface MembershipStore {
  /** The store's URL without credentials, for logs and health. */
  readonly name: string;
  /** Connects in the background, forever, reporting through `listener`; never throws. */
  open(listener: StoreListener): void;
  /** Writes our record with a TTL and announces it. */
  put(id: string, record: NodeRecord, ttlMs: number): Promise<void>;
  /** Extends our record's TTL; false if it no longer exists (the caller then writes it again). */
  refresh(id: string, record: NodeRecord, ttlMs: number): Promise<boolean>;
  /** Deletes our record and announces it. */
  remove(id: string): Promise<void>;
  /** Every live record, by node id. */
  list(): Promise<Map<string, NodeRecord>>;
  /** Stops reconnecting and releases every connection and timer. */
  close(): Promise<void>;
}

export function encodeRecord(record: NodeRecord): string {
  return JSON.stringify({ address: record.address, groups: record.groups });
}

/** The record in `text`, or undefined if it is not one (written by something else). */
export function decodeRecord(text: string): NodeRecord | undefined {
  try {
    return asRecord(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/** `value` as a record, or undefined if it is not one. */
export function asRecord(value: unknown): NodeRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { address, groups } = value as Record<string, unknown>;
  if (typeof address !== 'string' || !Array.isArray(groups) || !groups.every((g) => typeof g === 'string')) return undefined;
  return { address, groups: groups as string[] };
}
