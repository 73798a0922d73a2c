/**
 * Keeps a watched groups source in step with the Kubernetes Secrets its token paths name: after
 * each good load the source hands over what its `SecretReader` read, and when one of those
 * Secrets moves past the version read (changed, deleted or recreated) `onChange` asks the source
 * to load again. The new load reads the Secrets afresh; if that fails, the last good config stays.
 */
import { ObjectWatch, type ObjectWatchOptions } from './k8s-watch.js';
import type { SecretVersion } from './secret-ref.js';

interface Followed {
  /** The version the current config was built from. */
  resourceVersion: string;
  watch?: ObjectWatch;
}

export class SecretWatch {
  readonly #followed = new Map<string, Followed>();
  #closed = false;

  constructor(
    private readonly onChange: () => void,
    private readonly onError: (error: Error) => void,
    private readonly options: ObjectWatchOptions & { onListed?: (() => void) | undefined } = {},
  ) {}

  /** Follows exactly these Secrets from now on (those no longer referenced are let go). */
  follow(secrets: ReadonlyMap<string, SecretVersion>): void {
    if (this.#closed) return;
    for (const [key, followed] of this.#followed) {
      if (!secrets.has(key)) {
        followed.watch?.close();
        this.#followed.delete(key);
      }
    }
    for (const [key, { ref, resourceVersion }] of secrets) {
      const followed = this.#followed.get(key);
      if (followed) followed.resourceVersion = resourceVersion;
      else {
        const entry: Followed = { resourceVersion };
        this.#followed.set(key, entry);
        this.#start(ref, entry);
      }
    }
  }

  close(): void {
    this.#closed = true;
    for (const followed of this.#followed.values()) followed.watch?.close();
    this.#followed.clear();
  }

  #start(ref: SecretVersion['ref'], entry: Followed): void {
    entry.watch = new ObjectWatch(
      ref,
      {
        onObject: (object) => {
          const version = object?.metadata?.resourceVersion ?? '';
          if (version === entry.resourceVersion) return;
          entry.resourceVersion = version;
          this.onChange();
        },
        onError: this.onError,
        onListed: this.options.onListed,
      },
      this.options,
    );
    entry.watch.start();
  }
}
