import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { HostPort } from './connection.js';

/** A client answers a Retry at once; a token older than this was not earned just now. */
export const RETRY_TOKEN_LIFETIME_MS = 10_000;
const TAG_BYTES = 16;
const MAX_CID_BYTES = 20;

/**
 * Address-validation tokens for stateless retry (RFC 9000 §8.1.2): the token
 * carries the client's original destination connection id (quiche needs it to
 * accept the retried Initial) and an expiry, bound by an HMAC (under a key that
 * lives only in this process) to the client's address and to the connection id
 * the Retry told it to use, so one token opens one connection, not many
 * (§8.1.4). Nothing is stored per client, which is the point: a flood of
 * spoofed Initials costs no state.
 */
export class RetryTokens {
  readonly #key = randomBytes(32);
  readonly #lifetimeMs: number;

  constructor(lifetimeMs = RETRY_TOKEN_LIFETIME_MS) {
    this.#lifetimeMs = lifetimeMs;
  }

  /** Layout: expiry (8 bytes, ms since the epoch) | id length (1) | original id | tag. */
  issue(originalDcid: Uint8Array, retryScid: Uint8Array, from: HostPort, now = Date.now()): Buffer {
    if (originalDcid.length > MAX_CID_BYTES) throw new RangeError('connection id longer than 20 bytes');
    const body = Buffer.allocUnsafe(9 + originalDcid.length);
    body.writeBigUInt64BE(BigInt(now + this.#lifetimeMs), 0);
    body[8] = originalDcid.length;
    body.set(originalDcid, 9);
    return Buffer.concat([body, this.#tag(body, retryScid, from)]);
  }

  /**
   * The original destination connection id, if the token is ours, unexpired, from
   * this address and presented on an Initial addressed to the id its Retry gave.
   */
  validate(token: Uint8Array, dcid: Uint8Array, from: HostPort, now = Date.now()): Buffer | undefined {
    const t = Buffer.from(token.buffer, token.byteOffset, token.byteLength);
    if (t.length < 9 + TAG_BYTES) return undefined;
    const idLength = t[8]!;
    if (idLength > MAX_CID_BYTES || t.length !== 9 + idLength + TAG_BYTES) return undefined;
    const body = t.subarray(0, 9 + idLength);
    if (!timingSafeEqual(t.subarray(9 + idLength), this.#tag(body, dcid, from))) return undefined;
    if (Number(t.readBigUInt64BE(0)) < now) return undefined;
    return Buffer.from(body.subarray(9));
  }

  #tag(body: Buffer, retryScid: Uint8Array, from: HostPort): Buffer {
    return createHmac('sha256', this.#key).update(body).update(retryScid).update(`|${from.host}|${from.port}`).digest().subarray(0, TAG_BYTES);
  }
}
