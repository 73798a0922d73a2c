import type { MembershipStore, NodeRecord, StoreListener } from './store.js';

/**
 * A store whose backend module is loaded on first use. ioredis and nats together add about
 * 35 MB to a node's resident memory just by being imported; a standalone node never needs them.
 */
export class LazyStore implements MembershipStore {
  readonly name: string;
  readonly #store: Promise<MembershipStore>;

  constructor(name: string, load: () => Promise<MembershipStore>) {
    this.name = name;
    this.#store = load();
    // Reported through open()'s listener and each call; never as an unhandled rejection.
    this.#store.catch(() => {});
  }

  open(listener: StoreListener): void {
    this.#store.then(
      (store) => store.open(listener),
      (err: unknown) => listener.onDisconnected(`cannot load the store's client: ${(err as Error).message}`),
    );
  }

  async put(id: string, record: NodeRecord, ttlMs: number): Promise<void> {
    return (await this.#store).put(id, record, ttlMs);
  }

  async refresh(id: string, record: NodeRecord, ttlMs: number): Promise<boolean> {
    return (await this.#store).refresh(id, record, ttlMs);
  }

  async remove(id: string): Promise<void> {
    return (await this.#store).remove(id);
  }

  async list(): Promise<Map<string, NodeRecord>> {
    return (await this.#store).list();
  }

  async close(): Promise<void> {
    return (await this.#store).close();
  }
}
