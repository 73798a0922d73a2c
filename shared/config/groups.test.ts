import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { parseDuration } from './duration.js';
import { fileTokenReader, loadGroupsFile } from './file-source.js';
import { parseGroups, type ParseGroupsOptions } from './groups.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const yaml = (lines: string[]) => `${lines.join('\n')}\n`;

async function group(text: string, options?: ParseGroupsOptions) {
  const config = await parseGroups(text, 'groups.yml', options);
  expect(config.groups.size).toBe(1);
  return [...config.groups.values()][0]!;
}

async function configError(text: string, options?: ParseGroupsOptions): Promise<ConfigError> {
  const error = await parseGroups(text, 'groups.yml', options).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe('parseGroups: what the seed accepts', () => {
  it('loads the README example (basic auth)', async () => {
    const g = await group(
      yaml([
        'groups:',
        '  "group-name":',
        '    hosts:',
        '    - "some.host.address.dev" # Host for routing inbound HTTP requests to tunnel group',
        '    authentication:',
        '      basic:',
        '        username: "user"',
        '        password: "pass"',
      ]),
    );
    expect(g).toEqual({
      name: 'group-name',
      hosts: ['some.host.address.dev'],
      authentication: { basic: { scheme: 'Basic', username: 'user', password: 'pass' } },
      loadBalancing: 'round-robin',
    });
  });

  it('loads all three strategies at once with distinct schemes', async () => {
    const g = await group(
      yaml([
        'groups:',
        '  "group-name":',
        '    hosts: ["some.host.address.dev"]',
        '    authentication:',
        '      basic: { username: "user", password: "pass" }',
        '      bearer: { token: "some-token" }',
        '      external: { scheme: "JWT", endpoint: "http://some-external-endpoint/auth/ext" }',
      ]),
    );
    expect(g.authentication).toEqual({
      basic: { scheme: 'Basic', username: 'user', password: 'pass' },
      bearer: { scheme: 'Bearer', hashedToken: sha256('some-token') },
      external: { scheme: 'JWT', endpoint: 'http://some-external-endpoint/auth/ext' },
    });
  });

  it('treats a group without strategies, a null group and an empty file as valid', async () => {
    const config = await parseGroups(yaml(['groups:', '  open:', '    hosts: [open.dev]', '  bare:', '  nulls: { hosts: ~, authentication: ~ }']), 'g.yml');
    expect([...config.groups.values()].map((g) => [g.name, g.hosts, g.authentication])).toEqual([
      ['open', ['open.dev'], {}],
      ['bare', [], {}],
      ['nulls', [], {}],
    ]);
    expect((await parseGroups('', 'g.yml')).groups.size).toBe(0);
    expect((await parseGroups('groups: {}\n', 'g.yml')).groups.size).toBe(0);
  });

  it('reads non-string scalars as written, like Go yaml.v3 does for string fields', async () => {
    const g = await group(yaml(['groups:', '  123:', '    authentication:', '      basic: { username: true, password: 0x1F }']));
    expect(g.name).toBe('123');
    expect(g.authentication.basic).toMatchObject({ username: 'true', password: '0x1F' });
  });

  it('treats empty strings as unset, as the seed does', async () => {
    const g = await group(
      yaml([
        'groups:',
        '  g:',
        '    authentication:',
        '      bearer: { scheme: "", token: "", hashedToken: "" , tokenPath: "" , hashedTokenPath: "' + 'A'.repeat(64) + '" }',
      ]),
      {
        readFile: async () => 'b'.repeat(64),
      },
    );
    expect(g.authentication.bearer).toEqual({ scheme: 'Bearer', hashedToken: 'b'.repeat(64) });
  });

  it('follows YAML anchors and aliases', async () => {
    const config = await parseGroups(
      yaml(['groups:', '  a:', '    authentication: &auth', '      basic: { username: u, password: p }', '  b:', '    authentication: *auth']),
      'g.yml',
    );
    expect(config.groups.get('b')!.authentication).toEqual(config.groups.get('a')!.authentication);
  });
});

describe('parseGroups: bearer token forms', () => {
  const bearer = (fields: string) => yaml(['groups:', '  g:', '    authentication:', `      bearer: { ${fields} }`]);

  it('hashes an inline token', async () => {
    expect((await group(bearer('token: "s3cret"'))).authentication.bearer).toEqual({ scheme: 'Bearer', hashedToken: sha256('s3cret') });
  });

  it('accepts a hashed token in any hex case', async () => {
    const digest = sha256('s3cret');
    expect((await group(bearer(`hashedToken: "${digest.toUpperCase()}"`))).authentication.bearer!.hashedToken).toBe(digest);
  });

  it('reads tokenPath and hashedTokenPath through the injected reader, trimming the final newline', async () => {
    const files: Record<string, string> = { 'secrets/token': 's3cret\n', 'secrets/hash': `${sha256('other')}\n` };
    const readFile = async (path: string) => {
      if (!(path in files)) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
      return files[path]!;
    };
    expect((await group(bearer('tokenPath: secrets/token'), { readFile })).authentication.bearer!.hashedToken).toBe(sha256('s3cret'));
    expect((await group(bearer('hashedTokenPath: secrets/hash'), { readFile })).authentication.bearer!.hashedToken).toBe(sha256('other'));
    const error = await configError(bearer('tokenPath: secrets/missing'), { readFile });
    expect(error.message).toBe(
      `groups.yml:4:28: groups."g".authentication.bearer.tokenPath: cannot read token file "secrets/missing": ENOENT: no such file or directory, open 'secrets/missing'`,
    );
  });

  it('resolves token paths against the directory of the file they are in', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'reverst-groups-'));
    try {
      await writeFile(join(dir, 'token'), 'from-file\n');
      const g = await group(bearer('tokenPath: token'), { readFile: fileTokenReader(dir) });
      expect(g.authentication.bearer!.hashedToken).toBe(sha256('from-file'));
      await writeFile(join(dir, 'groups.yml'), bearer('tokenPath: token'));
      const fromSourceDir = await loadGroupsFile(join(dir, 'groups.yml'));
      expect(fromSourceDir.groups.get('g')!.authentication.bearer!.hashedToken).toBe(sha256('from-file'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed k8s:// token path before asking any API', async () => {
    const readFile = fileTokenReader(tmpdir());
    expect((await configError(bearer('tokenPath: "k8s://secret/ns/name"'), { readFile })).message).toBe(
      'groups.yml:4:28: groups."g".authentication.bearer.tokenPath: k8s://secret/ns/name: needs four parts (expected k8s://secret/<namespace>/<name>/<key>)',
    );
    expect((await configError(bearer('tokenPath: "k8s://configmap/ns/name/key"'), { readFile })).message).toBe(
      'groups.yml:4:28: groups."g".authentication.bearer.tokenPath: k8s://configmap/ns/name/key: a ConfigMap cannot be used here (expected k8s://secret/<namespace>/<name>/<key>)',
    );
  });

  it('keeps a scheme override', async () => {
    expect((await group(bearer('scheme: Token, token: t'))).authentication.bearer!.scheme).toBe('Token');
  });
});

describe('parseGroups: extensions', () => {
  it('reads loadBalancing and an external timeout', async () => {
    const g = await group(
      yaml([
        'groups:',
        '  g:',
        '    loadBalancing: least-inflight',
        '    authentication:',
        '      external: { endpoint: "https://auth.example/check", timeout: 1m30s }',
      ]),
    );
    expect(g.loadBalancing).toBe('least-inflight');
    expect(g.authentication.external).toEqual({ scheme: 'Bearer', endpoint: 'https://auth.example/check', timeoutMs: 90_000 });
  });

  it('normalizes hosts and drops duplicates within one group', async () => {
    const g = await group(yaml(['groups:', '  g:', '    hosts: ["App.Example.DEV.", "app.example.dev", "*.Apps.dev", "10.0.0.1"]']));
    expect(g.hosts).toEqual(['app.example.dev', '*.apps.dev', '10.0.0.1']);
  });
});

describe('parseGroups: what a control plane adds (extensions)', () => {
  const hash = `$pbkdf2-sha256$i=100000$${'A'.repeat(22)}$${'B'.repeat(43)}`;

  it('reads a basic passwordHash instead of a password', async () => {
    const g = await group(yaml(['groups:', '  g:', '    authentication:', `      basic: { username: u, passwordHash: "${hash}" }`]));
    expect(g.authentication.basic).toEqual({ scheme: 'Basic', username: 'u', passwordHash: hash });
  });

  it('reads external.accept: tokens by their SHA-256, and a JWT rule with its defaults', async () => {
    const g = await group(
      yaml([
        'groups:',
        '  g:',
        '    authentication:',
        '      external:',
        '        endpoint: http://cp:8080/v1/auth/external',
        '        accept:',
        '          tokens: [t1]',
        `          hashedTokens: ["${sha256('t2').toUpperCase()}"]`,
        '          jwt:',
        '            issuer: https://idp.example',
        '            audience: reverst',
        '            jwksUrl: https://idp.example/jwks.json',
      ]),
    );
    expect(g.authentication.external).toEqual({
      scheme: 'Bearer',
      endpoint: 'http://cp:8080/v1/auth/external',
      accept: {
        hashedTokens: [sha256('t1'), sha256('t2')],
        jwt: {
          issuer: 'https://idp.example',
          audience: ['reverst'],
          jwksUrl: 'https://idp.example/jwks.json',
          groupsClaim: 'groups',
          clockToleranceMs: 30_000,
        },
      },
    });
  });

  it('reads a JWT rule with a static key, algorithms, its own claim and tolerance', async () => {
    const g = await group(
      yaml([
        'groups:',
        '  g:',
        '    authentication:',
        '      external:',
        '        endpoint: http://cp/v1/auth/external',
        '        accept:',
        '          jwt:',
        '            issuer: i',
        '            audience: [a, b]',
        '            publicKey: |',
        '              -----BEGIN PUBLIC KEY-----',
        '              MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=',
        '              -----END PUBLIC KEY-----',
        '            algorithms: [EdDSA]',
        '            groupsClaim: tunnels',
        '            clockTolerance: 5s',
      ]),
    );
    expect(g.authentication.external!.accept!.jwt).toEqual({
      issuer: 'i',
      audience: ['a', 'b'],
      publicKey: '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n',
      algorithms: ['EdDSA'],
      groupsClaim: 'tunnels',
      clockToleranceMs: 5000,
    });
  });

  const ext = (...lines: string[]) => yaml(['groups:', '  g:', '    authentication:', '      external:', '        endpoint: http://cp/x', ...lines]);
  it.each([
    [
      'a password and a passwordHash',
      yaml(['groups:', '  g:', '    authentication:', `      basic: { username: u, password: p, passwordHash: "${hash}" }`]),
      'groups.yml:4:29: groups."g".authentication.basic.password: conflicts with passwordHash: set only one of them',
    ],
    [
      'a passwordHash that is not PBKDF2',
      yaml(['groups:', '  g:', '    authentication:', '      basic: { username: u, passwordHash: "$2y$10$abc" }']),
      'groups.yml:4:43: groups."g".authentication.basic.passwordHash: expected "$pbkdf2-sha256$i=<iterations>$<salt>$<hash>" (PBKDF2-HMAC-SHA-256, base64)',
    ],
    [
      'an empty accept block',
      ext('        accept: {}'),
      'groups.yml:6:17: groups."g".authentication.external.accept: give at least one of tokens, hashedTokens or jwt (an empty accept block lets nobody in)',
    ],
    [
      'a bad hashed token',
      ext('        accept: { hashedTokens: [abc] }'),
      'groups.yml:6:33: groups."g".authentication.external.accept.hashedTokens[0]: must be a SHA-256 digest in hex (64 characters 0-9a-f)',
    ],
    [
      'a JWT rule without issuer',
      ext('        accept:', '          jwt: { audience: a, jwksUrl: "https://i/jwks" }'),
      'groups.yml:7:16: groups."g".authentication.external.accept.jwt.issuer: required: the "iss" the identity provider puts in its tokens',
    ],
    [
      'a JWT rule with two key sources',
      ext('        accept:', '          jwt: { issuer: i, audience: a, jwksUrl: "https://i/jwks", publicKey: x }'),
      'groups.yml:7:80: groups."g".authentication.external.accept.jwt: give exactly one of jwksUrl and publicKey',
    ],
    [
      'a symmetric algorithm',
      ext('        accept:', '          jwt: { issuer: i, audience: a, jwksUrl: "https://i/jwks", algorithms: [HS256] }'),
      'groups.yml:7:82: groups."g".authentication.external.accept.jwt.algorithms[0]: "HS256" is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519)',
    ],
    [
      'an unknown accept field',
      ext('        accept: { token: t }'),
      'groups.yml:6:19: groups."g".authentication.external.accept.token: unknown field (expected one of tokens, hashedTokens, jwt)',
    ],
  ])('refuses %s, naming line, column and field', async (_, text, message) => {
    expect((await configError(text)).message).toBe(message);
  });
});

describe('parseGroups: errors name source, line, column and field', () => {
  const g = (...lines: string[]) => yaml(['groups:', '  "flipt":', ...lines]);

  it.each([
    [
      'missing password',
      g('    hosts: [flipt.dev.local]', '    authentication:', '      basic:', '        username: "user"'),
      'groups.yml:6:9: groups."flipt".authentication.basic.password: required',
    ],
    [
      'empty username',
      g('    authentication:', '      basic: { username: "", password: p }'),
      'groups.yml:4:26: groups."flipt".authentication.basic.username: required',
    ],
    [
      'unknown field',
      g('    authentication:', '      basic: { username: u, password: p, passwrd: x }'),
      'groups.yml:4:42: groups."flipt".authentication.basic.passwrd: unknown field (expected one of scheme, username, password, passwordHash)',
    ],
    ['unknown top-level field', 'group:\n  a: {}\n', 'groups.yml:1:1: group: unknown field (expected one of groups)'],
    ['wrong type for hosts', g('    hosts: flipt.dev'), 'groups.yml:3:12: groups."flipt".hosts: expected a list of hosts, got a string'],
    [
      'wrong type for a string',
      g('    authentication:', '      basic: { username: [u], password: p }'),
      'groups.yml:4:26: groups."flipt".authentication.basic.username: expected a string, got a list',
    ],
    ['wrong type for a map', g('    authentication: basic'), 'groups.yml:3:21: groups."flipt".authentication: expected a map, got a string'],
    ['a list at the root', '- a\n', 'groups.yml:1:1: expected a map with a "groups" key, got a list'],
    [
      'bad external URL',
      g('    authentication:', '      external: { endpoint: "not a url" }'),
      'groups.yml:4:29: groups."flipt".authentication.external.endpoint: "not a url" is not an http(s) URL',
    ],
    [
      'non-http external URL',
      g('    authentication:', '      external: { endpoint: "ftp://auth" }'),
      'groups.yml:4:29: groups."flipt".authentication.external.endpoint: "ftp://auth" is not an http(s) URL',
    ],
    [
      'missing external endpoint',
      g('    authentication:', '      external:', '        scheme: JWT'),
      'groups.yml:5:9: groups."flipt".authentication.external.endpoint: required',
    ],
    [
      'bad external timeout',
      g('    authentication:', '      external: { endpoint: "http://a", timeout: 5 }'),
      'groups.yml:4:50: groups."flipt".authentication.external.timeout: "5" is not a positive duration (e.g. "500ms", "5s")',
    ],
    [
      'bad hex in hashedToken',
      g('    authentication:', `      bearer: { hashedToken: "${'g'.repeat(64)}" }`),
      'groups.yml:4:30: groups."flipt".authentication.bearer.hashedToken: must be a SHA-256 digest in hex (64 characters 0-9a-f); it is not',
    ],
    [
      'short hashedToken',
      g('    authentication:', '      bearer: { hashedToken: "abcd" }'),
      'groups.yml:4:30: groups."flipt".authentication.bearer.hashedToken: must be a SHA-256 digest in hex (64 characters 0-9a-f); it is not',
    ],
    [
      'no bearer token',
      g('    authentication:', '      bearer: { scheme: Token }'),
      'groups.yml:4:15: groups."flipt".authentication.bearer: one of token, tokenPath, hashedToken, hashedTokenPath is required',
    ],
    [
      'token and tokenPath',
      g('    authentication:', '      bearer: { token: t, tokenPath: /run/token }'),
      'groups.yml:4:27: groups."flipt".authentication.bearer.tokenPath: conflicts with token: set only one of token, tokenPath, hashedToken, hashedTokenPath',
    ],
    [
      'bearer and external on the default scheme',
      g('    authentication:', '      bearer: { token: t }', '      external: { endpoint: "http://auth" }'),
      'groups.yml:5:17: groups."flipt".authentication.external.scheme: scheme "Bearer" is already used by bearer: give one of them another scheme (e.g. scheme: "JWT")',
    ],
    [
      'schemes that differ only in case',
      g('    authentication:', '      basic: { username: u, password: p }', '      bearer: { token: t, scheme: basic }'),
      'groups.yml:5:35: groups."flipt".authentication.bearer.scheme: scheme "basic" is already used by basic: give one of them another scheme (e.g. scheme: "JWT")',
    ],
    [
      'a scheme with a space',
      g('    authentication:', '      basic: { username: u, password: p, scheme: "My Basic" }'),
      'groups.yml:4:50: groups."flipt".authentication.basic.scheme: "My Basic" is not a valid scheme (one word, no spaces)',
    ],
    ['empty host entry', g('    hosts: ["a.dev", ""]'), 'groups.yml:3:22: groups."flipt".hosts[1]: "" is not a valid host: must not be empty'],
    ['null host entry', g('    hosts:', '    -'), 'groups.yml:4:5: groups."flipt".hosts[0]: must not be empty'],
    [
      'host with a port',
      g('    hosts: ["a.dev:8080"]'),
      'groups.yml:3:13: groups."flipt".hosts[0]: "a.dev:8080" is not a valid host: must not include a port (hosts are matched against the Host header without its port)',
    ],
    [
      'wildcard not in first label',
      g('    hosts: ["api.*.dev"]'),
      'groups.yml:3:13: groups."flipt".hosts[0]: "api.*.dev" is not a valid host: a wildcard may only be the whole first label, as in "*.example.com"',
    ],
    [
      'partial wildcard label',
      g('    hosts: ["api-*.dev"]'),
      'groups.yml:3:13: groups."flipt".hosts[0]: "api-*.dev" is not a valid host: a wildcard may only be the whole first label, as in "*.example.com"',
    ],
    [
      'bad label',
      g('    hosts: ["-a.dev"]'),
      'groups.yml:3:13: groups."flipt".hosts[0]: "-a.dev" is not a valid host: label "-a" is not valid (use 1-63 letters, digits, "-" or "_", not starting or ending with "-")',
    ],
    [
      'duplicate host across groups (case-insensitive)',
      g('    hosts: [a.dev]', '  other:', '    hosts: [A.dev]'),
      'groups.yml:5:13: groups."other".hosts[0]: host "a.dev" is already used by group "flipt"',
    ],
    [
      'unknown load-balancing policy',
      g('    loadBalancing: random'),
      'groups.yml:3:20: groups."flipt".loadBalancing: "random" is not a policy (use one of round-robin, least-inflight)',
    ],
    ['duplicate group', 'groups:\n  a: {}\n  a: {}\n', 'groups.yml:3:3: Map keys must be unique'],
    ['YAML syntax', 'groups:\n  a: [b\n', 'groups.yml:3:1: Flow sequence in block collection must be sufficiently indented and end with a ]'],
    ['several documents', 'groups: {}\n---\ngroups: {}\n', 'groups.yml:2:1: a groups file holds a single YAML document (found a second "---")'],
  ])('%s', async (_, text, message) => {
    const error = await configError(text);
    expect(error.message).toBe(message);
    expect(error.code).toBe('ERR_CONFIG_INVALID');
    const [, line, column] = /^groups\.yml:(\d+):(\d+)/.exec(message)!;
    expect([error.source, error.line, error.column]).toEqual(['groups.yml', Number(line), Number(column)]);
  });

  it('reports every problem, in file order', async () => {
    const error = await configError(
      yaml(['groups:', '  a:', '    hosts: ["x.dev:1"]', '    extra: 1', '    authentication:', '      basic: {}', '  b:', '    loadBalancing: fastest']),
    );
    expect(error.issues.map((issue) => `${issue.line}:${issue.field}`)).toEqual([
      '3:groups."a".hosts[0]',
      '4:groups."a".extra',
      '6:groups."a".authentication.basic.username',
      '6:groups."a".authentication.basic.password',
      '8:groups."b".loadBalancing',
    ]);
    expect(error.field).toBe('groups."a".hosts[0]');
  });
});

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['5s', 5000],
    ['1.5s', 1500],
    ['1m30s', 90_000],
    ['2h', 7_200_000],
    ['0', 0],
  ])('%s → %i ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['', '5', 's', '5 s', '-1s', '1d', '5s '])('rejects %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
