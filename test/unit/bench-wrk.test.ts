import { describe, expect, it } from 'vitest';
import { parseWrk } from '../../bench/load.js';

// What wrk 4.1 prints with --latency (the bench's load generator).
const REPORT = `Running 5s test @ http://127.0.0.1:41235/1k
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    18.12ms   10.22ms 152.34ms   81.02%
    Req/Sec     4.90k   512.17     5.80k    74.00%
  Latency Distribution
     50%  870.00us
     75%   20.11ms
     90%   29.95ms
     99%    1.20s
  24356 requests in 5.00s, 28.41MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 6
Requests/sec:   4870.43
Transfer/sec:      5.68MB`;

describe('bench: wrk report', () => {
  it('reads the counts, the errors and the latency percentiles in their units', () => {
    const r = parseWrk(REPORT);
    expect(r.seconds).toBe(5);
    expect(r.ok).toBe(24_350);
    expect(r.non2xx).toBe(6);
    expect(r.errors).toBe(5);
    expect(r.requestsPerSecond).toBeCloseTo(4870, 0);
    expect(r.p50Ms).toBeCloseTo(0.87, 5);
    expect(r.p99Ms).toBe(1200);
  });

  it('refuses output without a request count', () => {
    expect(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused')).toThrow(/no request count/);
  });
});
