import { describe, expect, it } from 'vitest';
import { DEFAULT_UNRESPONSIVE_TIMEOUT_MS, parseConnectOptions, type ConnectOptions } from './options.js';

const base: ConnectOptions = { addresses: ['127.0.0.1:7171'], group: 'g', handler: () => new Response('ok') };

describe('unresponsiveTimeoutMs', () => {
  it('defaults to 10 s and takes 0 (off) or at least a second', () => {
    expect(DEFAULT_UNRESPONSIVE_TIMEOUT_MS).toBe(10_000);
    expect(parseConnectOptions(base).unresponsiveTimeoutMs).toBe(10_000);
    expect(parseConnectOptions({ ...base, unresponsiveTimeoutMs: 0 }).unresponsiveTimeoutMs).toBe(0);
    expect(parseConnectOptions({ ...base, unresponsiveTimeoutMs: 2_500 }).unresponsiveTimeoutMs).toBe(2_500);
    for (const bad of [500, -1, Number.NaN]) {
      expect(() => parseConnectOptions({ ...base, unresponsiveTimeoutMs: bad })).toThrow(/unresponsiveTimeoutMs: expected 0 \(off\) or at least 1000/);
    }
  });
});
