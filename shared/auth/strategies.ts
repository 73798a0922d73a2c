import { createHash, timingSafeEqual } from 'node:crypto';
import { ReverstError } from '../errors.js';
import type { BasicAuthentication, BearerAuthentication, ExternalAuthentication, StrategyName } from '../config/groups.js';
import type { Logger } from '../log.js';
import { rateLimited } from '../log-limits.js';
import { redactUrl } from '../redact.js';
import { parsePasswordHash, sharedPasswordChecks, type PasswordChecks } from './password-hash.js';
import { fetchFailure } from '../fetch-failure.js';

/**
 * `unavailable`: refused because the external endpoint did not answer, not because the
 * credentials are wrong; the client should try again later rather than give up.
 */
export type AuthResult = { ok: true; strategy: StrategyName | 'none' } | { ok: false; reason: string; unavailable?: boolean };

/** An `Authorization` value split into `<scheme> <payload>`. */
export interface Credentials {
  scheme: string;
  payload: string;
  /** The header as the client sent it (trimmed), for forwarding. */
  header: string;
}

export type Strategy = (credentials: Credentials, group: string) => Promise<AuthResult>;

const deny = (reason: string): AuthResult => ({ ok: false, reason });

export const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Compares digests rather than the secrets themselves: digests always have the same length,
 * so neither the comparison's time nor an early length check reveals anything about the secret.
 */
export const sameDigest = (presented: string, expected: Buffer): boolean => timingSafeEqual(sha256(presented), expected);

// Standard alphabet, padding optional. Buffer.from(…, 'base64') alone would skip invalid characters.
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** `checks`: where passwords given as a PBKDF2 hash are verified (cached, bounded); one per process by default. */
export function basicStrategy(config: BasicAuthentication, checks: PasswordChecks = sharedPasswordChecks): Strategy {
  const username = sha256(config.username);
  const passwordMatches = config.passwordHash === undefined ? plainPassword(config.password ?? '') : hashedPassword(config.passwordHash, checks);
  return async ({ payload }) => {
    if (!BASE64.test(payload)) return deny('basic: credentials are not base64');
    const decoded = Buffer.from(payload, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return deny('basic: credentials have no ":" between username and password');
    // Both compared every time, so timing does not tell which one was wrong.
    const userMatches = sameDigest(decoded.slice(0, colon), username);
    const password = await passwordMatches(decoded.slice(colon + 1));
    if (password === 'busy') return { ok: false, reason: 'basic: too many password checks in progress', unavailable: true };
    return userMatches && password === 'match' ? { ok: true, strategy: 'basic' } : deny('basic: wrong username or password');
  };
}

type PasswordMatcher = (presented: string) => Promise<'match' | 'mismatch' | 'busy'>;

function plainPassword(password: string): PasswordMatcher {
  const expected = sha256(password);
  return async (presented) => (sameDigest(presented, expected) ? 'match' : 'mismatch');
}

function hashedPassword(text: string, checks: PasswordChecks): PasswordMatcher {
  const hash = parsePasswordHash(text);
  // The config parser has already refused a malformed hash; this only guards direct callers.
  if ('problem' in hash) throw new ReverstError('ERR_INVALID_OPTION', `basic.passwordHash: ${hash.problem}`);
  return (presented) => checks.verify(hash, presented);
}

export function bearerStrategy(config: BearerAuthentication): Strategy {
  const expected = Buffer.from(config.hashedToken, 'hex');
  return async ({ payload }) => (sameDigest(payload, expected) ? { ok: true, strategy: 'bearer' } : deny('bearer: wrong token'));
}

export interface ExternalStrategyOptions {
  fetch: typeof globalThis.fetch;
  timeoutMs: number;
  logger: Logger;
}

/**
 * Seed semantics: `GET <endpoint>` with the client's Authorization header (and the group in
 * `X-Reverst-Group`); 200 allows, any other answer, a network error or a timeout denies.
 */
export function externalStrategy(config: ExternalAuthentication, options: ExternalStrategyOptions): Strategy {
  const timeoutMs = config.timeoutMs ?? options.timeoutMs;
  // Reasons reach the log and, through the close reason, the client: never the endpoint's credentials.
  const endpoint = redactUrl(config.endpoint, { query: true });
  // Userinfo is not sent, as in the seed (the client's Authorization takes its place); fetch
  // would refuse the URL, with the credentials in its message.
  const target = new URL(config.endpoint);
  target.username = '';
  target.password = '';
  // Any client can make this warning happen, once per registration attempt: keep it bounded.
  const unavailable = rateLimited(options.logger.child({ endpoint }), {
    summary: 'external authentication unavailable: similar warnings dropped (rate limit)',
  });
  return async ({ header }, group) => {
    let response: Response;
    try {
      response = await options.fetch(target, {
        method: 'GET',
        headers: { authorization: header, 'x-reverst-group': group },
        // A redirect is not a 200 from the endpoint the operator configured.
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const reason =
        (err as Error).name === 'TimeoutError'
          ? `external: no answer from ${endpoint} within ${timeoutMs}ms`
          : `external: request to ${endpoint} failed: ${fetchFailure(err)}`;
      // Unlike a wrong credential, this is the operator's problem: say so above debug level.
      unavailable.warn('external authentication unavailable', { group, reason });
      return { ok: false, reason, unavailable: true };
    }
    // The body carries no decision; release the connection.
    await response.body?.cancel().catch(() => {});
    if (response.status === 200) return { ok: true, strategy: 'external' };
    const reason = `external: ${endpoint} answered ${response.status}`;
    // Still a denial, as in the seed; but a failing service (a control plane whose key
    // server is down) is the operator's to fix, so the client retries instead of giving up.
    if (response.status >= 500) {
      unavailable.warn('external authentication unavailable', { group, reason });
      return { ok: false, reason, unavailable: true };
    }
    return deny(reason);
  };
}
