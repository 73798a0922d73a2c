import type http from 'node:http';
import { describe, expect, it } from 'vitest';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK } from 'jose';
import { parseGroups } from '../shared/config/groups.js';
import { onCleanup, startHttpServer, useCleanup } from '../test/harness/index.js';
import { createControlPlane } from './app.js';
import { PublishedGroups } from './published-groups.js';

useCleanup();

const ISSUER = 'https://idp.test';
const AUDIENCE = 'reverst';
const GROUP = 'jwt.test';

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
  pem: string;
}

async function signingKey(kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }, pem: await exportSPKI(publicKey) };
}

const now = () => Math.floor(Date.now() / 1000);

/** A token as an identity provider would issue it; `claims` override the defaults (`exp: null`: no expiry at all). */
function token(key: SigningKey, claims: Record<string, unknown> = {}, kid = key.kid): Promise<string> {
  const { exp, ...rest } = claims;
  const jwt = new SignJWT({ groups: [GROUP, 'other'], ...rest })
    .setProtectedHeader({ alg: 'RS256', kid })
    .setIssuer((claims.iss as string) ?? ISSUER)
    .setAudience((claims.aud as string) ?? AUDIENCE)
    .setIssuedAt();
  if (exp !== null) jwt.setExpirationTime((exp as number | undefined) ?? now() + 300);
  return jwt.sign(key.privateKey);
}

/** A real JWKS endpoint; `keys` can change (rotation); `hang` stops it answering. */
async function jwksServer(keys: SigningKey[]) {
  const state = { keys, hang: false, fetches: 0 };
  const server = await startHttpServer((_req: http.IncomingMessage, res: http.ServerResponse) => {
    state.fetches++;
    if (state.hang) return;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys.map((k) => k.jwk) }));
  });
  return { url: `${server.url}/jwks.json`, state };
}

async function controlPlane(yaml: string, jwks: { timeoutMs?: number; cooldownMs?: number } = {}) {
  const groups = new PublishedGroups({ saltKey: 'token' });
  onCleanup(() => groups.close());
  await groups.publish(await parseGroups(yaml, 'groups.yml'), 'groups.yml');
  const app = createControlPlane({ groups, apiToken: 'token', jwks });
  return async (group: string, authorization: string) => {
    const r = await app.request('/v1/auth/external', { headers: { authorization, 'x-reverst-group': group } });
    // Denials carry their status in the body already ("401 Unauthorized: …").
    const body = (await r.text()).trim();
    return r.status === 200 ? `200 ${body}` : body;
  };
}

const jwtGroup = (name: string, keySource: string, extra = '') => `
  "${name}":
    hosts: ["${name}"]
    authentication:
      external:
        endpoint: "http://cp.invalid/v1/auth/external"
        scheme: JWT
        accept:
          tokens: ["static-token"]
          jwt:
            issuer: "${ISSUER}"
            audience: ["${AUDIENCE}", "other-audience"]
${keySource}${extra}`;

describe('external auth: JWTs checked with a JWKS fetched from a real HTTP server', () => {
  it('allows a valid token and denies each way a token can be wrong', async () => {
    const key = await signingKey('k1');
    const stranger = await signingKey('k1'); // same kid, another key
    const jwks = await jwksServer([key]);
    const decide = await controlPlane(`groups:${jwtGroup(GROUP, `            jwksUrl: "${jwks.url}"\n`)}`);
    const cases: Array<[string, string, string]> = [
      ['valid', await token(key), '200 allowed'],
      ['valid, one of several audiences', await token(key, { aud: 'other-audience' }), '200 allowed'],
      ['the group as a single string claim', await token(key, { groups: GROUP }), '200 allowed'],
      ['expired', await token(key, { exp: now() - 3600 }), '401 Unauthorized: JWT expired'],
      ['never expires', await token(key, { exp: null }), '401 Unauthorized: JWT has no expiry (exp): a token that never expires is not accepted'],
      ['not yet valid', await token(key, { nbf: now() + 3600 }), '401 Unauthorized: JWT not yet valid (nbf)'],
      ['wrong issuer', await token(key, { iss: 'https://evil.test' }), '401 Unauthorized: JWT issuer "https://evil.test" is not "https://idp.test"'],
      ['wrong audience', await token(key, { aud: 'someone-else' }), '401 Unauthorized: JWT audience "someone-else" is not one of ["reverst","other-audience"]'],
      ['wrong key', await token(stranger), '401 Unauthorized: JWT signature does not verify with the configured key'],
      ['group not in the claim', await token(key, { groups: ['other'] }), '401 Unauthorized: JWT claim "groups" does not list the group "jwt.test"'],
      ['no groups claim', await token(key, { groups: undefined }), '401 Unauthorized: JWT claim "groups" does not list the group "jwt.test"'],
      ['malformed', 'not.a.jwt', '401 Unauthorized: not a token this group accepts (neither a listed token nor a well-formed JWT)'],
      ['garbage', 'x', '401 Unauthorized: not a token this group accepts (neither a listed token nor a well-formed JWT)'],
      ['a listed static token', 'static-token', '200 allowed'],
    ];
    for (const [name, jwt, expected] of cases) {
      expect({ name, decision: await decide(GROUP, `JWT ${jwt}`) }).toEqual({ name, decision: expected });
    }
  });

  it('fetches the key set once and answers from its cache', async () => {
    const key = await signingKey('k1');
    const jwks = await jwksServer([key]);
    const decide = await controlPlane(`groups:${jwtGroup(GROUP, `            jwksUrl: "${jwks.url}"\n`)}`);
    for (let i = 0; i < 5; i++) expect(await decide(GROUP, `JWT ${await token(key)}`)).toBe('200 allowed');
    expect(jwks.state.fetches).toBe(1);
  });

  it('never fetches keys for a token whose claims cannot pass', async () => {
    const key = await signingKey('k1');
    const jwks = await jwksServer([key]);
    const decide = await controlPlane(`groups:${jwtGroup(GROUP, `            jwksUrl: "${jwks.url}"\n`)}`);
    expect(await decide(GROUP, `JWT ${await token(key, { iss: 'https://evil.test' })}`)).toMatch(/^401 /);
    expect(await decide(GROUP, `JWT ${await token(key, { groups: [] })}`)).toMatch(/^401 /);
    expect(jwks.state.fetches).toBe(0);
  });

  it('fetches again for a kid it does not know, so a rotated key works at once', async () => {
    const old = await signingKey('old');
    const rotated = await signingKey('new');
    const jwks = await jwksServer([old]);
    const decide = await controlPlane(`groups:${jwtGroup(GROUP, `            jwksUrl: "${jwks.url}"\n`)}`, { cooldownMs: 0 });
    expect(await decide(GROUP, `JWT ${await token(old)}`)).toBe('200 allowed');
    jwks.state.keys = [old, rotated];
    expect(await decide(GROUP, `JWT ${await token(rotated)}`)).toBe('200 allowed');
    expect(jwks.state.fetches).toBe(2);
    // A kid the provider never published is refused after the refetch.
    expect(await decide(GROUP, `JWT ${await token(rotated, {}, 'unknown')}`)).toMatch(
      /^401 Unauthorized: no key of .* matches the JWT \(kid or alg unknown\)$/,
    );
  });

  it('answers 503 (the node lets the client retry) when the key server hangs, without holding up other decisions', async () => {
    const key = await signingKey('k1');
    const hanging = await jwksServer([key]);
    hanging.state.hang = true;
    const working = await jwksServer([key]);
    const decide = await controlPlane(
      `groups:${jwtGroup(GROUP, `            jwksUrl: "${hanging.url}"\n`)}${jwtGroup('other', `            jwksUrl: "${working.url}"\n`)}`,
      { timeoutMs: 4_000 },
    );
    const jwt = await token(key, { groups: [GROUP, 'other'] });
    let slowDone = false;
    const slow = decide(GROUP, `JWT ${jwt}`).finally(() => (slowDone = true));
    // While the hanging fetch is pending: the same group's static token, and another group's JWT.
    expect(await decide(GROUP, 'JWT static-token')).toBe('200 allowed');
    expect(await decide('other', `JWT ${jwt}`)).toBe('200 allowed');
    expect(slowDone).toBe(false);
    expect(await slow).toMatch(new RegExp(`^503 Service Unavailable: key server unavailable: ${hanging.url}: `));
    expect(hanging.state.fetches).toBe(1);
  });

  it('verifies with a static public key', async () => {
    const key = await signingKey('k1');
    const stranger = await signingKey('k1');
    const pem = key.pem
      .trim()
      .split('\n')
      .map((line) => `              ${line}`)
      .join('\n');
    const decide = await controlPlane(`groups:${jwtGroup(GROUP, `            publicKey: |\n${pem}\n            algorithms: [RS256]\n`)}`);
    expect(await decide(GROUP, `JWT ${await token(key)}`)).toBe('200 allowed');
    expect(await decide(GROUP, `JWT ${await token(stranger)}`)).toBe('401 Unauthorized: JWT signature does not verify with the configured key');
  });

  it('reads another groups claim when the rule names one', async () => {
    const key = await signingKey('k1');
    const jwks = await jwksServer([key]);
    const decide = await controlPlane(`groups:${jwtGroup(GROUP, `            jwksUrl: "${jwks.url}"\n            groupsClaim: tunnels\n`)}`);
    expect(await decide(GROUP, `JWT ${await token(key, { tunnels: [GROUP] })}`)).toBe('200 allowed');
    expect(await decide(GROUP, `JWT ${await token(key)}`)).toBe('401 Unauthorized: JWT claim "tunnels" does not list the group "jwt.test"');
  });
});
