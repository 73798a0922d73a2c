/**
 * The control plane's routes, run against every way of serving them (control-plane.test.ts):
 * the hono app called directly (`app.request`) and the Node entry on a real listener. Same
 * requests, same answers: auth on /v1/groups, ETag and 304, long-polls woken by a change or
 * ended by their wait, many waiters at once, external-auth decisions, health and readiness,
 * and never a secret in plain text.
 */
import { createHash } from 'node:crypto';
import { expect, it } from 'vitest';
import { PasswordChecks, parsePasswordHash } from '../../shared/auth/password-hash.js';
import { parseGroups } from '../../shared/config/groups.js';

export const API_TOKEN = 'api-token-for-tests';
/** Every secret the configs below hold; no response may carry one. */
export const SECRETS = ['basic-password-1', 'basic-password-2', 'bearer-token-1', 'accept-token-1', 'accept-token-2', API_TOKEN];

export function groupsYaml(password = 'basic-password-1', extraGroup = ''): string {
  const hashed = createHash('sha256').update('accept-token-2').digest('hex');
  return `groups:
  "basic.test":
    hosts: ["basic.test"]
    authentication:
      basic: { username: "user", password: "${password}" }
  "bearer.test":
    hosts: ["bearer.test", "*.bearer.test"]
    loadBalancing: least-inflight
    authentication:
      bearer: { token: "bearer-token-1" }
  "central.test":
    hosts: ["central.test"]
    authentication:
      external:
        endpoint: "http://cp.invalid/v1/auth/external"
        timeout: 2s
        accept:
          tokens: ["accept-token-1"]
          hashedTokens: ["${hashed}"]
${extraGroup}`;
}

export interface ControlPlaneHarness {
  request(path: string, init?: RequestInit): Promise<Response>;
  /** Serves `yaml` from now on; resolves once it is published. */
  setConfig(yaml: string): Promise<void>;
}

export interface ControlPlaneTarget {
  name: string;
  /** A control plane serving `yaml` with API_TOKEN, stopped at cleanup. */
  start(yaml: string): Promise<ControlPlaneHarness>;
}

const authorized = (headers: Record<string, string> = {}): RequestInit => ({ headers: { authorization: `Bearer ${API_TOKEN}`, ...headers } });

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

/** Reads the whole response, and checks no secret is in it. */
async function answer(response: Promise<Response>): Promise<Answer> {
  const r = await response;
  const body = await r.text();
  const all = `${[...r.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${body}`;
  for (const secret of SECRETS) expect(all).not.toContain(secret);
  return { status: r.status, headers: r.headers, body };
}

export function controlPlaneContract(target: ControlPlaneTarget): void {
  it('refuses /v1/groups without the API token, with a body that says which token to send', async () => {
    const cp = await target.start(groupsYaml());
    for (const authorization of [undefined, 'Bearer wrong-token', `Basic ${API_TOKEN}`, 'Bearer']) {
      const r = await answer(cp.request('/v1/groups', { headers: authorization ? { authorization } : {} }));
      expect(r.status).toBe(401);
      expect(r.body).toMatch(/^401 Unauthorized: reading the tunnel groups needs the API token: send "Authorization: Bearer <token>"/);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
      expect(r.headers.get('etag')).toBeNull();
    }
  });

  it('serves the whole config as a groups file in JSON, secrets as digests, that a node reads back', async () => {
    const cp = await target.start(groupsYaml());
    const r = await answer(cp.request('/v1/groups', authorized()));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.headers.get('etag')).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const config = await parseGroups(r.body, '/v1/groups');
    expect([...config.groups.keys()]).toEqual(['basic.test', 'bearer.test', 'central.test']);
    const bearer = config.groups.get('bearer.test')!;
    expect(bearer.hosts).toEqual(['bearer.test', '*.bearer.test']);
    expect(bearer.loadBalancing).toBe('least-inflight');
    expect(bearer.authentication.bearer!.hashedToken).toBe(createHash('sha256').update('bearer-token-1').digest('hex'));
    const basic = config.groups.get('basic.test')!.authentication.basic!;
    expect(basic).toMatchObject({ scheme: 'Basic', username: 'user' });
    const hash = parsePasswordHash(basic.passwordHash!);
    if ('problem' in hash) throw new Error(hash.problem);
    expect(hash.iterations).toBeGreaterThanOrEqual(100_000);
    expect(await new PasswordChecks().verify(hash, 'basic-password-1')).toBe('match');
    expect(config.groups.get('central.test')!.authentication.external).toMatchObject({ endpoint: 'http://cp.invalid/v1/auth/external', timeoutMs: 2000 });
  });

  it('answers 304 to a matching If-None-Match (strong, weak, in a list, *) and 200 to another', async () => {
    const cp = await target.start(groupsYaml());
    const { headers } = await answer(cp.request('/v1/groups', authorized()));
    const etag = headers.get('etag')!;
    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const r = await answer(cp.request('/v1/groups', authorized({ 'if-none-match': ifNoneMatch })));
      expect({ ifNoneMatch, status: r.status, body: r.body, etag: r.headers.get('etag') }).toEqual({ ifNoneMatch, status: 304, body: '', etag });
    }
    const stale = await answer(cp.request('/v1/groups', authorized({ 'if-none-match': '"stale"' })));
    expect([stale.status, stale.headers.get('etag')]).toEqual([200, etag]);
  });

  it('gives another ETag once the config changes', async () => {
    const cp = await target.start(groupsYaml());
    const first = (await answer(cp.request('/v1/groups', authorized()))).headers.get('etag');
    await cp.setConfig(groupsYaml('basic-password-2'));
    const changed = await answer(cp.request('/v1/groups', authorized()));
    expect(changed.headers.get('etag')).toMatch(/^"/);
    expect(changed.headers.get('etag')).not.toBe(first);
  });

  it('holds ?wait= until the config changes, then answers 200 with the new one', async () => {
    const cp = await target.start(groupsYaml());
    const etag = (await answer(cp.request('/v1/groups', authorized()))).headers.get('etag')!;
    const started = Date.now();
    let settled = false;
    const waiting = answer(cp.request('/v1/groups?wait=30s', authorized({ 'if-none-match': etag }))).finally(() => (settled = true));
    // Still waiting while nothing changes (checked after the request has surely arrived).
    await answer(cp.request('/readyz'));
    expect(settled).toBe(false);
    await cp.setConfig(groupsYaml('basic-password-1', '  "added.test":\n    hosts: ["added.test"]\n'));
    const r = await waiting;
    expect(r.status).toBe(200);
    expect(r.headers.get('etag')).not.toBe(etag);
    expect(JSON.parse(r.body).groups).toHaveProperty(['added.test']);
    // Woken by the change, far before the 30 s wait would have ended.
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('answers 304 when the wait ends without a change', async () => {
    const cp = await target.start(groupsYaml());
    const etag = (await answer(cp.request('/v1/groups', authorized()))).headers.get('etag')!;
    const started = Date.now();
    const r = await answer(cp.request('/v1/groups?wait=400ms', authorized({ 'if-none-match': etag })));
    expect([r.status, r.headers.get('etag')]).toEqual([304, etag]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  });

  it('wakes every one of many waiters on one change', async () => {
    const cp = await target.start(groupsYaml());
    const etag = (await answer(cp.request('/v1/groups', authorized()))).headers.get('etag')!;
    const waiters = Array.from({ length: 100 }, () => answer(cp.request('/v1/groups?wait=30s', authorized({ 'if-none-match': etag }))));
    await answer(cp.request('/readyz'));
    await cp.setConfig(groupsYaml('basic-password-2'));
    const answers = await Promise.all(waiters);
    const etags = new Set(answers.map((r) => `${r.status} ${r.headers.get('etag')}`));
    expect(etags.size).toBe(1);
    expect([...etags][0]).toMatch(/^200 "/);
    expect([...etags][0]).not.toContain(etag);
  });

  it('answers 200 at once to a wait without If-None-Match, and 400 to a wait that is no duration', async () => {
    const cp = await target.start(groupsYaml());
    expect((await answer(cp.request('/v1/groups?wait=30s', authorized()))).status).toBe(200);
    const bad = await answer(cp.request('/v1/groups?wait=soon', authorized()));
    expect([bad.status, bad.body]).toEqual([400, '400 Bad Request: wait: "soon" is not a duration (e.g. wait=30s)\n']);
  });

  it('decides external auth by the group rules: listed tokens (plain or hashed) pass, others do not', async () => {
    const cp = await target.start(groupsYaml());
    const decide = (authorization: string | undefined, group: string | undefined) =>
      answer(cp.request('/v1/auth/external', { headers: { ...(authorization ? { authorization } : {}), ...(group ? { 'x-reverst-group': group } : {}) } }));
    const cases: Array<[string | undefined, string | undefined, number, string]> = [
      ['Bearer accept-token-1', 'central.test', 200, 'allowed\n'],
      ['bearer accept-token-2', 'central.test', 200, 'allowed\n'],
      ['Bearer accept-token-3', 'central.test', 401, '401 Unauthorized: token not accepted\n'],
      ['JWT accept-token-1', 'central.test', 401, `401 Unauthorized: scheme "JWT" is not this group's (Bearer)\n`],
      [undefined, 'central.test', 401, '401 Unauthorized: Authorization is missing or not "<Scheme> <credentials>"\n'],
      ['Bearer accept-token-1', undefined, 400, '400 Bad Request: X-Reverst-Group is missing: the node sends the tunnel group there\n'],
      ['Bearer accept-token-1', 'nope.test', 404, '404 Not Found: tunnel group "nope.test" is not configured\n'],
      ['Bearer accept-token-1', 'basic.test', 404, '404 Not Found: tunnel group "basic.test" has no external.accept rules on this control plane\n'],
    ];
    for (const [authorization, group, status, body] of cases) {
      const r = await decide(authorization, group);
      expect({ authorization, group, status: r.status, body: r.body }).toEqual({ authorization, group, status, body });
    }
  });

  it('answers /healthz, /readyz (with the config it serves) and 404 for anything else', async () => {
    const cp = await target.start(groupsYaml());
    const health = await answer(cp.request('/healthz'));
    expect([health.status, health.body]).toEqual([200, 'ok\n']);
    const ready = await answer(cp.request('/readyz'));
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toMatchObject({
      ready: true,
      detail: expect.stringMatching(/^serving 3 group\(s\) from /),
      etag: expect.stringMatching(/^"/),
    });
    const missing = await answer(cp.request('/v1/nothing'));
    expect([missing.status, missing.body]).toEqual([404, '404 Not Found: GET /v1/nothing: try GET /v1/groups, /v1/auth/external, /healthz or /readyz\n']);
  });
}
