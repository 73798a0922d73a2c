/**
 * Redis backend (ioredis). Under the prefix `<namespace>:`:
 * - `node:<id>`: the node's record (JSON: address and groups; store.ts says why groups live in
 *   it rather than in a set per group), with a PX TTL that heartbeats extend (PEXPIRE);
 * - channel `changes`: `{"id", "record"}` after every write, `"record": null` when a node leaves.
 * A dead node's key expires without an event; the periodic resync (SCAN) notices.
 * Two connections, as Redis wants: commands, and a subscriber for the channel.
 */
import { once } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../../shared/log.js';
import { redactUrl } from '../../shared/redact.js';
import { asRecord, decodeRecord, encodeRecord, type MembershipStore, type NodeRecord, type StoreListener } from './store.js';

/**
 * A reply slower than this means Redis is stuck or the connection is dead: drop the socket
 * and reconnect rather than leave a heartbeat waiting while our TTL runs out.
 */
const REPLY_TIMEOUT_MS = 3_000;
/** Reconnect quickly at first (a restart is usually brief), then every 2 s at most, forever. */
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2_000;
/** Keys per SCAN step and per MGET: small enough never to block Redis noticeably. */
const BATCH = 500;

const CLIENT_OPTIONS: RedisOptions = {
  // Never queue a command while disconnected, never resend one after a reconnect: the sync
  // loop decides what to retry, in order, and a caller must never wait for Redis to come back.
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  // We subscribe again ourselves on every 'ready', so we know when the subscription is live.
  autoResubscribe: false,
  socketTimeout: REPLY_TIMEOUT_MS,
  connectTimeout: REPLY_TIMEOUT_MS,
  retryStrategy: (attempt) => Math.min(RECONNECT_MIN_MS * 2 ** (attempt - 1), RECONNECT_MAX_MS) + Math.random() * RECONNECT_MIN_MS,
};

// ioredis's constructor overloads reject a RedisOptions value under exactOptionalPropertyTypes; this is the (url, options) one.
const RedisWithUrl = Redis as new (url: string, options: RedisOptions) => Redis;

export class RedisStore implements MembershipStore {
  readonly name: string;
  readonly #url: string;
  readonly #prefix: string;
  readonly #channel: string;
  readonly #logger: Logger;
  #commands: Redis | undefined;
  #subscriber: Redis | undefined;
  #listener: StoreListener | undefined;
  #commandsReady = false;
  #subscribed = false;
  #up = false;
  #lastError = '';

  constructor(url: string, namespace: string, logger: Logger) {
    this.#url = url;
    this.name = redactUrl(url);
    this.#prefix = `${namespace}:`;
    this.#channel = `${namespace}:changes`;
    this.#logger = logger.child({ store: this.name });
  }

  open(listener: StoreListener): void {
    this.#listener = listener;
    const commands = (this.#commands = this.#connect('commands'));
    commands.on('ready', () => {
      this.#commandsReady = true;
      this.#connectedIfBothReady();
    });
    commands.on('close', () => {
      this.#commandsReady = false;
      this.#disconnected();
    });

    const subscriber = (this.#subscriber = this.#connect('subscriber'));
    subscriber.on('ready', () => {
      subscriber.subscribe(this.#channel).then(
        () => {
          this.#subscribed = true;
          this.#connectedIfBothReady();
        },
        (err: Error) => {
          // Stays degraded until the next connection; an ACL denial says so in health().
          this.#lastError = `SUBSCRIBE ${this.#channel} failed: ${err.message}`;
          this.#logger.warn('subscribing to the membership channel failed', { err });
          this.#disconnected();
        },
      );
    });
    subscriber.on('close', () => {
      this.#subscribed = false;
      this.#disconnected();
    });
    subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.#channel) this.#onMessage(message);
    });
  }

  async put(id: string, record: NodeRecord, ttlMs: number): Promise<void> {
    const results = await this.#client()
      .multi()
      .set(this.#key(id), encodeRecord(record), 'PX', ttlMs)
      .publish(this.#channel, JSON.stringify({ id, record }))
      .exec();
    throwFirstError(results);
  }

  async refresh(id: string, _record: NodeRecord, ttlMs: number): Promise<boolean> {
    return (await this.#client().pexpire(this.#key(id), ttlMs)) === 1;
  }

  async remove(id: string): Promise<void> {
    const results = await this.#client()
      .multi()
      .del(this.#key(id))
      .publish(this.#channel, JSON.stringify({ id, record: null }))
      .exec();
    throwFirstError(results);
  }

  async list(): Promise<Map<string, NodeRecord>> {
    const client = this.#client();
    // SCAN may return a key more than once; never KEYS, which blocks Redis on a big keyspace.
    const keys = new Set<string>();
    // The namespace has no glob characters (see options.ts), so the prefix needs no escaping.
    const pattern = `${this.#prefix}node:*`;
    let cursor = '0';
    do {
      const [next, batch] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', BATCH);
      for (const key of batch) keys.add(key);
      cursor = next;
    } while (cursor !== '0');

    const records = new Map<string, NodeRecord>();
    const all = [...keys];
    for (let i = 0; i < all.length; i += BATCH) {
      const batch = all.slice(i, i + BATCH);
      const values = await client.mget(batch);
      values.forEach((value, j) => {
        const record = value === null ? undefined : this.#decode(value); // null: expired since the SCAN
        if (record) records.set(batch[j]!.slice(this.#prefix.length + 'node:'.length), record);
      });
    }
    return records;
  }

  async close(): Promise<void> {
    this.#listener = undefined;
    await Promise.all([this.#commands, this.#subscriber].map((client) => client && disconnect(client)));
  }

  #connect(role: string): Redis {
    const client = new RedisWithUrl(this.#url, { ...CLIENT_OPTIONS, connectionName: `reverst-membership-${role}` });
    // Without an 'error' listener ioredis prints every failed reconnect to the console.
    client.on('error', (err: Error) => {
      this.#lastError = err.message;
      this.#logger.debug('redis connection error', { role, err });
    });
    return client;
  }

  // Usable only once both connections are: without the subscription we would miss changes.
  #connectedIfBothReady(): void {
    if (this.#up || !this.#commandsReady || !this.#subscribed) return;
    this.#up = true;
    this.#listener?.onConnected();
  }

  // Every failed (re)connect attempt ends here, so health keeps the latest reason.
  #disconnected(): void {
    this.#up = false;
    this.#listener?.onDisconnected(this.#lastError || 'connection closed');
  }

  #onMessage(message: string): void {
    let change: { id?: unknown; record?: unknown };
    try {
      change = JSON.parse(message);
    } catch {
      change = {};
    }
    const record = change.record === null ? undefined : asRecord(change.record);
    if (typeof change.id !== 'string' || (change.record !== null && !record)) {
      this.#logger.warn('ignoring a malformed message on the membership channel', { channel: this.#channel, message });
      return;
    }
    this.#listener?.onRecord(change.id, record);
  }

  #decode(value: string): NodeRecord | undefined {
    const record = decodeRecord(value);
    if (!record) this.#logger.warn('ignoring a malformed node record', { value });
    return record;
  }

  #key(id: string): string {
    return `${this.#prefix}node:${id}`;
  }

  #client(): Redis {
    if (!this.#commands) throw new Error(`membership store ${this.name} is not open`);
    return this.#commands;
  }
}

/** MULTI/EXEC reports each command's error in its result instead of rejecting. */
function throwFirstError(results: [error: Error | null, result: unknown][] | null): void {
  if (!results) throw new Error('transaction aborted');
  for (const [error] of results) if (error) throw error;
}

/** Closes at once (no reconnect) and, if a socket is open, waits until it is gone. */
async function disconnect(client: Redis): Promise<void> {
  const socketOpen = client.status === 'connect' || client.status === 'ready';
  // An 'error' while closing would reject once(); the socket is going away all the same.
  const ended = socketOpen ? once(client, 'end').catch(() => {}) : undefined;
  client.disconnect();
  await ended;
}
