import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { parseGroups, type GroupsConfig } from './groups.js';
import { readSecretRef, SecretReader, type SecretVersion } from './secret-ref.js';
import { SecretWatch } from './secret-watch.js';
import type { GroupsSource } from './source.js';

/** Editors and `kubectl` touch a file several times per save; one reload per burst is enough. */
export const DEFAULT_WATCH_DEBOUNCE_MS = 100;

async function readGroupsText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([{ source: path, message: `cannot read tunnel groups file: ${(err as Error).message}` }], { cause: err });
  }
}

/** Reads token files (tokenPath, hashedTokenPath) relative to `baseDir`, or `k8s://secret/…` references. */
export function fileTokenReader(baseDir: string): (path: string) => Promise<string> {
  return (path) => readSecretRef(path, { baseDir });
}

/** Also says which Kubernetes Secrets (`tokenPath: k8s://secret/…`) the parse read. */
async function parseGroupsText(text: string, path: string): Promise<{ config: GroupsConfig; secrets: Map<string, SecretVersion> }> {
  const reader = new SecretReader(dirname(resolve(path)));
  return { config: await parseGroups(text, path, { readFile: reader.readFile }), secrets: reader.secrets };
}

/** Reads and parses a groups file; token paths in it are relative to its directory. */
export async function loadGroupsFile(path: string): Promise<GroupsConfig> {
  return (await parseGroupsText(await readGroupsText(path), path)).config;
}

/** Two configs are the same if they serialize the same (token file contents included, as hashes). */
function fingerprint(config: GroupsConfig): string {
  return JSON.stringify([...config.groups.values()]);
}

/**
 * A groups file that can be watched. It watches the file's directory rather than the file,
 * because the usual ways to update a config replace the file instead of writing into it:
 * an atomic rename over it, or Kubernetes swapping the `..data` symlink its mounts go through.
 * Every change in the directory triggers a debounced reload, and `onChange` fires only if the
 * loaded config differs from the last good one (`onUnchanged` otherwise). A bad file goes to `onError`; the last good
 * config stays in force. Kubernetes Secrets named by token paths are watched too (see SecretWatch).
 */
export class FileGroupsSource implements GroupsSource {
  private watcher?: FSWatcher;
  private secretWatch?: SecretWatch;
  private secretsRead = new Map<string, SecretVersion>();
  private timer?: NodeJS.Timeout;
  private lastGood?: string;
  private reloading = false;
  private reloadAgain = false;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly options: { debounceMs?: number | undefined } = {},
  ) {}

  get name(): string {
    return this.path;
  }

  async load(): Promise<GroupsConfig> {
    const { config, secrets } = await parseGroupsText(await readGroupsText(this.path), this.path);
    this.lastGood = fingerprint(config);
    this.secretsRead = secrets;
    return config;
  }

  watch(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void, onUnchanged?: () => void): void {
    if (this.watcher || this.closed) throw new Error(`${this.path}: watch() may be called once, before close()`);
    const debounceMs = this.options.debounceMs ?? DEFAULT_WATCH_DEBOUNCE_MS;
    const reload = async () => {
      // One reload at a time, so an older read can never overwrite a newer one.
      if (this.reloading) {
        this.reloadAgain = true;
        return;
      }
      this.reloading = true;
      do {
        this.reloadAgain = false;
        await this.reloadOnce(onChange, onError, onUnchanged);
      } while (this.reloadAgain && !this.closed);
      this.reloading = false;
    };
    const schedule = () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(reload, debounceMs);
    };
    this.secretWatch = new SecretWatch(schedule, onError);
    this.secretWatch.follow(this.secretsRead);
    try {
      // Not persistent: an open watcher alone should not keep the process alive.
      this.watcher = watch(dirname(resolve(this.path)), { persistent: false }, schedule);
    } catch (err) {
      onError(err as Error);
      return;
    }
    this.watcher.on('error', onError);
  }

  private async reloadOnce(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void, onUnchanged?: () => void): Promise<void> {
    let config: GroupsConfig;
    let secrets: Map<string, SecretVersion>;
    try {
      const text = await readGroupsText(this.path);
      // An empty file is a valid config with no groups, but on reload it is far more likely an
      // in-place write caught half way: dropping every group for that is not worth the risk.
      if (text.trim() === '') {
        throw new ConfigError([{ source: this.path, message: 'file is empty (a write in progress?); keeping the last good config' }]);
      }
      ({ config, secrets } = await parseGroupsText(text, this.path));
    } catch (err) {
      if (!this.closed) onError(err as Error);
      return;
    }
    this.secretsRead = secrets;
    this.secretWatch?.follow(secrets);
    const print = fingerprint(config);
    if (this.closed) return;
    if (print === this.lastGood) {
      onUnchanged?.();
      return;
    }
    this.lastGood = print;
    try {
      onChange(config);
    } catch (err) {
      // A throwing listener must not stop later reloads.
      onError(err as Error);
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.watcher?.close();
    this.secretWatch?.close();
  }
}
