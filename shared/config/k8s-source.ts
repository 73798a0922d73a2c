/**
 * `-g k8s://configmap/<namespace>/<name>/<key>`: tunnel groups from one key of a ConfigMap, as in
 * the seed. `load()` reads it with a get; `watch()` follows it with list + watch (see
 * `ObjectWatch`) and also follows the Secrets its token paths name (`k8s://secret/…`), so a
 * rotated token reloads the groups too. A missing object or key, a refusal or a bad file goes to
 * `onError` and the last good config stays in force.
 */
import { parseGroups, type GroupsConfig } from './groups.js';
import { kubeApiFor } from './k8s-client.js';
import { notFound, parseKubeRef, readKey, type KubeObject, type KubeRef } from './k8s-ref.js';
import { ObjectWatch, type ObjectWatchOptions } from './k8s-watch.js';
import { SecretReader, type SecretVersion } from './secret-ref.js';
import { SecretWatch } from './secret-watch.js';
import type { GroupsSource, GroupsSourceStatus } from './source.js';

export interface K8sGroupsSourceOptions extends ObjectWatchOptions {
  /** One reload per burst of changes this long (a ConfigMap and its Secrets edited together). */
  debounceMs?: number | undefined;
}

/** Long enough to fold a `kubectl apply` of several objects into one reload. */
export const DEFAULT_K8S_DEBOUNCE_MS = 100;

type Listener = { onChange: (config: GroupsConfig) => void; onError: (error: Error) => void; onUnchanged?: (() => void) | undefined };

/** Two configs are the same if they serialize the same (tokens are kept as hashes). */
function fingerprint(config: GroupsConfig): string {
  return JSON.stringify([...config.groups.values()]);
}

export class K8sGroupsSource implements GroupsSource {
  readonly ref: KubeRef;
  readonly #options: K8sGroupsSourceOptions;
  #listener: Listener | undefined;
  #lastGood: string | undefined;
  /** The key's text as last seen (good or bad), so a Secret change can parse it again; undefined while it is missing. */
  #text: string | undefined;
  /** The Secrets the last good load read. */
  #secretsRead = new Map<string, SecretVersion>();
  #watch: ObjectWatch | undefined;
  #secrets: SecretWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #reloading = false;
  #reloadAgain = false;
  #closed = false;
  /** What /readyz shows while the last good config serves: the ConfigMap's content is unusable, or the API fails. */
  #contentProblem: string | undefined;
  #apiProblem: string | undefined;

  /** Throws a one-line `KubernetesError` for a malformed reference, before any API call. */
  constructor(url: string, options: K8sGroupsSourceOptions = {}) {
    this.ref = parseKubeRef(url, 'configmap');
    this.#options = options;
  }

  get name(): string {
    return this.ref.url;
  }

  async load(): Promise<GroupsConfig> {
    const object = await (await kubeApiFor(this.ref.url)).get(this.ref);
    this.#text = readKey(this.ref, object).toString('utf8');
    const { config, secrets } = await this.#parse(this.#text);
    this.#lastGood = fingerprint(config);
    this.#secretsRead = secrets;
    return config;
  }

  watch(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void, onUnchanged?: () => void): void {
    if (this.#listener || this.#closed) throw new Error(`${this.name}: watch() may be called once, before close()`);
    this.#listener = { onChange, onError, onUnchanged };
    const onListed = () => {
      this.#apiProblem = undefined;
    };
    const onApiError = (error: Error) => {
      this.#apiProblem = error.message;
      this.#error(error);
    };
    this.#secrets = new SecretWatch(() => this.#schedule(), onApiError, { ...this.#options, onListed });
    this.#secrets.follow(this.#secretsRead);
    this.#watch = new ObjectWatch(this.ref, { onObject: (object) => this.#onObject(object), onError: onApiError, onListed }, this.#options);
    this.#watch.start();
  }

  /** For /readyz: always ready once loaded (the last good config serves); the detail says what is wrong, if anything. */
  status(): GroupsSourceStatus {
    const problem = this.#contentProblem ?? this.#apiProblem;
    return { ready: true, detail: problem ? `${problem}; serving the last good config` : `following ${this.ref.url}` };
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#watch?.close();
    this.#secrets?.close();
  }

  #onObject(object: KubeObject | undefined): void {
    try {
      if (!object) throw notFound(this.ref, this.ref.url, 'deleted');
      this.#text = readKey(this.ref, object).toString('utf8');
    } catch (err) {
      this.#text = undefined;
      this.#contentProblem = (err as Error).message;
      this.#error(err as Error);
      return;
    }
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#reload(), this.#options.debounceMs ?? DEFAULT_K8S_DEBOUNCE_MS);
  }

  async #reload(): Promise<void> {
    // One reload at a time, so an older parse can never overwrite a newer one.
    if (this.#reloading) {
      this.#reloadAgain = true;
      return;
    }
    this.#reloading = true;
    try {
      do {
        this.#reloadAgain = false;
        await this.#reloadOnce();
      } while (this.#reloadAgain && !this.#closed);
    } finally {
      this.#reloading = false;
    }
  }

  async #reloadOnce(): Promise<void> {
    // No text: the ConfigMap or its key is missing (already reported); wait for it to come back.
    const text = this.#text;
    if (text === undefined || this.#closed) return;
    let parsed: { config: GroupsConfig; secrets: Map<string, SecretVersion> };
    try {
      parsed = await this.#parse(text);
    } catch (err) {
      this.#contentProblem = (err as Error).message;
      this.#error(err as Error);
      return;
    }
    if (this.#closed) return;
    this.#contentProblem = undefined;
    this.#secretsRead = parsed.secrets;
    this.#secrets?.follow(parsed.secrets);
    const print = fingerprint(parsed.config);
    if (print === this.#lastGood) {
      this.#listener?.onUnchanged?.();
      return;
    }
    this.#lastGood = print;
    try {
      this.#listener?.onChange(parsed.config);
    } catch (err) {
      // A throwing listener must not stop later reloads.
      this.#error(err as Error);
    }
  }

  async #parse(text: string): Promise<{ config: GroupsConfig; secrets: Map<string, SecretVersion> }> {
    // Token file paths in a ConfigMap have no directory of their own: they start from the working directory.
    const reader = new SecretReader(process.cwd());
    const config = await parseGroups(text, this.ref.url, { readFile: reader.readFile });
    return { config, secrets: reader.secrets };
  }

  #error(error: Error): void {
    if (this.#closed) return;
    try {
      this.#listener?.onError(error);
    } catch {
      // A failing error listener must not stop the watch.
    }
  }
}
