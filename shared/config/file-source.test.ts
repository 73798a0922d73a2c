import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { FileGroupsSource, loadGroupsFile } from './file-source.js';
import type { GroupsConfig } from './groups.js';
import { groupsSourceFromUrl } from './source.js';

const groupsYaml = (host: string) => `groups:\n  g:\n    hosts: [${host}]\n`;
const hostOf = (config: GroupsConfig) => config.groups.get('g')?.hosts[0];

let dir: string;
let sources: FileGroupsSource[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reverst-file-source-'));
  sources = [];
});
afterEach(async () => {
  for (const source of sources) source.close();
  await rm(dir, { recursive: true, force: true });
});

/** Replaces a file atomically, so a watcher never sees it half written. */
async function replace(path: string, content: string) {
  await writeFile(`${path}.tmp`, content);
  await rename(`${path}.tmp`, path);
}

type WatchEvent = { config?: GroupsConfig; error?: Error; unchanged?: true };

/** A watched source whose events (changes, errors, and rereads that changed nothing) can be awaited one by one. */
async function watched(path: string) {
  const source = new FileGroupsSource(path, { debounceMs: 30 });
  sources.push(source);
  const initial = await source.load();
  const events: WatchEvent[] = [];
  let wake: (() => void) | undefined;
  const push = (event: WatchEvent) => {
    events.push(event);
    wake?.();
  };
  source.watch(
    (config) => push({ config }),
    (error) => push({ error }),
    () => push({ unchanged: true }),
  );
  /** The next event that matches, dropping those before it; rejects after `timeoutMs`. */
  const next = async (matches: (event: WatchEvent) => boolean = (e) => !e.unchanged, timeoutMs = 5_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const event = events.shift();
      if (event && matches(event)) return event;
      if (event) continue;
      if (Date.now() > deadline) throw new Error('no watch event');
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 25);
      });
    }
  };
  /**
   * Waits for a reread that found the config in force, then checks that no change was
   * reported before it: proof that a reload ran and changed nothing, not just a quiet moment.
   */
  const unchanged = async () => {
    const seen: WatchEvent[] = [];
    await next((event) => {
      seen.push(event);
      return event.unchanged === true;
    });
    expect(seen.filter((e) => e.config)).toEqual([]);
  };
  return { source, initial, next, unchanged };
}

describe('loadGroupsFile', () => {
  it('reads token paths relative to the file, not the working directory', async () => {
    await mkdir(join(dir, 'conf'));
    await writeFile(join(dir, 'conf', 'token'), 'tok\n');
    await writeFile(join(dir, 'conf', 'groups.yml'), 'groups:\n  g:\n    authentication:\n      bearer: { tokenPath: token }\n');
    const config = await loadGroupsFile(join(dir, 'conf', 'groups.yml'));
    expect(config.groups.get('g')!.authentication.bearer!.hashedToken).toBe(createHash('sha256').update('tok').digest('hex'));
  });

  it('names the file it cannot read', async () => {
    const path = join(dir, 'missing.yml');
    const error = await loadGroupsFile(path).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(new RegExp(`^${path}: cannot read tunnel groups file: ENOENT`));
  });

  it('names the file in parse errors', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, 'groups:\n  g: { hosts: [a.dev:1] }\n');
    await expect(loadGroupsFile(path)).rejects.toThrow(`${path}:2:16: groups."g".hosts[0]`);
  });
});

describe('FileGroupsSource.watch', () => {
  it('reloads after an in-place write', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    const { initial, next } = await watched(path);
    expect(hostOf(initial)).toBe('one.dev');
    await writeFile(path, groupsYaml('two.dev'));
    let event = await next();
    // On a loaded machine the reload may catch the file truncated but not yet written.
    if (event.error?.message.includes('file is empty')) event = await next();
    expect(hostOf(event.config!)).toBe('two.dev');
  });

  it('reloads after an atomic rename over the file', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    const { next } = await watched(path);
    await replace(path, groupsYaml('two.dev'));
    expect(hostOf((await next()).config!)).toBe('two.dev');
  });

  it('reloads after a Kubernetes-style ..data symlink swap', async () => {
    // The layout kubelet uses for ConfigMap volumes: groups.yml -> ..data/groups.yml, ..data -> ..<timestamp>
    await mkdir(join(dir, '..v1'));
    await writeFile(join(dir, '..v1', 'groups.yml'), groupsYaml('one.dev'));
    await symlink('..v1', join(dir, '..data'));
    await symlink(join('..data', 'groups.yml'), join(dir, 'groups.yml'));
    const { initial, next } = await watched(join(dir, 'groups.yml'));
    expect(hostOf(initial)).toBe('one.dev');

    await mkdir(join(dir, '..v2'));
    await writeFile(join(dir, '..v2', 'groups.yml'), groupsYaml('two.dev'));
    await symlink('..v2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await rm(join(dir, '..v1'), { recursive: true });
    expect(hostOf((await next()).config!)).toBe('two.dev');
  });

  it('reports a bad file, keeps the last good config and recovers', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    const { next, unchanged } = await watched(path);

    await replace(path, 'groups:\n  g: { hosts: [bad.dev:1] }\n');
    const { error } = await next();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.message).toContain(`${path}:2:16`);

    // Back to the config still in force: nothing changed, so no onChange.
    await replace(path, groupsYaml('one.dev'));
    await unchanged();

    await replace(path, groupsYaml('three.dev'));
    expect(hostOf((await next()).config!)).toBe('three.dev');
  });

  it('treats an emptied file as a write in progress, not as "no groups"', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    const { next } = await watched(path);
    await writeFile(path, '');
    expect((await next()).error!.message).toBe(`${path}: file is empty (a write in progress?); keeping the last good config`);
    await replace(path, groupsYaml('two.dev'));
    expect(hostOf((await next()).config!)).toBe('two.dev');
  });

  it('ignores writes that leave the config as it was and unrelated files', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    const { unchanged } = await watched(path);
    await replace(path, `# a comment\n${groupsYaml('one.dev')}`);
    await unchanged();
    await writeFile(join(dir, 'unrelated.txt'), 'x');
    await unchanged();
  });

  it('stops after close()', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    const closed = await watched(path);
    // A second watcher of the same file shows when the write has been seen and reloaded.
    const witness = await watched(path);
    closed.source.close();
    await replace(path, groupsYaml('two.dev'));
    expect(hostOf((await witness.next()).config!)).toBe('two.dev');
    await expect(closed.next(() => true, 500)).rejects.toThrow('no watch event');
  });
});

describe('groupsSourceFromUrl', () => {
  it('accepts a plain path and file:// URLs, absolute or relative like the seed', () => {
    expect(groupsSourceFromUrl('conf/groups.yml').name).toBe('conf/groups.yml');
    expect(groupsSourceFromUrl('file:///etc/reverst/groups.yml').name).toBe('/etc/reverst/groups.yml');
    expect(groupsSourceFromUrl('file://examples/simple/group.yml').name).toBe('examples/simple/group.yml');
    expect(groupsSourceFromUrl('file:///srv/my%20groups.yml').name).toBe('/srv/my groups.yml');
  });

  it('loads through the source it picked', async () => {
    const path = join(dir, 'groups.yml');
    await writeFile(path, groupsYaml('one.dev'));
    expect(hostOf(await groupsSourceFromUrl(`file://${path}`).load())).toBe('one.dev');
  });

  it.each([['s3://bucket/groups.yml', 'unknown tunnel groups source scheme "s3://": use a file path or one of file://']])('refuses %s', (spec, message) => {
    expect(() => groupsSourceFromUrl(spec)).toThrow(
      expect.objectContaining({ code: 'ERR_CONFIG_SOURCE_UNSUPPORTED', message: expect.stringContaining(message) }),
    );
  });
});
