import type { MembershipStore, NodeRecord, StoreListener } from './store.js';

interface StoredRecord {
  record: NodeRecord;
  expiresAt: number;
}

/**
 * Records and listeners in this process's memory, with the same TTL semantics as the real
 * stores: a record lives until it expires or is removed, and expiry sends no event.
 */
class SharedRecords {
  readonly listeners = new Set<StoreListener>();
  readonly #records = new Map<string, StoredRecord>();

  put(id: string, record: NodeRecord, ttlMs: number): void {
    this.#records.set(id, { record, expiresAt: Date.now() + ttlMs });
    this.#announce(id, record);
  }

  refresh(id: string, ttlMs: number): boolean {
    const stored = this.#live(id);
    if (stored) stored.expiresAt = Date.now() + ttlMs;
    return stored !== undefined;
  }

  remove(id: string): void {
    if (this.#records.delete(id)) this.#announce(id, undefined);
  }

  list(): Map<string, NodeRecord> {
    const live = new Map<string, NodeRecord>();
    for (const id of [...this.#records.keys()]) {
      const stored = this.#live(id);
      if (stored) live.set(id, stored.record);
    }
    return live;
  }

  #live(id: string): StoredRecord | undefined {
    const stored = this.#records.get(id);
    if (stored && stored.expiresAt <= Date.now()) this.#records.delete(id);
    return this.#records.get(id);
  }

  // Delivered on a later microtask, as a real store's events arrive after the write returns.
  #announce(id: string, record: NodeRecord | undefined): void {
    for (const listener of this.listeners) {
      queueMicrotask(() => {
        if (this.listeners.has(listener)) listener.onRecord(id, record);
      });
    }
  }
}

// Named stores live while some Membership uses them, like a server outliving no client.
const named = new Map<string, { records: SharedRecords; users: number }>();

/** `memory` (private to one Membership) or `memory://<name>` (shared by name in this process). */
export class MemoryStore implements MembershipStore {
  readonly name: string;
  readonly #sharedName: string;
  #records: SharedRecords | undefined;
  #listener: StoreListener | undefined;

  /** A shared store keeps namespaces apart, as the real stores do. */
  constructor(sharedName: string, namespace: string) {
    this.#sharedName = sharedName ? `${sharedName}\0${namespace}` : '';
    this.name = sharedName ? `memory://${sharedName}` : 'memory';
  }

  open(listener: StoreListener): void {
    this.#records = this.#acquire();
    this.#listener = listener;
    this.#records.listeners.add(listener);
    listener.onConnected();
  }

  async put(id: string, record: NodeRecord, ttlMs: number): Promise<void> {
    this.#opened().put(id, record, ttlMs);
  }

  async refresh(id: string, _record: NodeRecord, ttlMs: number): Promise<boolean> {
    return this.#opened().refresh(id, ttlMs);
  }

  async remove(id: string): Promise<void> {
    this.#opened().remove(id);
  }

  async list(): Promise<Map<string, NodeRecord>> {
    return this.#opened().list();
  }

  async close(): Promise<void> {
    if (!this.#records) return;
    this.#records.listeners.delete(this.#listener!);
    this.#records = undefined;
    const entry = named.get(this.#sharedName);
    if (entry && --entry.users === 0) named.delete(this.#sharedName);
  }

  #acquire(): SharedRecords {
    if (!this.#sharedName) return new SharedRecords();
    let entry = named.get(this.#sharedName);
    if (!entry) named.set(this.#sharedName, (entry = { records: new SharedRecords(), users: 0 }));
    entry.users++;
    return entry.records;
  }

  #opened(): SharedRecords {
    if (!this.#records) throw new Error(`membership store ${this.name} is not open`);
    return this.#records;
  }
}
