/**
 * The control plane off Node: its core bundles for a platform without Node, the Workers entry
 * answers in a real workerd (miniflare) exactly as the Node entry does, and the Lambda entry
 * answers API Gateway events.
 */
import { writeFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { build } from 'esbuild';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Miniflare } from 'miniflare';
import { describe, expect, it } from 'vitest';
import { eventually } from '../test/contract/eventually.js';
import { freePort, onCleanup, startHttpServer, useCleanup, tempDir } from '../test/harness/index.js';
import { silentLogger } from '../shared/log.js';
import { startControlPlane } from './node.js';
import { controlPlaneFromEnv } from './serverless.js';

useCleanup();

const TOKEN = 'serverless-api-token';
const SECRETS = ['s3cret-password', 's3cret-token', TOKEN];

const yaml = (jwksUrl: string) => `groups:
  "basic.test":
    hosts: ["basic.test"]
    authentication:
      basic: { username: "user", password: "s3cret-password" }
  "central.test":
    hosts: ["central.test", "*.central.test"]
    authentication:
      external:
        endpoint: "https://cp.example/v1/auth/external"
        scheme: JWT
        accept:
          tokens: ["s3cret-token"]
          jwt: { issuer: "https://idp.test", audience: "reverst", jwksUrl: "${jwksUrl}" }
`;

/** Bundles an entry the way a Workers build does: ESM, no Node platform, worker conditions. */
async function bundle(entry: string) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'neutral',
    mainFields: ['module', 'main'],
    conditions: ['workerd', 'worker', 'browser'],
    metafile: true,
    logLevel: 'silent',
  });
  return { code: result.outputFiles[0]!.text, metafile: result.metafile };
}

/** A JWKS endpoint and a token it verifies, for the external-auth answers. */
async function identityProvider() {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  const server = await startHttpServer((_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
  });
  const sign = (groups: string[]) =>
    new SignJWT({ groups })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
      .setIssuer('https://idp.test')
      .setAudience('reverst')
      .setExpirationTime('5m')
      .sign(privateKey);
  return { jwksUrl: `${server.url}/jwks`, sign };
}

type Ask = (path: string, headers?: Record<string, string>) => Promise<{ status: number; etag: string | null; body: string }>;

/** The same questions to any control plane; answers collected for comparison. */
async function interview(ask: Ask, sign: (groups: string[]) => Promise<string>) {
  const groups = await ask('/v1/groups', { authorization: `Bearer ${TOKEN}` });
  const answers = {
    unauthorized: await ask('/v1/groups'),
    groups,
    notModified: await ask('/v1/groups', { authorization: `Bearer ${TOKEN}`, 'if-none-match': groups.etag ?? '' }),
    waitEnds: await ask('/v1/groups?wait=200ms', { authorization: `Bearer ${TOKEN}`, 'if-none-match': groups.etag ?? '' }),
    healthz: await ask('/healthz'),
    notFound: await ask('/nope'),
    staticToken: await ask('/v1/auth/external', { authorization: 'JWT s3cret-token', 'x-reverst-group': 'central.test' }),
    wrongToken: await ask('/v1/auth/external', { authorization: 'JWT nope', 'x-reverst-group': 'central.test' }),
    jwt: await ask('/v1/auth/external', { authorization: `JWT ${await sign(['central.test'])}`, 'x-reverst-group': 'central.test' }),
    jwtOtherGroup: await ask('/v1/auth/external', { authorization: `JWT ${await sign(['basic.test'])}`, 'x-reverst-group': 'central.test' }),
    noGroup: await ask('/v1/auth/external', { authorization: 'JWT s3cret-token' }),
  };
  for (const answer of Object.values(answers)) for (const secret of SECRETS) expect(answer.body).not.toContain(secret);
  return answers;
}

describe('the control plane core off Node', () => {
  it('bundles for a neutral platform with no node: import and no process or Buffer', async () => {
    const { code, metafile } = await bundle('control-plane/index.ts');
    const [output] = Object.values(metafile.outputs);
    expect(output!.imports).toEqual([]);
    const firstParty = Object.keys(metafile.inputs).filter((input) => !input.includes('node_modules'));
    expect(firstParty).toContain('control-plane/app.ts');
    expect(firstParty.filter((input) => !/^(control-plane|shared\/(config|auth)|shared)\//.test(input))).toEqual([]);
    expect(code).not.toMatch(/(from|import\(|require\()\s*["']node:/);
    expect(code).not.toMatch(/\bprocess\.|\bBuffer\./);
  });

  it('answers in workerd (miniflare) as the Node entry does: same ETag, 304, auth answers and errors', async () => {
    const idp = await identityProvider();
    const config = yaml(idp.jwksUrl);
    const { code } = await bundle('examples/serverless/workers.ts');
    const worker = new Miniflare({
      modules: true,
      script: code,
      compatibilityDate: '2025-01-01',
      bindings: { REVERST_GROUPS_YAML: config, REVERST_API_TOKEN: TOKEN },
    });
    onCleanup(() => worker.dispose());

    const dir = tempDir('reverst-serverless-');
    writeFileSync(path.join(dir, 'groups.yml'), config);
    const node = await startControlPlane({
      groups: path.join(dir, 'groups.yml'),
      watchGroups: false,
      listen: '127.0.0.1:0',
      apiToken: TOKEN,
      logger: silentLogger,
    });
    onCleanup(() => node.stop());

    const inWorkerd = await interview(async (p, headers = {}) => {
      const r = await worker.dispatchFetch(`http://cp.example${p}`, { headers });
      return { status: r.status, etag: r.headers.get('etag'), body: await r.text() };
    }, idp.sign);
    const onNode = await interview(async (p, headers = {}) => {
      const r = await fetch(`${node.url}${p}`, { headers });
      return { status: r.status, etag: r.headers.get('etag'), body: await r.text() };
    }, idp.sign);

    expect(inWorkerd).toEqual(onNode);
    // And the answers are the right ones, not merely the same.
    expect(inWorkerd.groups.status).toBe(200);
    expect(inWorkerd.groups.etag).toMatch(/^"[\w-]{43}"$/);
    expect(JSON.parse(inWorkerd.groups.body).groups['basic.test'].authentication.basic.passwordHash).toMatch(/^\$pbkdf2-sha256\$i=100000\$/);
    expect([inWorkerd.unauthorized.status, inWorkerd.notModified.status, inWorkerd.waitEnds.status]).toEqual([401, 304, 304]);
    expect([inWorkerd.staticToken.status, inWorkerd.jwt.status, inWorkerd.wrongToken.status, inWorkerd.jwtOtherGroup.status, inWorkerd.noGroup.status]).toEqual(
      [200, 200, 401, 401, 400],
    );
  });

  it('reads the config from REVERST_GROUPS_URL and follows its changes', async () => {
    let served = yaml('https://idp.test/jwks');
    let reads = 0;
    const origin = await startHttpServer((_req: http.IncomingMessage, res: http.ServerResponse) => {
      reads++;
      res.writeHead(200, { 'content-type': 'text/yaml' }).end(served);
    });
    const app = controlPlaneFromEnv({ REVERST_GROUPS_URL: `${origin.url}/groups.yml`, REVERST_API_TOKEN: TOKEN }, { refreshMs: 100 });
    const auth = { authorization: `Bearer ${TOKEN}` };
    const first = await app.request('/v1/groups', { headers: auth });
    expect(first.status).toBe(200);
    const etag = first.headers.get('etag')!;
    // A long-poll re-reads the URL while it waits, so it sees the change.
    const waiting = app.request('/v1/groups?wait=20s', { headers: { ...auth, 'if-none-match': etag } });
    served = served.replace('"central.test", "*.central.test"', '"central.test"');
    const changed = await waiting;
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    expect(JSON.parse(await changed.text()).groups['central.test'].hosts).toEqual(['central.test']);
    expect(reads).toBeGreaterThanOrEqual(2);
  });

  it('keeps a signed REVERST_GROUPS_URL out of /readyz, /v1/groups and errors, and refuses credentials in it', async () => {
    let status = 200;
    const origin = await startHttpServer((_req: http.IncomingMessage, res: http.ServerResponse) => {
      res.writeHead(status, { 'content-type': 'text/yaml' }).end(status === 200 ? yaml('https://idp.test/jwks') : 'groups: [');
    });
    const signed = `${origin.url}/groups.yml?X-Amz-Signature=s3cr3t`;
    const app = controlPlaneFromEnv({ REVERST_GROUPS_URL: signed, REVERST_API_TOKEN: TOKEN }, { refreshMs: 1 });
    const ready = await app.request('/readyz');
    expect(await ready.json()).toMatchObject({ ready: true, detail: `serving 2 group(s) from ${origin.url}/groups.yml` });
    status = 500;
    await eventually(
      async () => expect(await (await app.request('/readyz')).text()).toContain(`the last reload failed: ${origin.url}/groups.yml: answered 500`),
      5_000,
    );
    status = 201; // a body that does not parse
    await eventually(
      async () => expect(await (await app.request('/readyz')).text()).toMatch(new RegExp(`the last reload failed: ${origin.url}/groups.yml:1:`)),
      5_000,
    );
    const closedPort = await freePort();
    const unreachable = controlPlaneFromEnv({ REVERST_GROUPS_URL: `http://127.0.0.1:${closedPort}/g.yml?token=s3cr3t`, REVERST_API_TOKEN: TOKEN });
    const down = await unreachable.request('/v1/groups', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(down.status).toBe(503);
    expect(await down.text()).toMatch(
      new RegExp(`^503 Service Unavailable: no tunnel groups loaded yet: http://127\\.0\\.0\\.1:${closedPort}/g\\.yml: .*ECONNREFUSED`),
    );
    expect(() => controlPlaneFromEnv({ REVERST_GROUPS_URL: 'https://user:s3cr3t@files.example/g.yml', REVERST_API_TOKEN: TOKEN })).toThrow(
      'REVERST_GROUPS_URL https://***@files.example/g.yml: fetch takes no credentials in the URL; use a signed URL or a token in its query',
    );
  });

  it('says what is wrong with its environment or its config', async () => {
    expect(() => controlPlaneFromEnv({ REVERST_GROUPS_YAML: 'groups: {}' })).toThrow('REVERST_API_TOKEN is not set: nodes present it to read /v1/groups');
    expect(() => controlPlaneFromEnv({ REVERST_API_TOKEN: TOKEN })).toThrow(
      'set one of REVERST_GROUPS_YAML (the groups file) and REVERST_GROUPS_URL (where to read it)',
    );
    const app = controlPlaneFromEnv({ REVERST_GROUPS_YAML: 'groups:\n  a:\n    hosts: flipt\n', REVERST_API_TOKEN: TOKEN });
    const ready = await app.request('/readyz');
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({
      ready: false,
      detail: 'no tunnel groups loaded yet: REVERST_GROUPS_YAML:3:12: groups."a".hosts: expected a list of hosts, got a string',
    });
    expect((await app.request('/v1/groups', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(503);
  });
});

describe('the Lambda entry (hono/aws-lambda)', () => {
  it('answers API Gateway events', async () => {
    Object.assign(process.env, { REVERST_GROUPS_YAML: yaml('https://idp.test/jwks'), REVERST_API_TOKEN: TOKEN });
    onCleanup(() => {
      delete process.env.REVERST_GROUPS_YAML;
      delete process.env.REVERST_API_TOKEN;
    });
    const { handler } = await import('../examples/serverless/lambda.js');
    const event = (rawPath: string, headers: Record<string, string>) => ({
      version: '2.0',
      routeKey: '$default',
      rawPath,
      rawQueryString: '',
      headers: { host: 'cp.example', ...headers },
      body: null,
      isBase64Encoded: false,
      requestContext: { http: { method: 'GET', path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' }, domainName: 'cp.example' },
    });
    // biome-ignore lint/suspicious/noExplicitAny: a hand-built API Gateway v2 event
    const ok = await handler(event('/v1/groups', { authorization: `Bearer ${TOKEN}` }) as any);
    expect(ok.statusCode).toBe(200);
    expect(ok.headers?.etag).toMatch(/^"/);
    expect(JSON.parse(ok.body).groups).toHaveProperty(['central.test']);
    // biome-ignore lint/suspicious/noExplicitAny: as above
    const refused = await handler(event('/v1/groups', {}) as any);
    expect(refused.statusCode).toBe(401);
  });
});
