/**
 * The decisions behind `GET /v1/auth/external`: a group's `external.accept` rules applied to
 * the `Authorization` a node forwards (static tokens by SHA-256, JWTs with jose). Web-standard only.
 */
import { createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, importSPKI, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { sameBytes } from '../shared/auth/password-hash.js';
import type { Group } from '../shared/config/groups.js';
import type { JwtRule } from '../shared/config/external-rules.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { redactUrl } from '../shared/redact.js';

/** 200 allows; anything else denies (seed semantics). 503: the key server failed, so nodes let the client retry. */
export interface Decision {
  status: 200 | 400 | 401 | 404 | 503;
  reason: string;
}

export interface JwksOptions {
  /** Below the nodes' default external-auth timeout (5 s), so a node hears "unavailable" rather than timing out itself. */
  timeoutMs?: number | undefined;
  /** After a fetch, how long an unknown `kid` waits before it may fetch again: a bound on what garbage tokens can make us fetch. */
  cooldownMs?: number | undefined;
  /** Keys are refetched when older than this even if every `kid` is known. */
  cacheMaxAgeMs?: number | undefined;
  fetch?: typeof globalThis.fetch | undefined;
}

export const DEFAULT_JWKS_TIMEOUT_MS = 3_000;
export const DEFAULT_JWKS_COOLDOWN_MS = 10_000;
export const DEFAULT_JWKS_CACHE_MAX_AGE_MS = 10 * 60_000;

const allow = (reason: string): Decision => ({ status: 200, reason });
const deny = (reason: string): Decision => ({ status: 401, reason });

export class ExternalAuth {
  readonly #jwksOptions: JwksOptions;
  readonly #log: Logger;
  /** One key set per URL, kept across config reloads so a reload does not refetch. */
  #keySets = new Map<string, JWTVerifyGetKey>();
  /** Imported static keys by PEM and algorithm. */
  #staticKeys = new Map<string, Promise<CryptoKey>>();

  constructor(options: { jwks?: JwksOptions | undefined; logger?: Logger | undefined } = {}) {
    this.#jwksOptions = options.jwks ?? {};
    this.#log = options.logger ?? silentLogger;
  }

  /** Drops key sets and keys that `groups` no longer uses. */
  retain(groups: Iterable<Group>): void {
    const urls = new Set<string>();
    const pems = new Set<string>();
    for (const group of groups) {
      const jwt = group.authentication.external?.accept?.jwt;
      if (jwt?.jwksUrl) urls.add(jwt.jwksUrl);
      if (jwt?.publicKey) pems.add(jwt.publicKey);
    }
    for (const url of this.#keySets.keys()) if (!urls.has(url)) this.#keySets.delete(url);
    for (const key of this.#staticKeys.keys()) if (!pems.has(key.slice(key.indexOf('\n') + 1))) this.#staticKeys.delete(key);
  }

  async decide(group: Group | undefined, groupName: string | undefined, authorization: string | undefined): Promise<Decision> {
    if (!groupName) return { status: 400, reason: 'X-Reverst-Group is missing: the node sends the tunnel group there' };
    if (!group) return { status: 404, reason: `tunnel group ${JSON.stringify(groupName)} is not configured` };
    const external = group.authentication.external;
    if (!external?.accept) return { status: 404, reason: `tunnel group ${JSON.stringify(groupName)} has no external.accept rules on this control plane` };
    const match = /^(\S+)\s+(\S+)\s*$/.exec(authorization?.trim() ?? '');
    if (!match) return deny('Authorization is missing or not "<Scheme> <credentials>"');
    const [, scheme, credentials] = match as unknown as [string, string, string];
    if (scheme.toLowerCase() !== external.scheme.toLowerCase()) return deny(`scheme ${JSON.stringify(scheme)} is not this group's (${external.scheme})`);

    const presented = await sha256(credentials);
    // Every digest is compared, so the time taken does not tell which one (if any) matched.
    let tokenMatches = false;
    for (const hex of external.accept.hashedTokens) tokenMatches = sameBytes(presented, fromHex(hex)) || tokenMatches;
    if (tokenMatches) return allow('token accepted');
    if (!external.accept.jwt) return deny('token not accepted');
    return this.#jwt(external.accept.jwt, groupName, credentials);
  }

  async #jwt(rule: JwtRule, group: string, token: string): Promise<Decision> {
    // Checked before any key is fetched: a token that cannot pass must not make us call the key server.
    let claims: JWTPayload;
    try {
      decodeProtectedHeader(token);
      claims = decodeJwt(token);
    } catch {
      return deny('not a token this group accepts (neither a listed token nor a well-formed JWT)');
    }
    const early = claimProblem(rule, group, claims);
    if (early) return deny(early);
    let payload: JWTPayload;
    try {
      const options = { issuer: rule.issuer, audience: rule.audience, requiredClaims: ['exp'], clockTolerance: Math.floor(rule.clockToleranceMs / 1000) };
      const verified = rule.jwksUrl
        ? await jwtVerify(token, this.#keySet(rule.jwksUrl), rule.algorithms ? { ...options, algorithms: rule.algorithms } : options)
        : await jwtVerify(token, await this.#staticKey(rule), { ...options, algorithms: rule.algorithms ?? ['RS256'] });
      payload = verified.payload;
    } catch (err) {
      return this.#failure(rule, err);
    }
    const late = claimProblem(rule, group, payload);
    return late ? deny(late) : allow('JWT accepted');
  }

  #failure(rule: JwtRule, err: unknown): Decision {
    const code = (err as { code?: string }).code;
    switch (code) {
      case 'ERR_JWT_EXPIRED':
        return deny('JWT expired');
      case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
        const claim = (err as { claim?: string }).claim;
        return deny(claim === 'nbf' ? 'JWT not yet valid (nbf)' : `JWT claim ${JSON.stringify(claim)} does not match: ${(err as Error).message}`);
      }
      case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
        return deny('JWT signature does not verify with the configured key');
      case 'ERR_JWKS_NO_MATCHING_KEY':
        return deny(`no key of ${redactUrl(rule.jwksUrl ?? '', { query: true })} matches the JWT (kid or alg unknown)`);
      case 'ERR_JOSE_ALG_NOT_ALLOWED':
        return deny('JWT algorithm not allowed');
      case 'ERR_JWS_INVALID':
      case 'ERR_JWT_INVALID':
        return deny(`malformed JWT: ${(err as Error).message}`);
    }
    // Everything else means the keys could not be had: a timeout, a refused connection, a non-200,
    // or a body that is no key set. The operator's problem, not the client's.
    // The answer goes to whoever asked: the key server's URL without credentials.
    const reason = rule.jwksUrl
      ? `key server unavailable: ${redactUrl(rule.jwksUrl, { query: true })}: ${describe(err)}`
      : `the configured publicKey cannot be used: ${describe(err)}`;
    this.#log.warn('cannot verify JWTs', { reason });
    return { status: 503, reason };
  }

  #keySet(url: string): JWTVerifyGetKey {
    let keySet = this.#keySets.get(url);
    if (!keySet) {
      const o = this.#jwksOptions;
      keySet = createRemoteJWKSet(new URL(url), {
        timeoutDuration: o.timeoutMs ?? DEFAULT_JWKS_TIMEOUT_MS,
        cooldownDuration: o.cooldownMs ?? DEFAULT_JWKS_COOLDOWN_MS,
        cacheMaxAge: o.cacheMaxAgeMs ?? DEFAULT_JWKS_CACHE_MAX_AGE_MS,
        ...(o.fetch ? { [customFetch]: o.fetch } : {}),
      });
      this.#keySets.set(url, keySet);
    }
    return keySet;
  }

  #staticKey(rule: JwtRule): Promise<CryptoKey> {
    const alg = rule.algorithms?.[0] ?? 'RS256';
    const pem = rule.publicKey ?? '';
    const id = `${alg}\n${pem}`;
    let key = this.#staticKeys.get(id);
    if (!key) {
      key = importSPKI(pem, alg);
      this.#staticKeys.set(id, key);
    }
    return key;
  }
}

/** Why these (possibly unverified) claims cannot pass the rule, or undefined. */
function claimProblem(rule: JwtRule, group: string, claims: JWTPayload): string | undefined {
  const now = Date.now() / 1000;
  const tolerance = rule.clockToleranceMs / 1000;
  if (claims.iss !== rule.issuer) return `JWT issuer ${JSON.stringify(claims.iss)} is not ${JSON.stringify(rule.issuer)}`;
  const audiences = typeof claims.aud === 'string' ? [claims.aud] : (claims.aud ?? []);
  if (!audiences.some((aud) => rule.audience.includes(aud))) return `JWT audience ${JSON.stringify(claims.aud)} is not one of ${JSON.stringify(rule.audience)}`;
  // jose accepts a token without exp; a leaked one would then let its holder in for good.
  if (typeof claims.exp !== 'number') return 'JWT has no expiry (exp): a token that never expires is not accepted';
  if (claims.exp <= now - tolerance) return 'JWT expired';
  if (typeof claims.nbf === 'number' && claims.nbf > now + tolerance) return 'JWT not yet valid (nbf)';
  const listed = claims[rule.groupsClaim];
  const groups = typeof listed === 'string' ? [listed] : Array.isArray(listed) ? listed : [];
  if (!groups.includes(group)) return `JWT claim ${JSON.stringify(rule.groupsClaim)} does not list the group ${JSON.stringify(group)}`;
  return undefined;
}

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (byte) => Number.parseInt(byte, 16));
}

// fetch reports network errors as TypeError('fetch failed') with the real error as its cause.
function describe(err: unknown): string {
  const { cause } = err as { cause?: unknown };
  const message = (err as Error)?.message ?? String(err);
  return cause instanceof Error && cause.message !== message ? `${message} (${cause.message})` : message;
}
