import { describe, expect, it } from 'vitest';
import { RETRY_TOKEN_LIFETIME_MS, RetryTokens } from './retry-token.js';

const from = { host: '192.0.2.7', port: 40_000 };
const odcid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
/** The id the Retry told the client to use; its next Initial is addressed to it. */
const retryScid = Buffer.alloc(20, 7);

describe('RetryTokens', () => {
  it('gives back the original connection id for its own fresh token, from the same address, on the id the Retry gave', () => {
    const tokens = new RetryTokens();
    expect(tokens.validate(tokens.issue(odcid, retryScid, from), retryScid, from)).toEqual(odcid);
  });

  it('refuses a token from another address or port, on another connection id, from another process, or tampered with', () => {
    const tokens = new RetryTokens();
    const token = tokens.issue(odcid, retryScid, from);
    expect(tokens.validate(token, retryScid, { ...from, host: '192.0.2.8' })).toBeUndefined();
    expect(tokens.validate(token, retryScid, { ...from, port: 40_001 })).toBeUndefined();
    // Replayed to open a second connection under another id.
    expect(tokens.validate(token, Buffer.alloc(20, 8), from)).toBeUndefined();
    expect(new RetryTokens().validate(token, retryScid, from)).toBeUndefined();
    for (const at of [0, 8, 9, token.length - 1]) {
      const bad = Buffer.from(token);
      bad[at]! ^= 1;
      expect(tokens.validate(bad, retryScid, from)).toBeUndefined();
    }
    expect(tokens.validate(token.subarray(0, token.length - 1), retryScid, from)).toBeUndefined();
    expect(tokens.validate(Buffer.alloc(0), retryScid, from)).toBeUndefined();
  });

  it('refuses a token past its lifetime', () => {
    const tokens = new RetryTokens();
    const issuedAt = 1_000_000;
    const token = tokens.issue(odcid, retryScid, from, issuedAt);
    expect(tokens.validate(token, retryScid, from, issuedAt + RETRY_TOKEN_LIFETIME_MS)).toEqual(odcid);
    expect(tokens.validate(token, retryScid, from, issuedAt + RETRY_TOKEN_LIFETIME_MS + 1)).toBeUndefined();
  });
});
