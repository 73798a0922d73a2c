/**
 * `-g http(s)://cp:8080/v1/groups`: tunnel groups from a control plane, followed by long-polling
 * (`If-None-Match` + `?wait=`), so a change arrives as soon as it is published. When the control
 * plane is down the last config stays in force and the source keeps retrying with backoff; with a
 * cache file, a node restarted meanwhile starts from the last config it had.
 */
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Backoff } from '../backoff.js';
import { ConfigError, ReverstError, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { redactUrl } from '../redact.js';
import { parseGroups, type GroupsConfig } from './groups.js';
import type { GroupsSource, GroupsSourceStatus } from './source.js';
import { fetchFailure } from '../fetch-failure.js';

/** What nodes ask the control plane to hold a poll for (it caps it at its --max-wait, 60 s by default). */
export const DEFAULT_POLL_WAIT_MS = 30_000;
/** A poll that gets no answer this long after its wait is a hung control plane: drop it and retry. */
const POLL_SLACK_MS = 15_000;
/** A first load (no wait) that takes longer than this falls back to the cache. */
const DEFAULT_LOAD_TIMEOUT_MS = 10_000;
/** Retries start fast (a restart takes a second or two) and settle at a pace a recovering control plane can take from every node. */
export const DEFAULT_RETRY_MIN_MS = 250;
export const DEFAULT_RETRY_MAX_MS = 10_000;
/**
 * A poll that comes back with nothing new sooner than this was not held: the server ignores
 * `?wait=` (a plain file server, a proxy that cuts requests short, a draining control plane).
 * The next poll waits out the rest, so such a server is asked once a second, not thousands of times.
 */
export const DEFAULT_MIN_POLL_INTERVAL_MS = 1_000;

/** The control plane could not be asked (down, hung, 5xx) or refused this node's token. */
export class ControlPlaneError extends ReverstError {
  override name = 'ControlPlaneError';
  constructor(code: Extract<ErrorCode, 'ERR_CONTROL_PLANE_UNREACHABLE' | 'ERR_CONTROL_PLANE_REFUSED'>, message: string, options: { cause?: unknown } = {}) {
    super(code, message, options);
  }
}

export interface HttpGroupsSourceOptions {
  /** Sent as `Authorization: Bearer <token>` (the node's --control-plane-token-file). */
  token?: string | undefined;
  /** Where each new config is written (atomically), and read from when the control plane is down at start. */
  cachePath?: string | undefined;
  /** Followed with -w: then a node may also start with no config at all and wait for one. */
  watch?: boolean | undefined;
  logger?: Logger | undefined;
  waitMs?: number | undefined;
  loadTimeoutMs?: number | undefined;
  retryMinMs?: number | undefined;
  retryMaxMs?: number | undefined;
  minPollIntervalMs?: number | undefined;
  fetch?: typeof globalThis.fetch | undefined;
}

type Origin = { kind: 'control-plane' } | { kind: 'cache'; savedAt: Date } | { kind: 'none' };

interface Fetched {
  status: 200 | 304;
  body?: string;
  etag?: string | undefined;
}

export class HttpGroupsSource implements GroupsSource {
  readonly name: string;
  readonly #url: URL;
  readonly #options: HttpGroupsSourceOptions;
  readonly #log: Logger;
  readonly #fetch: typeof globalThis.fetch;
  readonly #closing = new AbortController();
  #etag: string | undefined;
  #lastGood: string | undefined;
  /** Where the config in force came from. */
  #origin: Origin = { kind: 'none' };
  /** Set while the control plane cannot be reached: since when, and the last reason. */
  #down: { since: Date; error: Error } | undefined;
  #watching = false;
  #cacheWriteFailed = false;

  /** Throws a one-line ConfigError for a URL that cannot be read or that carries credentials. */
  constructor(url: string, options: HttpGroupsSourceOptions = {}) {
    this.name = redactUrl(url, { query: true });
    const parsed = URL.canParse(url) ? new URL(url) : undefined;
    if (!parsed) throw new ConfigError([{ source: this.name, message: 'not a valid URL' }]);
    if (parsed.username || parsed.password) {
      // fetch refuses such URLs, and would print the credentials while doing so.
      throw new ConfigError([{ source: this.name, message: 'give the API token with --control-plane-token-file, not in the URL' }]);
    }
    this.#url = parsed;
    this.#options = options;
    this.#log = (options.logger ?? silentLogger).child({ component: 'groups-source', source: this.name });
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  async load(): Promise<GroupsConfig> {
    try {
      const fetched = await this.#get(undefined, 0, this.#options.loadTimeoutMs ?? DEFAULT_LOAD_TIMEOUT_MS);
      const config = await this.#accept(fetched.body!, fetched.etag);
      this.#origin = { kind: 'control-plane' };
      return config;
    } catch (err) {
      if (err instanceof ControlPlaneError && err.code === 'ERR_CONTROL_PLANE_REFUSED') throw err;
      return this.#fallBack(err as Error);
    }
  }

  watch(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void): void {
    if (this.#watching || this.#closing.signal.aborted) throw new Error(`${this.name}: watch() may be called once, before close()`);
    this.#watching = true;
    void this.#follow(onChange, onError);
  }

  status(): GroupsSourceStatus {
    const down = this.#down && `control plane unreachable since ${this.#down.since.toISOString()}: ${this.#down.error.message}`;
    switch (this.#origin.kind) {
      case 'none':
        return { ready: false, detail: `no tunnel groups yet: ${down ?? `waiting for ${this.name}`}` };
      case 'cache':
        return { ready: true, detail: `from the cache ${this.#options.cachePath} (saved ${this.#origin.savedAt.toISOString()})${down ? `; ${down}` : ''}` };
      default:
        return { ready: true, detail: down ? `keeping the last config; ${down}` : `following ${this.name}` };
    }
  }

  close(): void {
    this.#closing.abort();
  }

  async #follow(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void): Promise<void> {
    const backoff = new Backoff({ minDelayMs: this.#options.retryMinMs ?? DEFAULT_RETRY_MIN_MS, maxDelayMs: this.#options.retryMaxMs ?? DEFAULT_RETRY_MAX_MS });
    const waitMs = this.#options.waitMs ?? DEFAULT_POLL_WAIT_MS;
    const minPollMs = this.#options.minPollIntervalMs ?? DEFAULT_MIN_POLL_INTERVAL_MS;
    while (!this.#closing.signal.aborted) {
      const polledAt = performance.now();
      let fetched: Fetched;
      try {
        // Without an ETag (a start from the cache or from nothing) the answer comes at once.
        fetched = await this.#get(this.#etag, waitMs, waitMs + POLL_SLACK_MS);
      } catch (err) {
        if (this.#closing.signal.aborted) return;
        this.#unreachable(err as Error, onError);
        await this.#pause(backoff.next());
        continue;
      }
      backoff.reset();
      if (this.#down) {
        this.#log.info('control plane reachable again', { downSince: this.#down.since.toISOString() });
        this.#down = undefined;
      }
      if (!(await this.#applyAnswer(fetched, onChange, onError))) await this.#pause(minPollMs - (performance.now() - polledAt));
    }
  }

  /** Takes one poll's answer; false when it brought nothing new (not modified, the same config, or one this node cannot read). */
  async #applyAnswer(fetched: Fetched, onChange: (config: GroupsConfig) => void, onError: (error: Error) => void): Promise<boolean> {
    if (fetched.status === 304) return false;
    const before = this.#lastGood;
    let config: GroupsConfig;
    try {
      config = await this.#accept(fetched.body!, fetched.etag);
    } catch (err) {
      // A config this node cannot read: keep the last good one and wait for the next change.
      this.#etag = fetched.etag;
      onError(err as Error);
      return false;
    }
    this.#origin = { kind: 'control-plane' };
    if (this.#lastGood === before || this.#closing.signal.aborted) return false;
    try {
      onChange(config);
    } catch (err) {
      onError(err as Error);
    }
    return true;
  }

  /** Sleeps `ms` (nothing if not positive), or until close(). */
  async #pause(ms: number): Promise<void> {
    if (ms > 0) await sleep(ms, undefined, { signal: this.#closing.signal }).catch(() => {});
  }

  /** One outage is reported once, when it starts; /readyz shows the latest reason meanwhile. */
  #unreachable(error: Error, onError: (error: Error) => void): void {
    const first = this.#down === undefined;
    this.#down = { since: this.#down?.since ?? new Date(), error };
    if (first) onError(error);
    else this.#log.debug('control plane still unreachable', { error: error.message });
  }

  async #get(etag: string | undefined, waitMs: number, timeoutMs: number): Promise<Fetched> {
    const url = new URL(this.#url);
    if (etag !== undefined && waitMs > 0) url.searchParams.set('wait', `${Math.ceil(waitMs / 1000)}s`);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#options.token) headers.authorization = `Bearer ${this.#options.token}`;
    if (etag !== undefined) headers['if-none-match'] = etag;
    let response: Response;
    try {
      response = await this.#fetch(url, { headers, signal: AbortSignal.any([this.#closing.signal, AbortSignal.timeout(timeoutMs)]) });
    } catch (err) {
      const reason = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs}ms` : fetchFailure(err);
      throw new ControlPlaneError('ERR_CONTROL_PLANE_UNREACHABLE', `control plane ${this.name} unreachable: ${reason}`, { cause: err });
    }
    if (response.status === 304) {
      await response.body?.cancel();
      return { status: 304 };
    }
    const body = await response.text().catch((err: unknown) => {
      throw new ControlPlaneError('ERR_CONTROL_PLANE_UNREACHABLE', `control plane ${this.name} broke off its answer: ${fetchFailure(err)}`, { cause: err });
    });
    if (response.status === 401 || response.status === 403) {
      const fix = this.#options.token ? 'check --control-plane-token-file against its API token' : 'give --control-plane-token-file';
      throw new ControlPlaneError('ERR_CONTROL_PLANE_REFUSED', `control plane ${this.name} refused this node (${response.status}): ${fix}`);
    }
    if (response.status !== 200) {
      throw new ControlPlaneError('ERR_CONTROL_PLANE_UNREACHABLE', `control plane ${this.name} answered ${response.status}: ${body.trim().slice(0, 200)}`);
    }
    return { status: 200, body, etag: response.headers.get('etag') ?? undefined };
  }

  /** Parses a config from the control plane and makes it the last good one (and the cached one). */
  async #accept(body: string, etag: string | undefined): Promise<GroupsConfig> {
    // No token files: a control plane publishes digests, never paths.
    const config = await parseGroups(body, this.name);
    this.#etag = etag;
    const print = fingerprint(config);
    if (print !== this.#lastGood) {
      this.#lastGood = print;
      await this.#writeCache(body);
    }
    return config;
  }

  async #fallBack(error: Error): Promise<GroupsConfig> {
    const cachePath = this.#options.cachePath;
    const cached = cachePath ? await this.#readCache(cachePath) : undefined;
    this.#down = { since: new Date(), error };
    if (cached) {
      this.#origin = { kind: 'cache', savedAt: cached.savedAt };
      this.#lastGood = fingerprint(cached.config);
      this.#log.warn('control plane unreachable: starting from the cached tunnel groups', {
        cache: cachePath,
        savedAt: cached.savedAt.toISOString(),
        error: error.message,
      });
      return cached.config;
    }
    const hint = cachePath ? `(no usable cache in ${cachePath} yet)` : '(give --groups-cache FILE to start from the last config next time)';
    if (!this.#options.watch) {
      throw new ControlPlaneError('ERR_CONTROL_PLANE_UNREACHABLE', `${error.message} ${hint}; with -w the node would start and wait for it`, { cause: error });
    }
    this.#log.warn('control plane unreachable and no cached config: starting with no tunnel groups, not ready until it answers', {
      error: error.message,
      hint,
    });
    return { groups: new Map() };
  }

  async #readCache(path: string): Promise<{ config: GroupsConfig; savedAt: Date } | undefined> {
    let text: string;
    let savedAt: Date;
    try {
      [text, savedAt] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => s.mtime)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.warn('cannot read the groups cache', { cache: path, error: (err as Error).message });
      return undefined;
    }
    try {
      return { config: await parseGroups(text, path), savedAt };
    } catch (err) {
      this.#log.warn('the groups cache is not a valid config; ignoring it', { cache: path, error: (err as Error).message });
      return undefined;
    }
  }

  /** Written beside the target and renamed over it, so a crash never leaves half a file. */
  async #writeCache(body: string): Promise<void> {
    const path = this.#options.cachePath;
    if (!path) return;
    const temporary = `${path}.${process.pid}.tmp`;
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(temporary, body, { mode: 0o600 });
      await rename(temporary, path);
      this.#cacheWriteFailed = false;
    } catch (err) {
      // Said once per failure streak: the node serves either way.
      if (!this.#cacheWriteFailed) this.#log.warn('cannot write the groups cache', { cache: path, error: (err as Error).message });
      this.#cacheWriteFailed = true;
    }
  }
}

/** Two configs are the same if they serialize the same. */
function fingerprint(config: GroupsConfig): string {
  return JSON.stringify([...config.groups.values()]);
}
