import { describe, expect, it } from 'vitest';
import { parseNodeFlags } from './flags.js';

const required = ['-n', 'tunnel.example', '-k', 'server.key', '-c', 'server.crt'];

describe('--unresponsive-timeout', () => {
  it('defaults to 5s, reads REVERST_UNRESPONSIVE_TIMEOUT, and lets the flag win', () => {
    expect(parseNodeFlags(required, {}).unresponsiveTimeoutMs).toBe(5_000);
    expect(parseNodeFlags(required, { REVERST_UNRESPONSIVE_TIMEOUT: '2s' }).unresponsiveTimeoutMs).toBe(2_000);
    expect(parseNodeFlags([...required, '--unresponsive-timeout', '3s'], { REVERST_UNRESPONSIVE_TIMEOUT: '2s' }).unresponsiveTimeoutMs).toBe(3_000);
  });

  it('takes 0 to turn it off and refuses values that would drop healthy tunnels', () => {
    expect(parseNodeFlags([...required, '--unresponsive-timeout', '0s'], {}).unresponsiveTimeoutMs).toBe(0);
    expect(() => parseNodeFlags([...required, '--unresponsive-timeout', '500ms'], {})).toThrow(/--unresponsive-timeout below 1s/);
    expect(() => parseNodeFlags([...required, '--unresponsive-timeout', 'soon'], {})).toThrow(/"soon" is not a duration/);
  });
});
