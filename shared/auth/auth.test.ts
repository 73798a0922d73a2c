import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { GroupAuthentication } from '../config/groups.js';
import { createLogger } from '../log.js';
import { DEFAULT_LOG_BURST } from '../log-limits.js';
import { createAuthenticator, parseAuthorization, type AuthenticatorOptions } from './index.js';
import { eventually } from '../../test/contract/eventually.js';
import { PasswordChecks, hashPassword } from './password-hash.js';
import { heldDerivation } from '../../test/harness/held-derivation.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const basicHeader = (user: string, pass: string, scheme = 'Basic') => `${scheme} ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
const authenticator = (authentication: GroupAuthentication, options?: AuthenticatorOptions) => createAuthenticator({ authentication }, options);

const basic = { scheme: 'Basic', username: 'user', password: 'p:ss wörd' };
const bearer = { scheme: 'Bearer', hashedToken: sha256('s3cret') };

describe('parseAuthorization', () => {
  it.each([
    ['Bearer abc', { scheme: 'Bearer', payload: 'abc' }],
    ['  JWT   a.b.c  ', { scheme: 'JWT', payload: 'a.b.c' }],
    ['Custom two words', { scheme: 'Custom', payload: 'two words' }],
  ])('%j', (header, expected) => expect(parseAuthorization(header)).toMatchObject(expected));

  it.each(['Bearer', 'Bearer   ', ''])('rejects %j', (header) => expect(parseAuthorization(header)).toBeUndefined());
});

describe('no strategies', () => {
  it('lets anyone register', async () => {
    const auth = authenticator({});
    expect(await auth.authenticate(undefined, 'g')).toEqual({ ok: true, strategy: 'none' });
    expect(await auth.authenticate('Basic garbage', 'g')).toEqual({ ok: true, strategy: 'none' });
  });
});

describe('basic', () => {
  const auth = authenticator({ basic });

  it('allows the right username and password (password may contain ":")', async () => {
    expect(await auth.authenticate(basicHeader('user', 'p:ss wörd'), 'g')).toEqual({ ok: true, strategy: 'basic' });
  });

  it('compares the scheme case-insensitively', async () => {
    expect(await auth.authenticate(basicHeader('user', 'p:ss wörd', 'bASIC'), 'g')).toMatchObject({ ok: true });
  });

  it.each([
    ['wrong password', basicHeader('user', 'nope'), 'basic: wrong username or password'],
    ['wrong username', basicHeader('admin', 'p:ss wörd'), 'basic: wrong username or password'],
    ['a much longer password', basicHeader('user', 'x'.repeat(10_000)), 'basic: wrong username or password'],
    ['empty credentials', basicHeader('', ''), 'basic: wrong username or password'],
    ['no colon', `Basic ${Buffer.from('userpass').toString('base64')}`, 'basic: credentials have no ":" between username and password'],
    ['not base64', 'Basic us#er:pass', 'basic: credentials are not base64'],
    ['another scheme', 'Bearer s3cret', 'scheme "Bearer" is not accepted by this group (accepted: Basic)'],
    ['no payload', 'Basic', 'Authorization metadata is not "<Scheme> <credentials>"'],
    ['no header', undefined, 'no Authorization metadata'],
  ])('denies %s', async (_, header, reason) => {
    expect(await auth.authenticate(header, 'g')).toEqual({ ok: false, reason });
  });

  it('answers to an overridden scheme only', async () => {
    const custom = authenticator({ basic: { ...basic, scheme: 'Tunnel' } });
    expect(await custom.authenticate(basicHeader('user', 'p:ss wörd', 'tunnel'), 'g')).toMatchObject({ ok: true });
    expect(await custom.authenticate(basicHeader('user', 'p:ss wörd'), 'g')).toMatchObject({ ok: false });
  });
});

describe('basic with a password hash (as a control plane publishes it)', () => {
  const salt = new Uint8Array(16).fill(1);

  it('allows the password the hash was made from, and nothing else', async () => {
    const passwordHash = await hashPassword('p:ss wörd', salt);
    const checks = new PasswordChecks();
    const auth = authenticator({ basic: { scheme: 'Basic', username: 'user', passwordHash } }, { passwordChecks: checks });
    expect(await auth.authenticate(basicHeader('user', 'p:ss wörd'), 'g')).toEqual({ ok: true, strategy: 'basic' });
    expect(await auth.authenticate(basicHeader('user', 'nope'), 'g')).toEqual({ ok: false, reason: 'basic: wrong username or password' });
    expect(await auth.authenticate(basicHeader('admin', 'p:ss wörd'), 'g')).toEqual({ ok: false, reason: 'basic: wrong username or password' });
    expect(await auth.authenticate(basicHeader('user', passwordHash), 'g')).toMatchObject({ ok: false });
    // The accepted password was derived once; the next registration with it is a cache hit.
    const before = checks.derivations;
    expect(await auth.authenticate(basicHeader('user', 'p:ss wörd'), 'g')).toMatchObject({ ok: true });
    expect(checks.derivations).toBe(before);
  });

  it('answers "unavailable" (the client retries) when too many checks are waiting', async () => {
    const passwordHash = await hashPassword('pass', salt);
    const hold = heldDerivation();
    const auth = authenticator(
      { basic: { scheme: 'Basic', username: 'user', passwordHash } },
      { passwordChecks: new PasswordChecks({ maxConcurrent: 1, maxQueued: 0, derive: hold.derive }) },
    );
    const first = auth.authenticate(basicHeader('user', 'guess-1'), 'g');
    await eventually(() => expect(hold.started).toBe(1), 5_000);
    expect(await auth.authenticate(basicHeader('user', 'guess-2'), 'g')).toEqual({
      ok: false,
      reason: 'basic: too many password checks in progress',
      unavailable: true,
    });
    hold.open();
    expect(await first).toEqual({ ok: false, reason: 'basic: wrong username or password' });
  });
});

describe('bearer', () => {
  it('allows the token whose SHA-256 is configured, and nothing else', async () => {
    const auth = authenticator({ bearer });
    expect(await auth.authenticate('Bearer s3cret', 'g')).toEqual({ ok: true, strategy: 'bearer' });
    expect(await auth.authenticate('bearer s3cret', 'g')).toMatchObject({ ok: true });
    expect(await auth.authenticate('Bearer s3cret2', 'g')).toEqual({ ok: false, reason: 'bearer: wrong token' });
    expect(await auth.authenticate(`Bearer ${sha256('s3cret')}`, 'g')).toMatchObject({ ok: false });
  });

  it('answers to an overridden scheme only', async () => {
    const auth = authenticator({ bearer: { ...bearer, scheme: 'Token' } });
    expect(await auth.authenticate('Token s3cret', 'g')).toMatchObject({ ok: true });
    expect(await auth.authenticate('Bearer s3cret', 'g')).toMatchObject({ ok: false, reason: expect.stringContaining('accepted: Token') });
  });
});

describe('external', () => {
  type Seen = { method: string | undefined; url: string | undefined; authorization: string | undefined; group: string | undefined };
  const servers: http.Server[] = [];
  afterEach(async () => {
    await Promise.all(
      servers.splice(0).map((server) => {
        server.closeAllConnections();
        return new Promise((resolve) => server.close(resolve));
      }),
    );
  });

  /** A real auth endpoint on a free port; `respond` decides each answer. */
  async function authServer(respond: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
    const seen: Seen[] = [];
    const server = http.createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, authorization: req.headers.authorization, group: req.headers['x-reverst-group'] as string });
      respond(req, res);
    });
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth/ext`, seen };
  }

  const allowToken = (token: string) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    res.statusCode = req.headers.authorization === `Bearer ${token}` ? 200 : 401;
    res.end('decision body');
  };

  it('allows on 200 and forwards the Authorization header and the group', async () => {
    const { endpoint, seen } = await authServer(allowToken('good'));
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } });
    expect(await auth.authenticate('Bearer good', 'flipt.dev.local')).toEqual({ ok: true, strategy: 'external' });
    expect(seen).toEqual([{ method: 'GET', url: '/auth/ext', authorization: 'Bearer good', group: 'flipt.dev.local' }]);
  });

  it('denies on any other status, naming it', async () => {
    const { endpoint } = await authServer(allowToken('good'));
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } });
    expect(await auth.authenticate('Bearer bad', 'g')).toEqual({ ok: false, reason: `external: ${endpoint} answered 401` });
  });

  it('denies as unavailable (retry later) on a 5xx: the service failed, not the credentials', async () => {
    const { endpoint } = await authServer((_req, res) => res.writeHead(503).end('key server down'));
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } });
    expect(await auth.authenticate('Bearer x', 'g')).toEqual({ ok: false, reason: `external: ${endpoint} answered 503`, unavailable: true });
  });

  it('keeps credentials in the endpoint URL out of the reason the client gets and the log, and sends no userinfo (as the seed)', async () => {
    const { endpoint, seen } = await authServer((_req, res) => res.writeHead(503).end());
    const withSecrets = endpoint.replace('http://', 'http://admin:s3cr3t@').concat('?key=s3cr3t');
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', stream: { write: (line) => lines.push(line) } });
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint: withSecrets } }, { logger });
    const redacted = `${endpoint.replace('http://', 'http://***@')}`;
    expect(await auth.authenticate('Bearer x', 'g')).toEqual({ ok: false, reason: `external: ${redacted} answered 503`, unavailable: true });
    expect(seen).toEqual([{ method: 'GET', url: '/auth/ext?key=s3cr3t', authorization: 'Bearer x', group: 'g' }]);
    expect(lines).toHaveLength(1);
    expect(lines.join('')).not.toContain('s3cr3t');
  });

  it('does not follow redirects', async () => {
    const { endpoint, seen } = await authServer((req, res) => {
      if (req.url === '/auth/ext') res.writeHead(302, { location: '/ok' }).end();
      else res.writeHead(200).end();
    });
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } });
    expect(await auth.authenticate('Bearer x', 'g')).toEqual({ ok: false, reason: `external: ${endpoint} answered 302` });
    expect(seen.map((s) => s.url)).toEqual(['/auth/ext']);
  });

  it('denies as unavailable (retry later) when the endpoint is unreachable, and warns', async () => {
    const { endpoint } = await authServer(() => {});
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', stream: { write: (line) => lines.push(line) } });
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } }, { logger });
    const result = await auth.authenticate('Bearer x', 'g');
    expect(result).toEqual({
      ok: false,
      reason: expect.stringMatching(new RegExp(`^external: request to ${endpoint} failed: .*ECONNREFUSED`)),
      unavailable: true,
    });
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ level: 'warn', component: 'auth', strategy: 'external', endpoint, group: 'g', reason: (result as { reason: string }).reason }),
    ]);
  });

  it('warns of an unreachable endpoint at most DEFAULT_LOG_BURST times per window, however many clients try', async () => {
    const { endpoint } = await authServer(() => {});
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', stream: { write: (line) => lines.push(line) } });
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } }, { logger });
    for (let i = 0; i < DEFAULT_LOG_BURST * 3; i++) expect(await auth.authenticate('Bearer x', 'g')).toMatchObject({ ok: false, unavailable: true });
    expect(lines).toHaveLength(DEFAULT_LOG_BURST);
  });

  it('denies as unavailable after the timeout, without waiting for a slow endpoint', async () => {
    const { endpoint } = await authServer(() => {}); // never answers
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint } }, { externalTimeoutMs: 200 });
    const started = Date.now();
    expect(await auth.authenticate('Bearer x', 'g')).toEqual({ ok: false, reason: `external: no answer from ${endpoint} within 200ms`, unavailable: true });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("prefers the group's own timeout", async () => {
    const { endpoint } = await authServer(() => {});
    const auth = authenticator({ external: { scheme: 'Bearer', endpoint, timeoutMs: 100 } }, { externalTimeoutMs: 60_000 });
    expect(await auth.authenticate('Bearer x', 'g')).toMatchObject({ ok: false, reason: expect.stringContaining('within 100ms') });
  });

  it('does not hold up other registrations while it waits', async () => {
    const { endpoint } = await authServer(() => {});
    const auth = authenticator({ basic, external: { scheme: 'JWT', endpoint } }, { externalTimeoutMs: 500 });
    const order: string[] = [];
    const slow = auth.authenticate('JWT a.b.c', 'g').then(() => order.push('external'));
    const fast = auth.authenticate(basicHeader('user', 'p:ss wörd'), 'g').then(() => order.push('basic'));
    await Promise.all([slow, fast]);
    expect(order).toEqual(['basic', 'external']);
  });
});

describe('several strategies', () => {
  it("routes by the header's scheme, so bearer and external can coexist on different schemes", async () => {
    const seen: string[] = [];
    const fetch = (async (_url: string | URL | Request, init?: RequestInit) => {
      seen.push(new Headers(init?.headers).get('authorization')!);
      return new Response(null, { status: 200 });
    }) as typeof globalThis.fetch;
    const auth = authenticator({ basic, bearer, external: { scheme: 'JWT', endpoint: 'http://auth.invalid/' } }, { fetch });

    expect(await auth.authenticate(basicHeader('user', 'p:ss wörd'), 'g')).toMatchObject({ ok: true, strategy: 'basic' });
    expect(await auth.authenticate('Bearer s3cret', 'g')).toMatchObject({ ok: true, strategy: 'bearer' });
    expect(await auth.authenticate('Bearer wrong', 'g')).toMatchObject({ ok: false, reason: 'bearer: wrong token' });
    expect(await auth.authenticate('jwt a.b.c', 'g')).toMatchObject({ ok: true, strategy: 'external' });
    expect(seen).toEqual(['jwt a.b.c']);
    expect(await auth.authenticate('Digest x', 'g')).toEqual({
      ok: false,
      reason: 'scheme "Digest" is not accepted by this group (accepted: Basic, Bearer, JWT)',
    });
  });

  it('refuses two strategies on one scheme', () => {
    expect(() => authenticator({ bearer, external: { scheme: 'bearer', endpoint: 'http://a/' } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', message: expect.stringContaining('"bearer"') }),
    );
  });
});
