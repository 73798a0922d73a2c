// Load runs of many small requests: wrk when installed (a C load generator, so the generator is
// never what limits a figure), else autocannon in a process of its own (bench/autocannon.ts).
import { spawnProcess } from '../test/harness/processes.js';
import { spawnNode } from '../test/harness/processes.js';
import type { AutocannonResult, AutocannonSpec } from './autocannon.js';

export interface LoadSpec {
  port: number;
  path: string;
  host: string;
  connections: number;
  warmupSeconds: number;
  seconds: number;
  /** A request unanswered this long counts as an error. */
  timeoutSeconds: number;
}

export interface LoadResult {
  connections: number;
  seconds: number;
  /** 2xx answers in the measured run. */
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts. */
  errors: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  generator: 'wrk' | 'autocannon';
}

export type LoadGenerator = (spec: LoadSpec) => Promise<LoadResult>;

/** Slack beyond the run's own length before a generator that has not finished counts as stalled. */
const STALL_SLACK_MS = 30_000;

export function wrkGenerator(wrk: string): LoadGenerator {
  const run = async (spec: LoadSpec, seconds: number): Promise<string> => {
    const args = [
      '-t1',
      `-c${spec.connections}`,
      `-d${seconds}s`,
      `--timeout`,
      `${spec.timeoutSeconds}s`,
      '--latency',
      '-H',
      `Host: ${spec.host}`,
      `http://127.0.0.1:${spec.port}${spec.path}`,
    ];
    const proc = spawnProcess(wrk, args, { name: `wrk -c${spec.connections}` });
    const timer = setTimeout(() => void proc.kill('SIGKILL'), seconds * 1000 + STALL_SLACK_MS);
    const exit = await proc.exited;
    clearTimeout(timer);
    if (exit.code !== 0) throw new Error(`wrk exited with ${exit.code ?? exit.signal}:\n${proc.output()}`);
    return proc.stdout.join('\n');
  };
  return async (spec) => {
    if (spec.warmupSeconds > 0) await run(spec, spec.warmupSeconds);
    return { ...parseWrk(await run(spec, spec.seconds)), connections: spec.connections };
  };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function duration(text: string | undefined): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text ?? '');
  return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
}

/** The figures of wrk's text report (with --latency). */
export function parseWrk(out: string): Omit<LoadResult, 'connections'> {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(out);
  if (!total) throw new Error(`wrk printed no request count:\n${out}`);
  const requests = Number(total[1]);
  const seconds = duration(`${total[2]}${total[3]}`) / 1000;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = socket ? socket.slice(1, 5).reduce((a, b) => a + Number(b), 0) : 0;
  const pct = (p: string): number => duration(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1]);
  const ok = requests - non2xx;
  return { seconds, ok, non2xx, errors, requestsPerSecond: ok / seconds, p50Ms: pct('50'), p99Ms: pct('99'), generator: 'wrk' };
}

const AUTOCANNON_SCRIPT = new URL('./autocannon.ts', import.meta.url).pathname;

export const autocannonGenerator: LoadGenerator = async (spec) => {
  const acSpec: AutocannonSpec = {
    url: `http://127.0.0.1:${spec.port}${spec.path}`,
    connections: spec.connections,
    warmupSeconds: spec.warmupSeconds,
    durationSeconds: spec.seconds,
    headers: { host: spec.host },
    timeoutSeconds: spec.timeoutSeconds,
  };
  const child = spawnNode(AUTOCANNON_SCRIPT, [JSON.stringify(acSpec)], { name: `autocannon -c ${spec.connections}` });
  try {
    const line = await child.waitForLine((l) => l.startsWith('{"connections":'), (spec.warmupSeconds + spec.seconds) * 1000 + STALL_SLACK_MS);
    const r = JSON.parse(line) as AutocannonResult;
    return {
      connections: spec.connections,
      seconds: r.seconds,
      ok: r.ok,
      non2xx: r.non2xx,
      errors: r.errors,
      requestsPerSecond: r.requestsPerSecond,
      p50Ms: r.p50Ms,
      p99Ms: r.p99Ms,
      generator: 'autocannon',
    };
  } finally {
    await child.kill('SIGKILL');
  }
};
