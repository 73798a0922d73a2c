/**
 * Basic-auth passwords as the control plane hands them to nodes: PBKDF2-HMAC-SHA-256 in the
 * PHC string format, `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>` (standard base64, no padding).
 *
 * PBKDF2 rather than scrypt: the control plane's core runs on Workers, whose WebCrypto has
 * PBKDF2 and no scrypt. Web-standard only (WebCrypto, btoa/atob), so both planes use this file.
 */

/**
 * The most Cloudflare Workers' WebCrypto derives (it refuses higher counts), so a control plane
 * there hashes as strongly as one on Node. About 20 ms of CPU per check on our machines.
 */
export const PBKDF2_ITERATIONS = 100_000;
/** A hash from elsewhere is trusted only within these bounds: fewer is too weak to publish, more lets one config pin a node's CPU. */
export const MIN_PBKDF2_ITERATIONS = 10_000;
export const MAX_PBKDF2_ITERATIONS = 1_000_000;
const HASH_BYTES = 32;
const PREFIX = '$pbkdf2-sha256$';

export interface PasswordHash {
  iterations: number;
  salt: Uint8Array;
  hash: Uint8Array;
  /** The PHC string it was read from. */
  text: string;
}

const B64 = /^[A-Za-z0-9+/]+$/;

export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/=+$/, '');
}

function fromBase64(text: string): Uint8Array | undefined {
  if (!B64.test(text) || text.length % 4 === 1) return undefined;
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

/** The hash a PHC string describes, or why it is not one we accept. */
export function parsePasswordHash(text: string): PasswordHash | { problem: string } {
  const parts = text.startsWith(PREFIX) ? text.slice(PREFIX.length).split('$') : [];
  const [params, saltText, hashText] = parts;
  if (parts.length !== 3 || params === undefined || saltText === undefined || hashText === undefined) {
    return { problem: `expected "${PREFIX}i=<iterations>$<salt>$<hash>" (PBKDF2-HMAC-SHA-256, base64)` };
  }
  const iterations = /^i=(\d{1,9})$/.exec(params)?.[1];
  const count = Number(iterations);
  if (iterations === undefined || count < MIN_PBKDF2_ITERATIONS || count > MAX_PBKDF2_ITERATIONS) {
    return { problem: `iterations must be "i=N" with N from ${MIN_PBKDF2_ITERATIONS} to ${MAX_PBKDF2_ITERATIONS}` };
  }
  const salt = fromBase64(saltText);
  const hash = fromBase64(hashText);
  if (!salt || salt.length < 8) return { problem: 'the salt must be base64 of at least 8 bytes' };
  if (!hash || hash.length !== HASH_BYTES) return { problem: `the hash must be base64 of ${HASH_BYTES} bytes` };
  return { iterations: count, salt, hash, text };
}

export async function pbkdf2Sha256(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(password), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt: salt as BufferSource, iterations }, key, HASH_BYTES * 8);
  return new Uint8Array(bits);
}

export async function hashPassword(password: string, salt: Uint8Array, iterations = PBKDF2_ITERATIONS): Promise<string> {
  const hash = await pbkdf2Sha256(password, salt, iterations);
  return `${PREFIX}i=${iterations}$${toBase64(salt)}$${toBase64(hash)}`;
}

/** Constant-time for equal lengths; the lengths compared here are public (digest sizes). */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

export type PasswordCheck = 'match' | 'mismatch' | 'busy';

export interface PasswordChecksOptions {
  /** Checks deriving at once; each holds a libuv thread (4, shared with file and DNS work) for ~20 ms. */
  maxConcurrent?: number | undefined;
  /** Checks waiting for a slot; beyond that a check answers `busy` at once (the client retries later). */
  maxQueued?: number | undefined;
  /** Successful checks remembered, so a client that got in once does not pay again on reconnect or re-check. */
  cacheSize?: number | undefined;
  /** The derivation (PBKDF2-HMAC-SHA-256); replaceable so tests can hold one in flight. */
  derive?: typeof pbkdf2Sha256 | undefined;
}

export const DEFAULT_MAX_CONCURRENT_PASSWORD_CHECKS = 2;
export const DEFAULT_MAX_QUEUED_PASSWORD_CHECKS = 64;
export const DEFAULT_PASSWORD_CACHE_SIZE = 1_024;

/**
 * Verifies passwords against PBKDF2 hashes without letting unauthenticated clients buy unbounded
 * CPU: successes are cached (keyed by the hash, so a changed password misses), identical checks in
 * flight share one derivation (a re-check after a reload asks the same question once per
 * credential, not once per tunnel), and at most `maxConcurrent` derive at once behind a bounded queue.
 */
export class PasswordChecks {
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #cacheSize: number;
  readonly #pbkdf2: typeof pbkdf2Sha256;
  // Cache keys are digests under a per-process random prefix: memory never holds a fast hash of a password.
  // Drawn on first use: Workers allow no random values at module load, where the shared instance is made.
  #pepper: Uint8Array | undefined;
  readonly #cache = new Map<string, true>();
  readonly #inFlight = new Map<string, Promise<PasswordCheck>>();
  readonly #queue: Array<() => void> = [];
  #running = 0;
  #derivations = 0;

  constructor(options: PasswordChecksOptions = {}) {
    this.#maxConcurrent = options.maxConcurrent ?? DEFAULT_MAX_CONCURRENT_PASSWORD_CHECKS;
    this.#maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED_PASSWORD_CHECKS;
    this.#cacheSize = options.cacheSize ?? DEFAULT_PASSWORD_CACHE_SIZE;
    this.#pbkdf2 = options.derive ?? pbkdf2Sha256;
  }

  /** Derivations running or waiting now. */
  get pending(): number {
    return this.#running + this.#queue.length;
  }

  /** Derivations started so far (cache hits and shared checks cost none). */
  get derivations(): number {
    return this.#derivations;
  }

  verify(expected: PasswordHash, password: string): Promise<PasswordCheck> {
    // Joined synchronously, so checks that arrive together share one derivation whatever the timing.
    const question = `${expected.text}\0${password}`;
    let check = this.#inFlight.get(question);
    if (!check) {
      check = this.#check(expected, password);
      this.#inFlight.set(question, check);
      // The caller sees a rejection through `check`; this branch only clears the entry.
      check.finally(() => this.#inFlight.delete(question)).catch(() => {});
    }
    return check;
  }

  async #check(expected: PasswordHash, password: string): Promise<PasswordCheck> {
    const key = await this.#key(expected, password);
    if (this.#cache.has(key)) {
      // Refresh its place: the map's order is the eviction order.
      this.#cache.delete(key);
      this.#cache.set(key, true);
      return 'match';
    }
    const result = await this.#derive(expected, password);
    if (result === 'match') this.#remember(key);
    return result;
  }

  async #derive(expected: PasswordHash, password: string): Promise<PasswordCheck> {
    if (!(await this.#acquire())) return 'busy';
    try {
      this.#derivations++;
      const derived = await this.#pbkdf2(password, expected.salt, expected.iterations);
      return sameBytes(derived, expected.hash) ? 'match' : 'mismatch';
    } finally {
      this.#release();
    }
  }

  async #acquire(): Promise<boolean> {
    if (this.#running < this.#maxConcurrent) {
      this.#running++;
      return true;
    }
    if (this.#queue.length >= this.#maxQueued) return false;
    // The slot is handed over by #release, so `running` already counts this check.
    await new Promise<void>((resolve) => this.#queue.push(resolve));
    return true;
  }

  #release(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#running--;
  }

  async #key(expected: PasswordHash, password: string): Promise<string> {
    const pepper = (this.#pepper ??= crypto.getRandomValues(new Uint8Array(32)));
    const text = new TextEncoder().encode(`${expected.text}\0${password}`);
    const input = new Uint8Array(pepper.length + text.length);
    input.set(pepper);
    input.set(text, pepper.length);
    return toBase64(new Uint8Array(await crypto.subtle.digest('SHA-256', input)));
  }

  #remember(key: string): void {
    this.#cache.set(key, true);
    if (this.#cache.size > this.#cacheSize) this.#cache.delete(this.#cache.keys().next().value!);
  }
}

/** One per process: the bound on concurrent derivations is only a bound if every group shares it. */
export const sharedPasswordChecks = new PasswordChecks();
