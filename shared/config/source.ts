import { ConfigError } from '../errors.js';
import { FileGroupsSource } from './file-source.js';
import { K8sGroupsSource } from './k8s-source.js';
import type { GroupsConfig } from './groups.js';

/** Where tunnel groups come from (`-g`). Each source pushes updates when watched. */
export interface GroupsSource {
  /** For logs and error messages. */
  readonly name: string;
  load(): Promise<GroupsConfig>;
  /**
   * Calls `onChange` with each new valid config; a bad update goes to `onError` and changes
   * nothing. Sources that re-read on a signal may call `onUnchanged` when the config read is
   * the one in force, so a caller can tell a reload ran and changed nothing.
   */
  watch(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void, onUnchanged?: () => void): void;
  close(): void;
}

export interface GroupsSourceOptions {
  /** File sources: one reload per burst of changes this long. */
  debounceMs?: number | undefined;
}

/** Makes the source for a `-g` value of one URL scheme. */
export type GroupsSourceFactory = (spec: string, options: GroupsSourceOptions) => GroupsSource;

// Sources register by scheme; the dispatcher below holds no list of its own.
const factories = new Map<string, GroupsSourceFactory>();

/** Adds (or replaces) the source for `scheme` (lower case, without `://`). */
export function registerGroupsSource(scheme: string, factory: GroupsSourceFactory): void {
  factories.set(scheme.toLowerCase(), factory);
}

// `file:///etc/reverst/groups.yml` is absolute, `file://groups.yml` relative, as in the seed.
registerGroupsSource('file', (spec, options) => new FileGroupsSource(decodeURIComponent(spec.slice('file://'.length)), options));
// `k8s://configmap/<namespace>/<name>/<key>`, as in the seed; the Kubernetes client loads on first use.
registerGroupsSource('k8s', (spec, options) => new K8sGroupsSource(spec, options));

/** The URL schemes a `-g` value may use in this build (a plain path always works). */
export function groupsSourceSchemes(): string[] {
  return [...factories.keys()];
}

/** The source for a `-g` value: a plain path, or a URL whose scheme a source registered for. */
export function groupsSourceFromUrl(spec: string, options: GroupsSourceOptions = {}): GroupsSource {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(spec)?.[1]?.toLowerCase();
  if (scheme === undefined) return new FileGroupsSource(spec, options);
  const factory = factories.get(scheme);
  if (factory) return factory(spec, options);
  const known = groupsSourceSchemes().map((s) => `${s}://`);
  throw new ConfigError([{ source: spec, message: `unknown tunnel groups source scheme "${scheme}://": use a file path or one of ${known.join(', ')}` }], {
    code: 'ERR_CONFIG_SOURCE_UNSUPPORTED',
  });
}
