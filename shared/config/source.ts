import { ConfigError } from '../errors.js';
import { FileGroupsSource } from './file-source.js';
import type { GroupsConfig } from './groups.js';

/** Where tunnel groups come from (`-g`). Each source pushes updates when watched. */
export interface GroupsSource {
  /** For logs and error messages. */
  readonly name: string;
  load(): Promise<GroupsConfig>;
  /** Calls `onChange` with each new valid config; a bad update goes to `onError` and changes nothing. */
  watch(onChange: (config: GroupsConfig) => void, onError: (error: Error) => void): void;
  close(): void;
}

/**
 * The source for a `-g` value: a plain path or `file://<path>`, like the seed
 * (`file:///etc/reverst/groups.yml` is absolute, `file://groups.yml` relative).
 */
export function groupsSourceFromUrl(spec: string, options: { debounceMs?: number } = {}): GroupsSource {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(spec)?.[1]?.toLowerCase();
  if (scheme === undefined) return new FileGroupsSource(spec, options);
  if (scheme === 'file') return new FileGroupsSource(decodeURIComponent(spec.slice('file://'.length)), options);
  const known = scheme === 'k8s' || scheme === 'http' || scheme === 'https';
  throw new ConfigError(
    [
      {
        source: spec,
        message: known
          ? `${scheme}:// tunnel groups sources are not supported yet: use a file path`
          : `unknown tunnel groups source scheme "${scheme}://": use a file path or file://`,
      },
    ],
    { code: 'ERR_CONFIG_SOURCE_UNSUPPORTED' },
  );
}
