/**
 * The control plane on a serverless runtime (Workers, Lambda, …): the config comes from the
 * environment, as YAML text or as a URL to read it from, and is loaded on the first request
 * (runtimes such as Workers allow no I/O outside one). Web-standard only.
 */
import type { Hono } from 'hono';
import { parseGroups } from '../shared/config/groups.js';
import { ConfigError, ReverstError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { redactUrl } from '../shared/redact.js';
import { createControlPlane } from './app.js';
import type { JwksOptions } from './external-auth.js';
import { PublishedGroups } from './published-groups.js';
import { fetchFailure } from '../shared/fetch-failure.js';

/** The variables (Workers: bindings) read. */
export interface ServerlessEnv {
  /** The groups file itself. */
  REVERST_GROUPS_YAML?: string | undefined;
  /** Or where to read it (re-read when older than `refreshMs`, with If-None-Match). */
  REVERST_GROUPS_URL?: string | undefined;
  /** What nodes present to read /v1/groups (their --control-plane-token-file). */
  REVERST_API_TOKEN?: string | undefined;
}

export interface ServerlessOptions {
  /** How old a config read from REVERST_GROUPS_URL may get before a request re-reads it. */
  refreshMs?: number | undefined;
  /** How long a read of REVERST_GROUPS_URL may take. */
  fetchTimeoutMs?: number | undefined;
  fetch?: typeof globalThis.fetch | undefined;
  jwks?: JwksOptions | undefined;
  /** The longest long-poll; below the platform's request limit (API Gateway ends requests after 29 s). */
  maxWaitMs?: number | undefined;
  logger?: Logger | undefined;
}

/** A URL config is re-read at most this often; a node's long-poll sees a change within this plus its wait. */
export const DEFAULT_REFRESH_MS = 30_000;
export const DEFAULT_FETCH_TIMEOUT_MS = 5_000;

/** The control plane for `env`; build it once per runtime instance and reuse it. */
export function controlPlaneFromEnv(env: ServerlessEnv, options: ServerlessOptions = {}): Hono {
  const apiToken = env.REVERST_API_TOKEN;
  if (!apiToken) throw new ReverstError('ERR_INVALID_OPTION', 'REVERST_API_TOKEN is not set: nodes present it to read /v1/groups');
  const yaml = env.REVERST_GROUPS_YAML;
  const url = env.REVERST_GROUPS_URL;
  if ((yaml === undefined) === (url === undefined)) {
    throw new ReverstError('ERR_INVALID_OPTION', 'set one of REVERST_GROUPS_YAML (the groups file) and REVERST_GROUPS_URL (where to read it)');
  }
  const logger = options.logger ?? silentLogger;
  const groups = new PublishedGroups({ saltKey: apiToken, logger: logger.child({ component: 'control-plane' }) });
  const refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
  if (url !== undefined) checkGroupsUrl(url);
  const refresh = yaml !== undefined ? yamlLoader(yaml, groups) : urlLoader(url!, groups, { ...options, refreshMs });
  return createControlPlane({
    groups,
    apiToken,
    jwks: options.jwks,
    maxWaitMs: options.maxWaitMs,
    logger,
    refresh,
    refreshIntervalMs: yaml === undefined ? refreshMs : undefined,
  });
}

/** Parses the YAML once; a bad one stays reported in /readyz and /v1/groups (503). */
function yamlLoader(yaml: string, groups: PublishedGroups): () => Promise<void> {
  let loaded: Promise<void> | undefined;
  return () =>
    (loaded ??= parseGroups(yaml, 'REVERST_GROUPS_YAML').then(
      (config) => groups.publish(config, 'REVERST_GROUPS_YAML').then(() => {}),
      (err: Error) => groups.reportSource(err),
    ));
}

/** A URL fetch can read; its credentials, if any, never reach an error message. */
function checkGroupsUrl(url: string): void {
  const name = redactUrl(url, { query: true });
  if (!URL.canParse(url)) throw new ReverstError('ERR_INVALID_OPTION', `REVERST_GROUPS_URL ${name} is not a valid URL`);
  const { protocol, username, password } = new URL(url);
  if (protocol !== 'http:' && protocol !== 'https:') throw new ReverstError('ERR_INVALID_OPTION', `REVERST_GROUPS_URL ${name} is not an http(s) URL`);
  if (username || password) {
    throw new ReverstError('ERR_INVALID_OPTION', `REVERST_GROUPS_URL ${name}: fetch takes no credentials in the URL; use a signed URL or a token in its query`);
  }
}

function urlLoader(url: string, groups: PublishedGroups, options: ServerlessOptions & { refreshMs: number }): () => Promise<void> {
  // What /readyz, /v1/groups and errors show: a signed URL's query is its credential.
  const name = redactUrl(url, { query: true });
  const fetch = options.fetch ?? globalThis.fetch;
  let etag: string | undefined;
  let readAt = Number.NEGATIVE_INFINITY;
  let reading: Promise<void> | undefined;
  const read = async (): Promise<void> => {
    try {
      const response = await fetch(url, {
        headers: etag ? { 'if-none-match': etag } : {},
        signal: AbortSignal.timeout(options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS),
      });
      if (response.status === 304) {
        await response.body?.cancel();
        groups.reportSource(undefined);
        return;
      }
      if (!response.ok) {
        await response.body?.cancel();
        throw new ConfigError([{ source: name, message: `answered ${response.status} ${response.statusText}`.trim() }]);
      }
      const text = await response.text();
      await groups.publish(await parseGroups(text, name), name);
      etag = response.headers.get('etag') ?? undefined;
    } catch (err) {
      groups.reportSource(err instanceof ReverstError ? err : new ConfigError([{ source: name, message: fetchFailure(err) }], { cause: err }));
    } finally {
      readAt = Date.now();
    }
  };
  return () => {
    if (Date.now() - readAt >= options.refreshMs) reading ??= read().finally(() => (reading = undefined));
    return reading ?? Promise.resolve();
  };
}
