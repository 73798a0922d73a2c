/**
 * NATS backend: a JetStream key-value bucket `<namespace>-membership` with max age = TTL.
 * Each node has one key, `node.<id in base64url>` (KV keys allow only `[-/_=.a-zA-Z0-9]`),
 * holding its record; a heartbeat puts it again, since a KV entry's age restarts with each
 * put. A watch on `node.>` delivers other nodes' writes and leaves within milliseconds; an
 * entry that ages out sends no event, so the periodic resync (a listing) notices.
 *
 * Why KV + watch rather than plain subjects with periodic announcements: the bucket *is* the
 * current membership, so a node that joins or reconnects reads it at once instead of waiting
 * an announcement period to hear from everyone; the server expires dead nodes for us (max
 * age) instead of each node timing out peers by itself; and the watch is the same change
 * stream announcements would give, with explicit deletes when a node leaves.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, Events, KvWatchInclude, type ConnectionOptions, type KV, type KvEntry, type NatsConnection, type QueuedIterator, type Status } from 'nats';
import type { Logger } from '../../shared/log.js';
import { redactUrl } from '../../shared/redact.js';
import { decodeRecord, encodeRecord, type MembershipStore, type NodeRecord, type StoreListener } from './store.js';

/** A JetStream request slower than this fails, so the sync loop retries instead of hanging. */
const REQUEST_TIMEOUT_MS = 2_000;
/** Longest a full listing may take (it is a stream of messages, not one request). */
const LIST_TIMEOUT_MS = 5_000;
/** How long the first connection may take; a server that does not greet us by then is unreachable. */
const CONNECT_TIMEOUT_MS = 5_000;
/** nats.js retries at a fixed pace: a restarted server is found within a second. */
const RECONNECT_WAIT_MS = 1_000;
/** After reconnecting, JetStream may need a moment to come back before the bucket answers. */
const ATTACH_RETRY_MS = 500;
/**
 * A connection whose socket stays open but whose server is gone (a network partition) is
 * noticed after two unanswered pings; the nats.js default (2 minutes) is far too slow.
 */
const PING_INTERVAL_MS = 5_000;

const KEY_PREFIX = 'node.';

export class NatsStore implements MembershipStore {
  readonly name: string;
  readonly #connectOptions: ConnectionOptions;
  readonly #bucketName: string;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #closing = new AbortController();
  // Background work (connect loop, status and watch readers), awaited by close().
  readonly #tasks = new Set<Promise<void>>();
  #listener: StoreListener | undefined;
  #nc: NatsConnection | undefined;
  #kv: KV | undefined;
  #watch: QueuedIterator<KvEntry> | undefined;
  #statuses: AsyncIterable<Status> | undefined;
  // Bumped whenever the bucket binding is dropped, so that a stale attach or watch gives up.
  #epoch = 0;
  #ttlChecked = false;

  constructor(url: string, namespace: string, ttlMs: number, logger: Logger) {
    this.name = redactUrl(url);
    this.#connectOptions = connectionOptions(url);
    this.#bucketName = `${namespace}-membership`;
    this.#ttlMs = ttlMs;
    this.#logger = logger.child({ store: this.name });
  }

  open(listener: StoreListener): void {
    this.#listener = listener;
    this.#track(this.#connect());
  }

  async put(id: string, record: NodeRecord): Promise<void> {
    await this.#bucket().put(keyFor(id), encodeRecord(record));
  }

  // Putting again is what restarts the entry's age.
  async refresh(id: string, record: NodeRecord): Promise<boolean> {
    await this.put(id, record);
    return true;
  }

  async remove(id: string): Promise<void> {
    await this.#bucket().delete(keyFor(id));
  }

  async list(): Promise<Map<string, NodeRecord>> {
    const kv = this.#bucket();
    const keys: string[] = [];
    const listing = await kv.keys(`${KEY_PREFIX}>`);
    // Unlike requests, a listing has no timeout of its own: one cut short by a dropped
    // connection must not hold up the sync loop (heartbeats wait behind it).
    const deadline = setTimeout(() => listing.stop(new Error(`listing the bucket took over ${LIST_TIMEOUT_MS} ms`)), LIST_TIMEOUT_MS);
    try {
      for await (const key of listing) keys.push(key);
    } finally {
      clearTimeout(deadline);
    }
    const entries = await Promise.all(keys.map((key) => kv.get(key)));
    const records = new Map<string, NodeRecord>();
    for (const entry of entries) {
      // null or a delete marker: the key aged out or was deleted since the listing.
      if (entry?.operation !== 'PUT') continue;
      const record = this.#decode(entry);
      if (record) records.set(idFor(entry.key), record);
    }
    return records;
  }

  async close(): Promise<void> {
    this.#closing.abort();
    this.#listener = undefined;
    this.#detach();
    // nats.js 2.x never ends status() iterators on close (nats-io/nats.js#134), so ours would
    // hang close() forever. It is a QueuedIterator at run time, though typed as AsyncIterable.
    (this.#statuses as Partial<QueuedIterator<Status>> | undefined)?.stop?.();
    if (this.#nc && !this.#nc.isClosed()) await this.#nc.close();
    // Tasks end on their own once the connection is closed or the abort is seen.
    while (this.#tasks.size > 0) await Promise.all(this.#tasks);
  }

  get #closed(): boolean {
    return this.#closing.signal.aborted;
  }

  async #connect(): Promise<void> {
    while (!this.#closed) {
      try {
        this.#nc = await connect(this.#connectOptions);
        break;
      } catch (err) {
        this.#down(err);
        await this.#pause(RECONNECT_WAIT_MS);
      }
    }
    const nc = this.#nc;
    if (!nc) return;
    if (this.#closed) {
      await nc.close();
      return;
    }
    this.#statuses = nc.status();
    this.#track(this.#followStatus(this.#statuses));
    await this.#attach();
  }

  // From here on nats.js reconnects by itself, forever; we rebind the bucket each time.
  async #followStatus(statuses: AsyncIterable<Status>): Promise<void> {
    for await (const status of statuses) {
      if (status.type === Events.Disconnect) {
        this.#detach();
        this.#down(`disconnected from ${status.data}`);
      } else if (status.type === Events.Reconnect) {
        this.#track(this.#attach());
      }
    }
  }

  /** Binds the bucket (creating it if missing) and starts the watch, retrying until it works. */
  async #attach(): Promise<void> {
    const epoch = ++this.#epoch;
    while (!this.#closed && epoch === this.#epoch) {
      try {
        const js = this.#nc!.jetstream({ timeout: REQUEST_TIMEOUT_MS });
        const kv = await js.views.kv(this.#bucketName, { ttl: this.#ttlMs, history: 1, timeout: REQUEST_TIMEOUT_MS });
        if (!this.#ttlChecked) await this.#checkTtl(kv);
        const watch = await kv.watch({ key: `${KEY_PREFIX}>`, include: KvWatchInclude.UpdatesOnly });
        if (this.#closed || epoch !== this.#epoch) {
          watch.stop();
          return;
        }
        this.#kv = kv;
        this.#watch = watch;
        this.#track(this.#consume(watch, epoch));
        this.#listener?.onConnected();
        return;
      } catch (err) {
        this.#down(err);
        await this.#pause(ATTACH_RETRY_MS);
      }
    }
  }

  async #consume(watch: QueuedIterator<KvEntry>, epoch: number): Promise<void> {
    try {
      for await (const entry of watch) {
        const id = idFor(entry.key);
        if (entry.operation !== 'PUT') this.#listener?.onRecord(id, undefined);
        else {
          const record = this.#decode(entry);
          if (record) this.#listener?.onRecord(id, record);
        }
      }
    } catch (err) {
      this.#logger.debug('membership watch failed', { err });
    }
    // Ended without being replaced (its consumer vanished, e.g. the stream was recreated): watch
    // again, after a pause so that a watch that keeps ending cannot become a busy loop.
    if (this.#closed || epoch !== this.#epoch) return;
    this.#detach();
    this.#down('the bucket watch ended');
    await this.#pause(ATTACH_RETRY_MS);
    if (!this.#closed) await this.#attach();
  }

  #detach(): void {
    this.#epoch++;
    this.#kv = undefined;
    this.#watch?.stop();
    this.#watch = undefined;
  }

  // The bucket keeps the max age it was created with; a different TTL here is a misconfiguration.
  async #checkTtl(kv: KV): Promise<void> {
    const { ttl } = await kv.status();
    this.#ttlChecked = true;
    if (ttl !== this.#ttlMs) {
      this.#logger.warn(
        `bucket ${this.#bucketName} expires entries after ${ttl} ms, not the configured ttlMs ${this.#ttlMs}, ` +
          `so dead nodes are dropped after ${ttl} ms: give every node the same ttlMs, ` +
          `or delete the bucket (nats kv del ${this.#bucketName}) to recreate it`,
      );
    }
  }

  #down(reason: unknown): void {
    this.#listener?.onDisconnected(reason instanceof Error ? reason.message : String(reason));
  }

  #decode(entry: KvEntry): NodeRecord | undefined {
    const record = decodeRecord(entry.string());
    if (!record) this.#logger.warn('ignoring a malformed node record', { key: entry.key });
    return record;
  }

  #bucket(): KV {
    if (!this.#kv) throw new Error(`not connected to ${this.name}`);
    return this.#kv;
  }

  async #pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.#closing.signal }).catch(() => {});
  }

  #track(task: Promise<void>): void {
    const tracked = task.catch((err: unknown) => this.#logger.error('membership background task failed', { err })).finally(() => this.#tasks.delete(tracked));
    this.#tasks.add(tracked);
  }
}

/** nats.js takes credentials as options, not in the URL: `nats://user:pass@host` or `nats://token@host`. */
function connectionOptions(url: string): ConnectionOptions {
  const parsed = new URL(url);
  const user = decodeURIComponent(parsed.username);
  const pass = decodeURIComponent(parsed.password);
  const auth = user && pass ? { user, pass } : user ? { token: user } : {};
  return {
    servers: parsed.host,
    ...auth,
    name: 'reverst-membership',
    timeout: CONNECT_TIMEOUT_MS,
    maxReconnectAttempts: -1,
    reconnectTimeWait: RECONNECT_WAIT_MS,
    pingInterval: PING_INTERVAL_MS,
    maxPingOut: 2,
  };
}

const keyFor = (id: string): string => KEY_PREFIX + Buffer.from(id).toString('base64url');
const idFor = (key: string): string => Buffer.from(key.slice(KEY_PREFIX.length), 'base64url').toString();
