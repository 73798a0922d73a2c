import type { NodeInfo } from './index.js';
import type { NodeRecord } from './store.js';

interface Entry {
  info: NodeInfo;
  groups: ReadonlySet<string>;
}

/** How long a group's release is remembered: far longer than any hand-over takes. */
export const RELEASE_MEMORY_MS = 60_000;

/**
 * Other nodes and the groups each holds, indexed by group for the request path. Fed by
 * change events one node at a time and by full listings (`replace`); the two may interleave.
 */
export class RouteTable {
  readonly #nodes = new Map<string, Entry>();
  readonly #byGroup = new Map<string, Map<string, NodeInfo>>();
  /** When each group lost its last holder here, while it has none (see `releasedAt`). */
  readonly #released = new Map<string, number>();
  readonly #now: () => number;
  // Nodes that change events touched while a listing was being read (see `beginListing`).
  #touchedDuringListing: Set<string> | undefined;

  /** `now` is the clock `releasedAt` reads (milliseconds; performance.now() by default). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  nodesFor(group: string): NodeInfo[] {
    const holders = this.#byGroup.get(group);
    return holders ? [...holders.values()] : [];
  }

  /**
   * When `group` lost its last holder in this table (by the clock given to the constructor):
   * a tunnel that is moving between nodes leaves its group without a holder for a moment.
   * Undefined while some node holds it, if none ever did, or once the release is over
   * RELEASE_MEMORY_MS old.
   */
  releasedAt(group: string): number | undefined {
    const at = this.#byGroup.has(group) ? undefined : this.#released.get(group);
    return at !== undefined && this.#now() - at <= RELEASE_MEMORY_MS ? at : undefined;
  }

  nodes(): NodeInfo[] {
    return [...this.#nodes.values()].map((entry) => entry.info);
  }

  get size(): number {
    return this.#nodes.size;
  }

  /** One node's change event (`undefined`: it left). True if the table changed. */
  apply(id: string, record: NodeRecord | undefined): boolean {
    this.#touchedDuringListing?.add(id);
    return this.#set(id, record);
  }

  /**
   * Call before reading a full listing. An event that arrives while the listing is read may
   * be newer than what the listing saw, so `replace` keeps what such events wrote.
   */
  beginListing(): void {
    this.#touchedDuringListing = new Set();
  }

  /** Makes the table match `records`, except for nodes events touched since `beginListing`. */
  replace(records: ReadonlyMap<string, NodeRecord>): boolean {
    const touched = this.#touchedDuringListing ?? new Set<string>();
    this.#touchedDuringListing = undefined;
    let changed = false;
    for (const id of [...this.#nodes.keys()]) {
      if (!records.has(id) && !touched.has(id)) changed = this.#set(id, undefined) || changed;
    }
    for (const [id, record] of records) {
      if (!touched.has(id)) changed = this.#set(id, record) || changed;
    }
    return changed;
  }

  #set(id: string, record: NodeRecord | undefined): boolean {
    const current = this.#nodes.get(id);
    if (record === undefined) {
      if (!current) return false;
      this.#unindex(id, current.groups);
      this.#nodes.delete(id);
      return true;
    }
    const groups = new Set(record.groups);
    const moved = current !== undefined && current.info.address !== record.address;
    if (current && !moved && sameSet(current.groups, groups)) return false;
    // Only the groups this node dropped are released: one group more or less on a node
    // with thousands costs that one group, not a release and a re-index of all of them.
    if (current)
      this.#unindex(
        id,
        [...current.groups].filter((group) => !groups.has(group)),
      );
    const info: NodeInfo = moved || !current ? Object.freeze({ id, address: record.address }) : current.info;
    this.#nodes.set(id, { info, groups });
    for (const group of groups) {
      if (!moved && current?.groups.has(group)) continue;
      let holders = this.#byGroup.get(group);
      if (!holders) this.#byGroup.set(group, (holders = new Map()));
      holders.set(id, info);
      this.#released.delete(group);
    }
    return true;
  }

  #unindex(id: string, groups: Iterable<string>): void {
    const now = this.#now();
    for (const group of groups) {
      const holders = this.#byGroup.get(group);
      holders?.delete(id);
      if (holders?.size !== 0) continue;
      this.#byGroup.delete(group);
      // Deleted first so the map stays in release order, oldest first (see #forgetOldReleases).
      this.#released.delete(group);
      this.#released.set(group, now);
    }
    this.#forgetOldReleases(now);
  }

  // Groups that are gone for good (removed from the config) would otherwise stay here forever.
  // The map is in release order, so this stops at the first release still remembered.
  #forgetOldReleases(now: number): void {
    for (const [group, at] of this.#released) {
      if (now - at <= RELEASE_MEMORY_MS) break;
      this.#released.delete(group);
    }
  }
}

export function sameSet<T>(a: ReadonlySet<T>, b: ReadonlySet<T>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}
