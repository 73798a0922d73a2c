/**
 * Follows one named ConfigMap or Secret: list it (by a fieldSelector on its name, so a Role can
 * grant list and watch by name), then watch from the list's resourceVersion with bookmarks. A
 * watch the server ends or the network drops resumes from the last resourceVersion seen; an
 * expired one (410 Gone, as an HTTP status or an ERROR event) relists; any other failure is
 * reported and retried with backoff. Nothing here throws or rejects: the owner hears of failures
 * through `onError` and the watch carries on until `close()`.
 */
import { apiError, kubeApiFor, statusOf, type KubeApi, type KubeVerb, type WatchEventType } from './k8s-client.js';
import { objectUrl, type KubeObject, type KubeObjectRef } from './k8s-ref.js';

export interface ObjectWatchHandlers {
  /** The object whenever it changed (after a list or an event); undefined when it does not exist. */
  onObject(object: KubeObject | undefined): void;
  onError(error: Error): void;
  /** Each time a list succeeded: the API answers again (after a failure, the watch has recovered). */
  onListed?: (() => void) | undefined;
}

export interface ObjectWatchOptions {
  /** First retry delay after a failure; it doubles per failure in a row, with jitter, up to `maxRetryMs`. */
  retryMs?: number | undefined;
  maxRetryMs?: number | undefined;
  /** How long each watch request asks to run; the server then ends it and we resume. */
  timeoutSeconds?: number | undefined;
}

export const DEFAULT_WATCH_RETRY_MS = 250;
/** Long enough not to hammer an API server that is down, short enough to catch up soon after. */
export const DEFAULT_WATCH_MAX_RETRY_MS = 30_000;
/** client-go's reflector asks for 5 to 10 minutes, at random so a fleet does not reconnect in step. */
export const DEFAULT_WATCH_TIMEOUT_SECONDS = 300;
/** Bookmarks come about every minute; a stream silent for the whole timeout plus this is dead (a half-open TCP connection). */
const SILENCE_MARGIN_MS = 60_000;
/** A watch that ends this soon with no event counts as a failure, so a server that keeps dropping us is not hammered. */
const SHORT_WATCH_MS = 1_000;

type WatchEnd = { how: 'expired' | 'ended' | 'dropped' | 'silent' | 'closed'; events: number };

export class ObjectWatch {
  /** The object, and the reference as written when there is one (for messages). */
  readonly #ref: KubeObjectRef & { url?: string };
  readonly #handlers: ObjectWatchHandlers;
  readonly #retryMs: number;
  readonly #maxRetryMs: number;
  readonly #timeoutSeconds: number;
  #closed = false;
  #started = false;
  /** Ends the watch or the retry sleep in progress. */
  #interrupt: (() => void) | undefined;
  /** What the owner last heard: a resourceVersion, or '' for "does not exist". */
  #lastEmitted: string | undefined;

  constructor(ref: KubeObjectRef & { url?: string }, handlers: ObjectWatchHandlers, options: ObjectWatchOptions = {}) {
    this.#ref = ref;
    this.#handlers = handlers;
    this.#retryMs = options.retryMs ?? DEFAULT_WATCH_RETRY_MS;
    this.#maxRetryMs = options.maxRetryMs ?? DEFAULT_WATCH_MAX_RETRY_MS;
    this.#timeoutSeconds = options.timeoutSeconds ?? Math.round(DEFAULT_WATCH_TIMEOUT_SECONDS * (1 + Math.random()));
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#run().catch((err: unknown) => this.#report(err as Error));
  }

  close(): void {
    this.#closed = true;
    this.#interrupt?.();
  }

  async #run(): Promise<void> {
    let api: KubeApi | undefined;
    let resourceVersion: string | undefined;
    let failures = 0;
    let verb: KubeVerb = 'list';
    while (!this.#closed) {
      try {
        api ??= await kubeApiFor(this.#ref.url ?? objectUrl(this.#ref));
        if (resourceVersion === undefined) {
          verb = 'list';
          const listed = await api.list(this.#ref);
          if (this.#closed) return;
          this.#emit(listed.object);
          this.#handlers.onListed?.();
          resourceVersion = listed.resourceVersion;
          failures = 0;
        }
        verb = 'watch';
        const started = Date.now();
        const end = await this.#watchOnce(api, resourceVersion, (rv) => {
          resourceVersion = rv;
        });
        if (end.how === 'expired') resourceVersion = undefined;
        else if (end.events > 0 || Date.now() - started >= SHORT_WATCH_MS) failures = 0;
        else if (end.how !== 'closed') await this.#sleep(this.#backoff(++failures));
      } catch (err) {
        if (this.#closed) return;
        if (statusOf(err) === 410) {
          resourceVersion = undefined;
          continue;
        }
        this.#report(api ? apiError(err, this.#ref, verb, api.server) : (err as Error));
        // Relist after a failure: whatever happened meanwhile (a delete included) is then seen.
        resourceVersion = undefined;
        await this.#sleep(this.#backoff(++failures));
      }
    }
  }

  /** One watch request, until it ends; `onVersion` hears each resourceVersion as it arrives. */
  #watchOnce(api: KubeApi, resourceVersion: string, onVersion: (rv: string) => void): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve, reject) => {
      let events = 0;
      let settled = false;
      let connected = false;
      let handle: { abort(): void } | undefined;
      let silence: NodeJS.Timeout | undefined;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(silence);
        this.#interrupt = undefined;
        handle?.abort();
        outcome();
      };
      const armSilence = () => {
        clearTimeout(silence);
        silence = setTimeout(() => settle(() => resolve({ how: 'silent', events })), this.#timeoutSeconds * 1000 + SILENCE_MARGIN_MS);
        silence.unref();
      };
      this.#interrupt = () => settle(() => resolve({ how: 'closed', events }));
      armSilence();
      const onEvent = (type: WatchEventType, object: unknown) => {
        if (settled) return;
        armSilence();
        if (type === 'ERROR') {
          // The server sends a Status and then ends the stream; 410 means our resourceVersion is too old.
          const status = object as { code?: number };
          settle(() => (status?.code === 410 ? resolve({ how: 'expired', events }) : reject(object)));
          return;
        }
        const item = object as KubeObject;
        const rv = item?.metadata?.resourceVersion;
        if (rv) onVersion(rv);
        if (type === 'BOOKMARK') return;
        // The fieldSelector limits events to our object; a server that ignored it changes nothing.
        if (item?.metadata?.name !== undefined && item.metadata.name !== this.#ref.name) return;
        events++;
        this.#emit(type === 'DELETED' ? undefined : item);
      };
      const onDone = (error: unknown) => {
        // Before the request was under way: it failed (refused, or an HTTP status). After: the stream ended.
        if (!connected) settle(() => reject(error ?? new Error('watch ended before it began')));
        else if (error === null || error === undefined) settle(() => resolve({ how: 'ended', events }));
        else settle(() => resolve({ how: 'dropped', events }));
      };
      api.watch(this.#ref, { resourceVersion, timeoutSeconds: this.#timeoutSeconds }, onEvent, onDone).then(
        (h) => {
          connected = true;
          handle = h;
          if (settled) h.abort();
        },
        (err: unknown) => settle(() => reject(err)),
      );
    });
  }

  #emit(object: KubeObject | undefined): void {
    // A relist finds what the owner already has: tell it only what changed.
    const version = object ? (object.metadata?.resourceVersion ?? '?') : '';
    if (version !== '?' && version === this.#lastEmitted) return;
    this.#lastEmitted = version;
    try {
      this.#handlers.onObject(object);
    } catch (err) {
      this.#report(err as Error);
    }
  }

  #report(error: Error): void {
    if (this.#closed) return;
    try {
      this.#handlers.onError(error);
    } catch {
      // An owner's failing error handler must not end the watch.
    }
  }

  #backoff(failures: number): number {
    const ceiling = Math.min(this.#maxRetryMs, this.#retryMs * 2 ** Math.min(failures - 1, 20));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      // Not ref'd: a watch waiting to retry should not alone keep the process alive.
      const timer = setTimeout(done, ms).unref();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#interrupt = done;
    });
  }
}
