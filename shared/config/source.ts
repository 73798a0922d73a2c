import { ConfigError } from '../errors.js';
import type { FlagSpec } from '../flags.js';
import type { Logger } from '../log.js';
import { FileGroupsSource } from './file-source.js';
import { K8sGroupsSource } from './k8s-source.js';
import type { GroupsConfig } from './groups.js';
import { HttpGroupsSource } from './http-source.js';

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
  /** For /readyz, from sources that can be without a config or behind (a control plane that is down). */
  status?(): GroupsSourceStatus;
}

export interface GroupsSourceStatus {
  /** False only while there is no config at all. */
  ready: boolean;
  detail: string;
}

export interface GroupsSourceOptions {
  /** File sources: one reload per burst of changes this long. */
  debounceMs?: number | undefined;
  /** Whether the source will be watched (-w): a control-plane source may then start with no config yet. */
  watch?: boolean | undefined;
  /** Control-plane sources: the API token (--control-plane-token-file). */
  token?: string | undefined;
  /** Control-plane sources: the last config, for a start while the control plane is down (--groups-cache). */
  cachePath?: string | undefined;
  logger?: Logger | undefined;
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
// A control plane's /v1/groups, long-polled.
registerGroupsSource('http', (spec, options) => new HttpGroupsSource(spec, options));
registerGroupsSource('https', (spec, options) => new HttpGroupsSource(spec, options));

/** The URL schemes a `-g` value may use in this build (a plain path always works). */
export function groupsSourceSchemes(): string[] {
  return [...factories.keys()];
}

/** `-g` and `-w`, the same for every command that reads tunnel groups (the node, the control plane). */
export const GROUPS_SOURCE_FLAGS = [
  {
    long: 'tunnel-groups',
    short: 'g',
    kind: 'string',
    // Worked out when -h prints, so it names only the sources registered in this build.
    help: () =>
      `tunnel groups source: a file path or ${groupsSourceSchemes()
        .map((scheme) => `${scheme}://…`)
        .join(', ')}`,
    default: 'groups.yml',
  },
  { long: 'watch-groups', short: 'w', kind: 'boolean', help: 'watch tunnel groups sources for updates' },
] as const satisfies readonly FlagSpec[];

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
