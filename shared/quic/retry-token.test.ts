import { describe, expect, it } from 'vitest';
import { RETRY_TOKEN_LIFETIME_MS, RetryTokens } from './retry-token.js';

const from = { host: '192.0.2.7', port: 40_000 };
const odcid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

describe('RetryTokens', () => {
  it('gives back the original connection id for its own fresh token from the same address', () => {
    const tokens = new RetryTokens();
    expect(tokens.validate(tokens.issue(odcid, from), from)).toEqual(odcid);
  });

  it('refuses a token from another address, another port, another process, or tampered with', () => {
    const tokens = new RetryTokens();
    const token = tokens.issue(odcid, from);
    expect(tokens.validate(token, { ...from, host: '192.0.2.8' })).toBeUndefined();
    expect(tokens.validate(token, { ...from, port: 40_001 })).toBeUndefined();
    expect(new RetryTokens().validate(token, from)).toBeUndefined();
    for (const at of [0, 8, 9, token.length - 1]) {
      const bad = Buffer.from(token);
      bad[at]! ^= 1;
      expect(tokens.validate(bad, from)).toBeUndefined();
    }
    expect(tokens.validate(token.subarray(0, token.length - 1), from)).toBeUndefined();
    expect(tokens.validate(Buffer.alloc(0), from)).toBeUndefined();
  });

  it('refuses a token past its lifetime', () => {
    const tokens = new RetryTokens();
    const issuedAt = 1_000_000;
    const token = tokens.issue(odcid, from, issuedAt);
    expect(tokens.validate(token, from, issuedAt + RETRY_TOKEN_LIFETIME_MS)).toEqual(odcid);
    expect(tokens.validate(token, from, issuedAt + RETRY_TOKEN_LIFETIME_MS + 1)).toBeUndefined();
  });
});
