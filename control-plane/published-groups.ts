/**
 * The config the control plane serves now: its published JSON, ETag and parsed form, and the
 * long-poll waiters to wake when it changes. The entry (Node or serverless) feeds it with
 * `publish()`; the routes read it. Web-standard only.
 */
import { hashPassword, toBase64 } from '../shared/auth/password-hash.js';
import type { GroupsConfig } from '../shared/config/groups.js';
import { ReverstError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { wireGroups } from './wire.js';

export interface Snapshot {
  /** The JSON `GET /v1/groups` answers with. */
  readonly body: string;
  /** Strong ETag, quoted: base64url SHA-256 of the body. */
  readonly etag: string;
  readonly config: GroupsConfig;
  /** Where it came from, for /readyz and logs. */
  readonly source: string;
  readonly publishedAt: Date;
}

export interface Readiness {
  ready: boolean;
  detail: string;
}

export interface PublishedGroupsOptions {
  /**
   * Keys the salts of published password hashes. Salts must be the same on every replica and
   * across restarts (or each poll would look like a credential change and ETags would differ),
   * and differ between deployments (so hashes cannot be precomputed for common group and user
   * names): the API token is both, and every control plane has one.
   */
  saltKey: string;
  logger?: Logger | undefined;
}

export class PublishedGroups {
  readonly #saltKey: Promise<CryptoKey>;
  readonly #log: Logger;
  #current: Snapshot | undefined;
  #lastError: Error | undefined;
  #closed = false;
  #waiting = 0;
  /** Resolved (and replaced) on each change; every waiter awaits the same one. */
  #next = deferred();
  /** Published password hashes by their input, kept for the passwords of the current config. */
  #hashes = new Map<string, Promise<string>>();
  /** Publishes run one after the other, so an older config never overwrites a newer one. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: PublishedGroupsOptions) {
    if (!options.saltKey) throw new ReverstError('ERR_INVALID_OPTION', 'PublishedGroups needs a saltKey (the API token)');
    this.#saltKey = crypto.subtle.importKey('raw', new TextEncoder().encode(options.saltKey), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    this.#log = options.logger ?? silentLogger;
  }

  get current(): Snapshot | undefined {
    return this.#current;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Long-polls waiting now. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Makes `config` the one served, waking waiters if its published form changed. */
  publish(config: GroupsConfig, source: string): Promise<Snapshot> {
    const run = this.#queue.then(() => this.#publish(config, source));
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Records why the source failed (shown in /readyz; the current config stays in force), or with undefined that it works again. */
  reportSource(error: Error | undefined): void {
    this.#lastError = error;
  }

  readiness(): Readiness {
    if (this.#closed) return { ready: false, detail: 'shutting down' };
    if (!this.#current) return { ready: false, detail: `no tunnel groups loaded yet${this.#lastError ? `: ${this.#lastError.message}` : ''}` };
    const { source, config } = this.#current;
    const serving = `serving ${config.groups.size} group(s) from ${source}`;
    return { ready: true, detail: this.#lastError ? `${serving}; the last reload failed: ${this.#lastError.message}` : serving };
  }

  /**
   * Resolves with the current snapshot once its ETag differs from `etag`, or with undefined
   * when `ms` pass, `signal` aborts or this closes first.
   */
  async changed(etag: string, ms: number, signal?: AbortSignal): Promise<Snapshot | undefined> {
    if (this.#current && this.#current.etag !== etag) return this.#current;
    if (this.#closed || signal?.aborted) return undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    this.#waiting++;
    const giveUp = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
      onAbort = resolve;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
    try {
      for (;;) {
        const next = this.#next.promise;
        const woke = await Promise.race([next.then(() => true), giveUp.then(() => false)]);
        if (!woke || this.#closed) return undefined;
        if (this.#current && this.#current.etag !== etag) return this.#current;
      }
    } finally {
      this.#waiting--;
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Wakes every waiter (they answer "not modified") and refuses new waits: for a drain. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  async #publish(config: GroupsConfig, source: string): Promise<Snapshot> {
    const used = new Map<string, Promise<string>>();
    const body = await wireGroups(config, (group, username, password) => {
      const key = JSON.stringify([group, username, password]);
      const hash = this.#hashes.get(key) ?? used.get(key) ?? this.#hashPassword(group, username, password);
      used.set(key, hash);
      return hash;
    });
    this.#hashes = used;
    this.#lastError = undefined;
    const etag = `"${await sha256Base64Url(body)}"`;
    const previous = this.#current;
    if (previous?.etag === etag) return previous;
    const snapshot: Snapshot = { body, etag, config, source, publishedAt: new Date() };
    this.#current = snapshot;
    this.#log.info(previous ? 'tunnel groups changed' : 'tunnel groups loaded', {
      source,
      groups: [...config.groups.keys()],
      etag,
      ...(previous ? { previous: previous.etag } : {}),
    });
    this.#wake();
    return snapshot;
  }

  async #hashPassword(group: string, username: string, password: string): Promise<string> {
    const input = new TextEncoder().encode(`reverst basic-auth salt v1\0${group}\0${username}`);
    const mac = new Uint8Array(await crypto.subtle.sign('HMAC', await this.#saltKey, input));
    return hashPassword(password, mac.slice(0, 16));
  }

  #wake(): void {
    const woken = this.#next;
    this.#next = deferred();
    woken.resolve();
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function sha256Base64Url(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return toBase64(digest).replace(/\+/g, '-').replace(/\//g, '_');
}
