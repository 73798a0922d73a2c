import { createHash, timingSafeEqual } from 'node:crypto';
import type { BasicAuthentication, BearerAuthentication, ExternalAuthentication, StrategyName } from '../config/groups.js';
import type { Logger } from '../log.js';
import { rateLimited } from '../log-limits.js';

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

export function basicStrategy(config: BasicAuthentication): Strategy {
  const username = sha256(config.username);
  const password = sha256(config.password);
  return async ({ payload }) => {
    if (!BASE64.test(payload)) return deny('basic: credentials are not base64');
    const decoded = Buffer.from(payload, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon === -1) return deny('basic: credentials have no ":" between username and password');
    // Both compared every time, so timing does not tell which one was wrong.
    const userMatches = sameDigest(decoded.slice(0, colon), username);
    const passwordMatches = sameDigest(decoded.slice(colon + 1), password);
    return userMatches && passwordMatches ? { ok: true, strategy: 'basic' } : deny('basic: wrong username or password');
  };
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
  // Any client can make this warning happen, once per registration attempt: keep it bounded.
  const unavailable = rateLimited(options.logger.child({ endpoint: config.endpoint }), {
    summary: 'external authentication unavailable: similar warnings dropped (rate limit)',
  });
  return async ({ header }, group) => {
    let response: Response;
    try {
      response = await options.fetch(config.endpoint, {
        method: 'GET',
        headers: { authorization: header, 'x-reverst-group': group },
        // A redirect is not a 200 from the endpoint the operator configured.
        redirect: 'manual',
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const reason =
        (err as Error).name === 'TimeoutError'
          ? `external: no answer from ${config.endpoint} within ${timeoutMs}ms`
          : `external: request to ${config.endpoint} failed: ${failureMessage(err)}`;
      // Unlike a wrong credential, this is the operator's problem: say so above debug level.
      unavailable.warn('external authentication unavailable', { group, reason });
      return { ok: false, reason, unavailable: true };
    }
    // The body carries no decision; release the connection.
    await response.body?.cancel().catch(() => {});
    return response.status === 200 ? { ok: true, strategy: 'external' } : deny(`external: ${config.endpoint} answered ${response.status}`);
  };
}

// fetch reports network errors as TypeError('fetch failed') with the real error as its cause.
function failureMessage(err: unknown): string {
  const { cause } = err as { cause?: unknown };
  return cause instanceof Error ? cause.message : (err as Error).message;
}
