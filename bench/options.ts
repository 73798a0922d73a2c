// The benchmark's command line: `npm run bench -- [--quick] [--only …] [--setups …] [--profile]`.
import { parseArgs } from 'node:util';

export const SCENARIOS = ['load', 'bulk', 'memory', 'storm'] as const;
export const SETUPS = ['direct', 'nginx-proxy', 'node-proxy', 'reverst', 'reverst-hop'] as const;
export type Scenario = (typeof SCENARIOS)[number];
export type SetupName = (typeof SETUPS)[number];

export interface BenchOptions {
  scenarios: Set<Scenario>;
  setups: Set<SetupName>;
  /** Write CPU profiles of reverst's processes under bench-results/. */
  profile: boolean;
  quick: boolean;
  connections: number[];
  warmupSeconds: number;
  loadSeconds: number;
  /** Untimed, then timed transfers per setup: 10 MB downloads are short, so they take more to steady the median. */
  bulkRuns: Record<'download' | 'upload', { warmups: number; repetitions: number }>;
  idleTunnels: number;
  stormTunnels: number;
  /** Tunnels closed at the end of the storm to time how fast the node lets them go. */
  stormCloses: number;
  /** An earlier run's JSON to print reverst's figures against. */
  compare?: string | undefined;
}

export const USAGE = `npm run bench -- [FLAGS]

  Measures reverst (a node and a tunnel client, each a process as a user runs them, from dist/)
  against a direct origin, an nginx one-hop proxy and a plain Node one-hop proxy, in the same run.

  --quick              shorter runs and smaller swarms, for iterating (figures are noisier)
  --only LIST          scenarios, comma-separated: ${SCENARIOS.join(', ')} (default: all)
  --setups LIST        setups for load and bulk: ${SETUPS.join(', ')} (default: all)
  --idle N             idle tunnels for the memory scenario (default 1000; quick 200)
  --storm N            tunnels dialling at once in the storm scenario (default 10000; quick 1000)
  --profile            write CPU profiles of the reverst processes to bench-results/profiles-<time>/
  --compare FILE       also print reverst's figures against an earlier run's JSON (e.g. bench/baselines/…)
  -h, --help           this text
`;

function list<T extends string>(value: string | undefined, all: readonly T[], flag: string): Set<T> {
  if (value === undefined) return new Set(all);
  const items = value.split(',').map((s) => s.trim());
  for (const item of items) if (!all.includes(item as T)) throw new Error(`${flag}: unknown ${JSON.stringify(item)} (one of ${all.join(', ')})`);
  return new Set(items as T[]);
}

function count(value: string | undefined, fallback: number, flag: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: expected a positive whole number, got ${JSON.stringify(value)}`);
  return n;
}

export function parseBenchOptions(argv: string[]): BenchOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      only: { type: 'string' },
      setups: { type: 'string' },
      idle: { type: 'string' },
      storm: { type: 'string' },
      profile: { type: 'boolean' },
      compare: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const quick = values.quick ?? false;
  return {
    scenarios: list(values.only, SCENARIOS, '--only'),
    setups: list(values.setups, SETUPS, '--setups'),
    profile: values.profile ?? false,
    compare: values.compare,
    quick,
    connections: [1, 10, 100],
    warmupSeconds: quick ? 1 : 2,
    loadSeconds: quick ? 3 : 5,
    bulkRuns: { download: { warmups: 2, repetitions: quick ? 5 : 15 }, upload: { warmups: 1, repetitions: quick ? 2 : 5 } },
    idleTunnels: count(values.idle, quick ? 200 : 1000, '--idle'),
    stormTunnels: count(values.storm, quick ? 1000 : 10_000, '--storm'),
    stormCloses: quick ? 20 : 100,
  };
}
