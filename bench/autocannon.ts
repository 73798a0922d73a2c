// The benchmark's load generator when wrk is not installed (bench/load.ts): autocannon's API in a
// process of its own, one run per process. Argument: a JSON AutocannonSpec. It runs an untimed
// warm-up on its own connections, then the measured run, and prints one JSON line on stdout.
//
// Latencies are taken from autocannon's per-response event (float milliseconds): its own histogram
// keeps whole milliseconds, too coarse for a loopback request that takes a tenth of one.
import { createRequire } from 'node:module';

export interface AutocannonSpec {
  url: string;
  connections: number;
  warmupSeconds: number;
  durationSeconds: number;
  headers: Record<string, string>;
  /** Per-request timeout, seconds (autocannon counts a timeout as an error). */
  timeoutSeconds: number;
}

export interface AutocannonResult {
  connections: number;
  seconds: number;
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts (autocannon's `errors`, which includes `timeouts`). */
  errors: number;
  /** 2xx responses per second. */
  requestsPerSecond: number;
  /** Over 2xx responses, as autocannon does. */
  p50Ms: number;
  p99Ms: number;
}

// The slice of autocannon's API used here (it ships no types).
interface Report {
  duration: number;
  errors: number;
  non2xx: number;
  '2xx': number;
}
interface Instance extends PromiseLike<Report> {
  on(event: 'response', fn: (client: unknown, statusCode: number, bytes: number, ms: number) => void): this;
}
type Autocannon = (options: Record<string, unknown>) => Instance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function run(spec: AutocannonSpec): Promise<AutocannonResult> {
  const options = { url: spec.url, connections: spec.connections, headers: spec.headers, timeout: spec.timeoutSeconds };
  if (spec.warmupSeconds > 0) await autocannon({ ...options, duration: spec.warmupSeconds });

  let latencies = new Float64Array(1 << 16);
  let count = 0;
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
  const result = await instance;
  const sorted = latencies.subarray(0, count).sort();
  return {
    connections: spec.connections,
    seconds: result.duration,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    requestsPerSecond: result['2xx'] / result.duration,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
  };
}

const spec = JSON.parse(process.argv[2] ?? '') as AutocannonSpec;
process.stdout.write(`${JSON.stringify(await run(spec))}\n`);
