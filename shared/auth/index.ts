/**
 * Authenticates registrations for one tunnel group. The client's Authorization metadata
 * is `<Scheme> <payload>`; the scheme (compared case-insensitively) picks the strategy.
 */
import { DEFAULT_SCHEMES, type Group, type StrategyName } from '../config/groups.js';
import { ReverstError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { PasswordChecks } from './password-hash.js';
import { basicStrategy, bearerStrategy, externalStrategy, type AuthResult, type Credentials, type Strategy } from './strategies.js';

export type { AuthResult } from './strategies.js';
export { sameDigest, sha256 } from './strategies.js';
export { PasswordChecks, hashPassword, parsePasswordHash, PBKDF2_ITERATIONS, type PasswordHash } from './password-hash.js';

/**
 * A registration holds a half-open connection while it waits; the seed never times out.
 * Five seconds is generous for an auth service and still frees a stuck slot quickly.
 */
export const DEFAULT_EXTERNAL_TIMEOUT_MS = 5_000;

export interface AuthenticatorOptions {
  fetch?: typeof globalThis.fetch | undefined;
  /** For groups whose `external` block sets no `timeout`. */
  externalTimeoutMs?: number | undefined;
  logger?: Logger | undefined;
  /** Where PBKDF2 password hashes are verified; defaults to the process-wide one, whose bounds then hold for all groups. */
  passwordChecks?: PasswordChecks | undefined;
}

export interface Authenticator {
  /** `group` is the group's name, sent to external endpoints as `X-Reverst-Group`. */
  authenticate(authorization: string | undefined, group: string): Promise<AuthResult>;
}

/** Splits `<Scheme> <payload>`; undefined if there is no payload. */
export function parseAuthorization(header: string): Credentials | undefined {
  const trimmed = header.trim();
  const match = /^(\S+)\s+(\S.*)$/s.exec(trimmed);
  return match ? { scheme: match[1]!, payload: match[2]!, header: trimmed } : undefined;
}

export function createAuthenticator(group: Pick<Group, 'authentication'>, options: AuthenticatorOptions = {}): Authenticator {
  const { basic, bearer, external } = group.authentication;
  const strategies = new Map<string, Strategy>();
  const schemes: string[] = [];
  const add = (name: StrategyName, scheme: string | undefined, strategy: Strategy) => {
    const resolved = scheme || DEFAULT_SCHEMES[name];
    const key = resolved.toLowerCase();
    if (strategies.has(key)) {
      throw new ReverstError('ERR_INVALID_OPTION', `two authentication strategies use the scheme "${resolved}": give ${name} another scheme`);
    }
    strategies.set(key, strategy);
    schemes.push(resolved);
  };
  if (basic) add('basic', basic.scheme, basicStrategy(basic, options.passwordChecks));
  if (bearer) add('bearer', bearer.scheme, bearerStrategy(bearer));
  if (external) {
    const logger = (options.logger ?? silentLogger).child({ component: 'auth', strategy: 'external' });
    const strategy = externalStrategy(external, {
      fetch: options.fetch ?? globalThis.fetch,
      timeoutMs: options.externalTimeoutMs ?? DEFAULT_EXTERNAL_TIMEOUT_MS,
      logger,
    });
    add('external', external.scheme, strategy);
  }

  return {
    async authenticate(authorization, groupName) {
      if (strategies.size === 0) return { ok: true, strategy: 'none' };
      if (authorization === undefined || authorization.trim() === '') return { ok: false, reason: 'no Authorization metadata' };
      const credentials = parseAuthorization(authorization);
      if (!credentials) return { ok: false, reason: 'Authorization metadata is not "<Scheme> <credentials>"' };
      const strategy = strategies.get(credentials.scheme.toLowerCase());
      if (!strategy) {
        return { ok: false, reason: `scheme "${credentials.scheme}" is not accepted by this group (accepted: ${schemes.join(', ')})` };
      }
      return strategy(credentials, groupName);
    },
  };
}
