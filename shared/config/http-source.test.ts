import { readFileSync, statSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually } from '../../test/contract/eventually.js';
import { startHttpServer, useCleanup, onCleanup, tempDir } from '../../test/harness/index.js';
import { ConfigError } from '../errors.js';
import { groupsSourceFromUrl } from './source.js';
import { HttpGroupsSource } from './http-source.js';
import type { GroupsConfig } from './groups.js';

useCleanup();

/** A stand-in control plane: answers what `next` says, and records each request's headers and query. */
async function controlPlane() {
  const state = {
    body: '{"groups":{"a":{"hosts":["a.test"]}}}',
    etag: '"v1"',
    status: 200,
    requests: [] as Array<{ url: string; ifNoneMatch: string | undefined; authorization: string | undefined }>,
  };
  const server = await startHttpServer((req: http.IncomingMessage, res: http.ServerResponse) => {
    state.requests.push({ url: req.url!, ifNoneMatch: req.headers['if-none-match'], authorization: req.headers.authorization });
    if (state.status !== 200) return res.writeHead(state.status).end('server error');
    if (req.headers['if-none-match'] === state.etag) {
      // A long-poll with nothing new: answer when the wait would end (kept short here).
      setTimeout(() => res.writeHead(304, { etag: state.etag }).end(), 50);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', etag: state.etag }).end(state.body);
  });
  return { url: `${server.url}/v1/groups`, state, server };
}

function follow(source: HttpGroupsSource) {
  const changes: GroupsConfig[] = [];
  const errors: Error[] = [];
  source.watch(
    (config) => changes.push(config),
    (error) => errors.push(error),
  );
  onCleanup(() => source.close());
  return { changes, errors };
}

describe('HttpGroupsSource', () => {
  it('is what -g http:// and https:// make', () => {
    expect(groupsSourceFromUrl('http://cp:8080/v1/groups')).toBeInstanceOf(HttpGroupsSource);
    expect(groupsSourceFromUrl('https://cp/v1/groups?key=s3cr3t').name).toBe('https://cp/v1/groups');
  });

  it('refuses credentials in the URL, and a URL it cannot read, without printing them', () => {
    expect(() => new HttpGroupsSource('https://user:s3cr3t@cp/v1/groups')).toThrow(
      'https://***@cp/v1/groups: give the API token with --control-plane-token-file, not in the URL',
    );
    expect(() => new HttpGroupsSource('https://user:s3/cr3t@cp/v1/groups')).toThrow(/^https:\/\/\*\*\*@cp\/v1\/groups: not a valid URL$/);
  });

  it('sends the token, long-polls with the ETag it has, and writes each new config to the cache', async () => {
    const cp = await controlPlane();
    const cachePath = path.join(tempDir('reverst-http-source-'), 'cache.json');
    const source = new HttpGroupsSource(cp.url, { token: 't0k', cachePath, watch: true, waitMs: 30_000 });
    const config = await source.load();
    expect([...config.groups.keys()]).toEqual(['a']);
    expect(readFileSync(cachePath, 'utf8')).toBe(cp.state.body);
    expect(statSync(cachePath).mode & 0o777).toBe(0o600);
    const { changes } = follow(source);
    await eventually(() => expect(cp.state.requests.length).toBeGreaterThanOrEqual(2), 5_000);
    expect(cp.state.requests[0]).toEqual({ url: '/v1/groups', ifNoneMatch: undefined, authorization: 'Bearer t0k' });
    expect(cp.state.requests[1]).toEqual({ url: '/v1/groups?wait=30s', ifNoneMatch: '"v1"', authorization: 'Bearer t0k' });

    cp.state.body = '{"groups":{"b":{"hosts":["b.test"]}}}';
    cp.state.etag = '"v2"';
    await eventually(() => expect(changes.map((c) => [...c.groups.keys()])).toEqual([['b']]), 5_000);
    expect(readFileSync(cachePath, 'utf8')).toBe(cp.state.body);
    expect(source.status()).toEqual({ ready: true, detail: `following ${cp.url}` });
  });

  it('keeps the last good config when the control plane publishes one it cannot read, and does not fetch it again', async () => {
    const cp = await controlPlane();
    const source = new HttpGroupsSource(cp.url, { watch: true, waitMs: 30_000 });
    await source.load();
    const { changes, errors } = follow(source);
    cp.state.body = '{"groups":{"a":{"hosts":"a.test"}}}';
    cp.state.etag = '"bad"';
    await eventually(() => expect(errors).toHaveLength(1), 5_000);
    expect(errors[0]).toBeInstanceOf(ConfigError);
    expect(errors[0]!.message).toBe(`${cp.url}:1:25: groups."a".hosts: expected a list of hosts, got a string`);
    // The next polls wait on the bad ETag instead of downloading it again and again.
    const seen = cp.state.requests.length;
    await eventually(() => expect(cp.state.requests.length).toBeGreaterThan(seen + 1), 5_000);
    expect(cp.state.requests.slice(seen).every((r) => r.ifNoneMatch === '"bad"')).toBe(true);
    expect(changes).toEqual([]);
  });

  it.each([
    ['answers 304 at once, ignoring ?wait=', true],
    ['sends no ETag, so each poll gets the whole config at once', false],
  ])('paces its polls against a server that %s', async (_, withEtag) => {
    const MIN_POLL_MS = 300;
    const arrivals: number[] = [];
    const server = await startHttpServer((req: http.IncomingMessage, res: http.ServerResponse) => {
      arrivals.push(performance.now());
      if (withEtag && req.headers['if-none-match'] === '"v1"') return res.writeHead(304, { etag: '"v1"' }).end();
      res.writeHead(200, { 'content-type': 'application/json', ...(withEtag ? { etag: '"v1"' } : {}) }).end('{"groups":{"a":{"hosts":["a.test"]}}}');
    });
    const source = new HttpGroupsSource(`${server.url}/v1/groups`, { watch: true, minPollIntervalMs: MIN_POLL_MS });
    await source.load();
    const { changes, errors } = follow(source);
    await eventually(() => expect(arrivals.length).toBeGreaterThanOrEqual(5), 10_000);
    // Unpaced, these polls came back to back (thousands a second).
    const gaps = arrivals.slice(2, 5).map((at, i) => at - arrivals[i + 1]!);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(MIN_POLL_MS - 20);
    expect({ changes, errors }).toEqual({ changes: [], errors: [] });
  });

  it('reports an outage once, retries with backoff, and says when it is back', async () => {
    const cp = await controlPlane();
    const source = new HttpGroupsSource(cp.url, { watch: true, waitMs: 30_000, retryMinMs: 20, retryMaxMs: 50 });
    await source.load();
    const { errors } = follow(source);
    cp.state.status = 503;
    cp.state.etag = '"v2"';
    // Several failed polls, one report.
    await eventually(() => expect(cp.state.requests.filter((r) => r.ifNoneMatch === '"v1"').length).toBeGreaterThanOrEqual(4), 5_000);
    expect(errors.map((e) => e.message)).toEqual([`control plane ${cp.url} answered 503: server error`]);
    expect(source.status()).toMatchObject({ ready: true, detail: expect.stringMatching(/^keeping the last config; control plane unreachable since /) });
    cp.state.status = 200;
    await eventually(() => expect(source.status()).toEqual({ ready: true, detail: `following ${cp.url}` }), 5_000);
  });
});
