// The load generator of the tunnel benchmark (bench/tunnel.ts): autocannon's API in a process of
// its own, one run per process. Argument: a JSON LoadSpec. It runs an untimed warm-up on its own
// connections, then the measured run, and prints one JSON line (LoadResult) on stdout.
//
// Latencies are taken from autocannon's per-response event (float milliseconds): its own histogram
// keeps whole milliseconds, too coarse for a loopback request that takes a tenth of one.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { cpuSeconds } from './cpu.js';

export interface LoadSpec {
  url: string;
  connections: number;
  warmupSeconds: number;
  durationSeconds: number;
  headers: Record<string, string>;
  /** Per-request timeout, seconds (autocannon counts a timeout as an error). */
  timeoutSeconds: number;
  /** The process serving the requests, whose CPU use during the measured run is reported (Linux). */
  serverPid?: number;
}

export interface LoadResult {
  connections: number;
  seconds: number;
  responses: number;
  ok: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /** Connection errors and timeouts (autocannon's `errors`, which includes `timeouts`). */
  errors: number;
  timeouts: number;
  firstError?: string;
  /** 2xx responses per second. */
  requestsPerSecond: number;
  /** Over 2xx responses, as autocannon does. */
  p50Ms: number;
  p99Ms: number;
  /** CPU used during the measured run, percent of one core; undefined off Linux. */
  serverCpuPercent?: number;
  loadGeneratorCpuPercent: number;
  warmup: { responses: number; non2xx: number; errors: number };
}

// The slice of autocannon's API used here (it ships no types).
interface AutocannonResult {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats: Record<string, { count: number }>;
  '2xx': number;
}
interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', fn: (client: unknown, statusCode: number, bytes: number, ms: number) => void): this;
  on(event: 'reqError', fn: (error: Error) => void): this;
}
type Autocannon = (options: Record<string, unknown>) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function run(spec: LoadSpec): Promise<LoadResult> {
  const options = {
    url: spec.url,
    connections: spec.connections,
    headers: spec.headers,
    timeout: spec.timeoutSeconds,
  };
  const warm = await autocannon({ ...options, duration: spec.warmupSeconds });

  let latencies = new Float64Array(1 << 16);
  let count = 0;
  let firstError: string | undefined;
  const serverBefore = cpuSeconds(spec.serverPid);
  const selfBefore = process.cpuUsage();
  const start = performance.now();
  const instance = autocannon({ ...options, duration: spec.durationSeconds });
  instance.on('response', (_client, statusCode, _bytes, ms) => {
    if (statusCode < 200 || statusCode > 299) return;
    if (count === latencies.length) {
      const grown = new Float64Array(latencies.length * 2);
      grown.set(latencies);
      latencies = grown;
    }
    latencies[count++] = ms;
  });
  instance.on('reqError', (error) => (firstError ??= error.message));
  const result = await instance;
  const wallSeconds = (performance.now() - start) / 1000;
  const serverAfter = cpuSeconds(spec.serverPid);
  const self = process.cpuUsage(selfBefore);

  const sorted = latencies.subarray(0, count).sort();
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count]));
  const responses = Object.values(statusCodes).reduce((a, b) => a + b, 0);
  return {
    connections: spec.connections,
    seconds: result.duration,
    responses,
    ok: result['2xx'],
    non2xx: result.non2xx,
    statusCodes,
    errors: result.errors,
    timeouts: result.timeouts,
    ...(firstError === undefined ? {} : { firstError }),
    requestsPerSecond: result['2xx'] / result.duration,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    ...(serverBefore !== undefined && serverAfter !== undefined ? { serverCpuPercent: ((serverAfter - serverBefore) / wallSeconds) * 100 } : {}),
    loadGeneratorCpuPercent: ((self.user + self.system) / 1e6 / wallSeconds) * 100,
    warmup: { responses: warm['2xx'] + warm.non2xx, non2xx: warm.non2xx, errors: warm.errors },
  };
}

const spec = JSON.parse(process.argv[2] ?? '') as LoadSpec;
process.stdout.write(JSON.stringify(await run(spec)) + '\n');
