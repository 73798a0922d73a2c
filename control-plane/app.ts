/**
 * The control plane as a hono app: web standards only (Request, Response, WebCrypto, fetch),
 * so the same app runs under @hono/node-server and as a serverless fetch handler. What is
 * Node-only (file and Kubernetes sources, listeners, signals) is built by the entry and fed in
 * through `PublishedGroups`.
 */
import { Hono, type Context } from 'hono';
import { parseDuration } from '../shared/config/duration.js';
import { sameBytes } from '../shared/auth/password-hash.js';
import { ReverstError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { ExternalAuth, type JwksOptions } from './external-auth.js';
import type { PublishedGroups, Snapshot } from './published-groups.js';

/** Nodes ask for 30 s; a minute bounds how long any request can hold a connection. */
export const DEFAULT_MAX_WAIT_MS = 60_000;

export interface ControlPlaneDeps {
  /** The config served; the entry publishes into it. */
  groups: PublishedGroups;
  /** What nodes present (`Authorization: Bearer …`) to read `/v1/groups`. */
  apiToken: string;
  jwks?: JwksOptions | undefined;
  logger?: Logger | undefined;
  /** The longest `?wait=` honoured; longer waits are shortened to it. */
  maxWaitMs?: number | undefined;
  /**
   * Runs before requests that read the config: serverless entries load or refresh it here.
   * Called again every `refreshIntervalMs` while a long-poll waits, so those see changes too.
   */
  refresh?: (() => Promise<void>) | undefined;
  refreshIntervalMs?: number | undefined;
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  503: 'Service Unavailable',
};

/** Plain text, as the data plane answers: `<status> <text>: <why>`. */
function text(status: number, reason: string, headers: Record<string, string> = {}): Response {
  const body = status === 200 ? `${reason}\n` : `${status} ${STATUS_TEXT[status] ?? ''}: ${reason}\n`;
  return new Response(body, { status, headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers } });
}

function groupsResponse(snapshot: Snapshot): Response {
  return new Response(snapshot.body, {
    headers: { 'content-type': 'application/json', etag: snapshot.etag, 'cache-control': 'no-cache' },
  });
}

/** `closing`: the control plane is draining; the node should ask again on a new connection (another replica). */
function notModified(etag: string, closing = false): Response {
  return new Response(null, { status: 304, headers: { etag, 'cache-control': 'no-cache', ...(closing ? { connection: 'close' } : {}) } });
}

/** RFC 9110 §13.1.2: a list of entity tags or `*`, compared weakly. */
function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const strip = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => strip(tag) === strip(etag));
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

export function createControlPlane(deps: ControlPlaneDeps): Hono {
  if (!deps.apiToken)
    throw new ReverstError('ERR_INVALID_OPTION', 'the control plane needs an API token (--api-token-file, or REVERST_API_TOKEN on serverless)');
  const { groups } = deps;
  const log = (deps.logger ?? silentLogger).child({ component: 'control-plane' });
  const maxWaitMs = deps.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const auth = new ExternalAuth({ jwks: deps.jwks, logger: log.child({ component: 'external-auth' }) });
  // Digests, so the comparison takes the same time whatever the token presented.
  const expectedToken = sha256(deps.apiToken);
  let authSnapshot: Snapshot | undefined;

  const tokenPresented = async (c: Context): Promise<boolean> => {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '');
    return match !== null && sameBytes(await sha256(match[1]!), await expectedToken);
  };

  /** Waits up to `ms` for a config other than `etag`, refreshing on the way where the entry pulls its config. */
  const waitForChange = async (etag: string, ms: number, signal: AbortSignal): Promise<Snapshot | undefined> => {
    const deadline = Date.now() + ms;
    const slice = deps.refresh && deps.refreshIntervalMs ? deps.refreshIntervalMs : ms;
    for (let left = ms; left > 0 && !signal.aborted && !groups.closed; left = deadline - Date.now()) {
      const next = await groups.changed(etag, Math.min(left, slice), signal);
      if (next) return next;
      await deps.refresh?.();
    }
    return undefined;
  };

  const app = new Hono();

  app.get('/v1/groups', async (c) => {
    if (!(await tokenPresented(c))) {
      return text(401, 'reading the tunnel groups needs the API token: send "Authorization: Bearer <token>" (nodes: --control-plane-token-file)', {
        'www-authenticate': 'Bearer realm="reverst control plane"',
      });
    }
    const wait = c.req.query('wait');
    const waitMs = wait === undefined ? 0 : parseDuration(wait);
    if (waitMs === undefined) return text(400, `wait: ${JSON.stringify(wait)} is not a duration (e.g. wait=30s)`);
    await deps.refresh?.();
    const snapshot = groups.current;
    if (!snapshot) return text(503, groups.readiness().detail, { 'retry-after': '1' });
    if (!matchesIfNoneMatch(c.req.header('if-none-match'), snapshot.etag)) return groupsResponse(snapshot);
    if (waitMs === 0) return notModified(snapshot.etag);
    const next = await waitForChange(snapshot.etag, Math.min(waitMs, maxWaitMs), c.req.raw.signal);
    return next ? groupsResponse(next) : notModified(snapshot.etag, groups.closed);
  });

  app.get('/v1/auth/external', async (c) => {
    await deps.refresh?.();
    const snapshot = groups.current;
    if (!snapshot) return text(503, groups.readiness().detail, { 'retry-after': '1' });
    if (snapshot !== authSnapshot) {
      auth.retain(snapshot.config.groups.values());
      authSnapshot = snapshot;
    }
    const name = c.req.header('x-reverst-group');
    const decision = await auth.decide(name === undefined ? undefined : snapshot.config.groups.get(name), name, c.req.header('authorization'));
    log.debug('external authentication decided', { group: name, status: decision.status, reason: decision.reason });
    return text(decision.status, decision.status === 200 ? 'allowed' : decision.reason);
  });

  app.get('/healthz', () => text(200, 'ok'));

  app.get('/readyz', async () => {
    await deps.refresh?.();
    const { ready, detail } = groups.readiness();
    const etag = groups.current?.etag;
    return Response.json({ ready, detail, ...(etag ? { etag } : {}) }, { status: ready ? 200 : 503, headers: { 'cache-control': 'no-store' } });
  });

  app.notFound((c) => text(404, `${c.req.method} ${new URL(c.req.url).pathname}: try GET /v1/groups, /v1/auth/external, /healthz or /readyz`));

  app.onError((err) => {
    log.error('request failed', { error: err });
    return new Response('500 Internal Server Error: see the control plane log\n', { status: 500, headers: { 'content-type': 'text/plain; charset=utf-8' } });
  });

  return app;
}
