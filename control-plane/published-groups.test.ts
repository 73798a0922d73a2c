import { describe, expect, it } from 'vitest';
import { parseGroups, type GroupsConfig } from '../shared/config/groups.js';
import { ConfigError } from '../shared/errors.js';
import { PublishedGroups } from './published-groups.js';

const yaml = (password: string, extra = '') => `groups:
  a:
    hosts: [a.test]
    authentication:
      basic: { username: user, password: "${password}" }
      bearer: { token: secret-token }
${extra}`;
const config = (text: string): Promise<GroupsConfig> => parseGroups(text, 'groups.yml');

describe('PublishedGroups', () => {
  it('publishes the same bytes and ETag on every replica and after a restart, given the same config and token', async () => {
    const [a, b] = [new PublishedGroups({ saltKey: 'token' }), new PublishedGroups({ saltKey: 'token' })];
    const [sa, sb] = [await a.publish(await config(yaml('pw')), 'a.yml'), await b.publish(await config(yaml('pw')), 'b.yml')];
    expect(sb.body).toBe(sa.body);
    expect(sb.etag).toBe(sa.etag);
    // Another deployment (another token) salts its password hashes differently.
    const other = await new PublishedGroups({ saltKey: 'another-token' }).publish(await config(yaml('pw')), 'a.yml');
    expect(other.etag).not.toBe(sa.etag);
    expect(JSON.parse(other.body).groups.a.authentication.bearer).toEqual(JSON.parse(sa.body).groups.a.authentication.bearer);
  });

  it('keeps its snapshot and wakes nobody when a reload publishes the same thing', async () => {
    const groups = new PublishedGroups({ saltKey: 'token' });
    const first = await groups.publish(await config(yaml('pw')), 'groups.yml');
    const waiting = groups.changed(first.etag, 300);
    expect(await groups.publish(await config(`# edited\n${yaml('pw')}`), 'groups.yml')).toBe(first);
    expect(await waiting).toBeUndefined();
  });

  it('wakes waiters with the new snapshot on a change', async () => {
    const groups = new PublishedGroups({ saltKey: 'token' });
    const first = await groups.publish(await config(yaml('pw')), 'groups.yml');
    const waiting = Array.from({ length: 3 }, () => groups.changed(first.etag, 30_000));
    const second = await groups.publish(await config(yaml('pw2')), 'groups.yml');
    for (const next of await Promise.all(waiting)) expect(next).toBe(second);
  });

  it('lets waiters go on close and on abort', async () => {
    const groups = new PublishedGroups({ saltKey: 'token' });
    const { etag } = await groups.publish(await config(yaml('pw')), 'groups.yml');
    const controller = new AbortController();
    const aborted = groups.changed(etag, 30_000, controller.signal);
    controller.abort();
    expect(await aborted).toBeUndefined();
    const closing = groups.changed(etag, 30_000);
    groups.close();
    expect(await closing).toBeUndefined();
    expect(groups.readiness()).toEqual({ ready: false, detail: 'shutting down' });
  });

  it('applies publishes in order, so an older config never replaces a newer one', async () => {
    const groups = new PublishedGroups({ saltKey: 'token' });
    const older = groups.publish(await config(yaml('pw', '  b: { hosts: [b.test] }\n')), 'groups.yml');
    const newer = groups.publish(await config(yaml('pw2')), 'groups.yml');
    await Promise.all([older, newer]);
    expect(groups.current).toBe(await newer);
    expect([...groups.current!.config.groups.keys()]).toEqual(['a']);
  });

  it('says in its readiness what it serves and what failed', async () => {
    const groups = new PublishedGroups({ saltKey: 'token' });
    const broken = new ConfigError([{ source: 'groups.yml', line: 3, column: 5, message: 'bad' }]);
    groups.reportSource(broken);
    expect(groups.readiness()).toEqual({ ready: false, detail: 'no tunnel groups loaded yet: groups.yml:3:5: bad' });
    await groups.publish(await config(yaml('pw')), 'groups.yml');
    expect(groups.readiness()).toEqual({ ready: true, detail: 'serving 1 group(s) from groups.yml' });
    groups.reportSource(broken);
    expect(groups.readiness()).toEqual({ ready: true, detail: 'serving 1 group(s) from groups.yml; the last reload failed: groups.yml:3:5: bad' });
  });
});
