import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startHttpServer, useCleanup, onCleanup, tempDir } from '../harness/index.js';
import { ServerError, Tunnel, UnauthorizedError, basic, bearer, connect, type Auth } from '../../client/index.js';
import { startTestNode, visit, writeGroups, type TestNode } from './helpers.js';

useCleanup();

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A real external-auth endpoint: allows `Bearer good` (or `JWT good`) for the group it is told about. */
async function authEndpoint(): Promise<{ url: string; slowUrl: string; seen: string[] }> {
  const seen: string[] = [];
  const server = await startHttpServer((req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push(`${req.headers.authorization} ${req.headers['x-reverst-group']}`);
    if (req.url === '/slow') return; // never answers
    const ok = /^(Bearer|JWT) good$/.test(req.headers.authorization ?? '');
    res.writeHead(ok ? 200 : 403).end();
  });
  return { url: `${server.url}/auth`, slowUrl: `${server.url}/slow`, seen };
}

function groupsYaml(external: { url: string; slowUrl: string }, tokenFile: string): string {
  const group = (name: string, auth: string) => `  "${name}":\n    hosts: ["${name}.test"]\n${auth}`;
  return [
    'groups:',
    group('basic', '    authentication:\n      basic: { username: "user", password: "pass" }\n'),
    group('bearer', '    authentication:\n      bearer: { token: "plain-token" }\n'),
    group('hashed', `    authentication:\n      bearer: { hashedToken: "${sha256('hashed-token')}" }\n`),
    group('fromfile', `    authentication:\n      bearer: { tokenPath: "${tokenFile}" }\n`),
    group('external', `    authentication:\n      external: { endpoint: "${external.url}" }\n`),
    group('slowauth', `    authentication:\n      external: { endpoint: "${external.slowUrl}", timeout: 300ms }\n`),
    group(
      'overrides',
      '    authentication:\n      basic: { username: "u", password: "p", scheme: "Custom" }\n      bearer: { token: "t", scheme: "Token" }\n' +
        `      external: { endpoint: "${external.url}", scheme: "JWT" }\n`,
    ),
    group('open', ''),
  ].join('\n');
}

async function register(t: TestNode, group: string, auth: Auth | undefined): Promise<Tunnel> {
  const tunnel = await connect({
    addresses: [t.address],
    serverName: 'flipt.dev.local',
    ca: t.ca.cert,
    group,
    auth,
    handler: () => new Response(`hello from ${group}`),
    minDelayMs: 50,
    maxDelayMs: 200,
  });
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

describe('authentication strategies, through a node and the client', () => {
  it('accepts the right credentials and refuses the wrong ones, for every strategy and scheme', async () => {
    const external = await authEndpoint();
    const dir = tempDir('reverst-auth-');
    writeFileSync(path.join(dir, 'token.txt'), 'file-token\n');
    const t = await startTestNode({ groups: writeGroups(groupsYaml(external, 'token.txt'), dir) });

    const cases: Array<[string, Auth | undefined, 'ok' | 'unauthorized']> = [
      ['basic', basic('user', 'pass'), 'ok'],
      ['basic', basic('user', 'wrong'), 'unauthorized'],
      ['basic', bearer('pass'), 'unauthorized'],
      ['bearer', bearer('plain-token'), 'ok'],
      ['bearer', bearer('plain-token-not'), 'unauthorized'],
      ['hashed', bearer('hashed-token'), 'ok'],
      ['hashed', bearer(sha256('hashed-token')), 'unauthorized'],
      ['fromfile', bearer('file-token'), 'ok'],
      ['fromfile', bearer('file-token-2'), 'unauthorized'],
      ['external', bearer('good'), 'ok'],
      ['external', bearer('bad'), 'unauthorized'],
      ['overrides', { scheme: 'Custom', credentials: Buffer.from('u:p').toString('base64') }, 'ok'],
      ['overrides', basic('u', 'p'), 'unauthorized'], // Basic is not this group's scheme
      ['overrides', { scheme: 'Token', credentials: 't' }, 'ok'],
      ['overrides', bearer('t'), 'unauthorized'],
      ['overrides', { scheme: 'JWT', credentials: 'good' }, 'ok'],
      ['overrides', { scheme: 'JWT', credentials: 'bad' }, 'unauthorized'],
      ['open', undefined, 'ok'],
    ];
    for (const [group, auth, expected] of cases) {
      const outcome = await register(t, group, auth).then(
        () => 'ok',
        (err: unknown) => (err instanceof UnauthorizedError ? 'unauthorized' : `other: ${String(err)}`),
      );
      expect({ group, auth, outcome }).toEqual({ group, auth, outcome: expected });
    }
    // Registered tunnels serve their own group's hosts.
    expect((await visit(t.node.httpAddress.port, '/', { host: 'overrides.test' })).body.toString()).toBe('hello from overrides');
    expect((await visit(t.node.httpAddress.port, '/', { host: 'open.test' })).body.toString()).toBe('hello from open');
    // The external endpoint saw the client's header and the group.
    expect(external.seen).toContain('Bearer good external');
    expect(external.seen).toContain('JWT good overrides');
  });

  it('keeps other registrations going while an external endpoint times out, and tells that client to retry', async () => {
    const external = await authEndpoint();
    const dir = tempDir('reverst-auth-');
    writeFileSync(path.join(dir, 'token.txt'), 'file-token\n');
    const t = await startTestNode({ groups: writeGroups(groupsYaml(external, 'token.txt'), dir) });
    const slow = new Tunnel({
      addresses: [t.address],
      serverName: 'flipt.dev.local',
      ca: t.ca.cert,
      group: 'slowauth',
      auth: bearer('good'),
      handler: () => new Response('never'),
      minDelayMs: 50,
      maxDelayMs: 200,
    });
    onCleanup(() => slow.close({ graceMs: 0 }));
    const firstRetry = once(slow, 'reconnecting');
    // A registration on another group is not held up by the slow endpoint.
    const started = performance.now();
    await register(t, 'basic', basic('user', 'pass'));
    expect(performance.now() - started).toBeLessThan(1_000);
    // The timed-out client is told to retry (server error), not refused for good.
    const [event] = (await firstRetry) as [{ error: Error }];
    expect(event.error).toBeInstanceOf(ServerError);
    expect(event.error.message).toMatch(/authentication unavailable/);
    expect(external.seen).toContain('Bearer good slowauth');
  });
});
