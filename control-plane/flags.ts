import { parseArgs } from 'node:util';
import { parseDuration } from '../shared/config/duration.js';
import { ReverstError } from '../shared/errors.js';
import { parseLogLevel } from '../shared/log.js';
import { DEFAULT_MAX_WAIT_MS } from './app.js';

/** One flag of `reverst control-plane`, in the shape of the node's table; the long name also reads `REVERST_<LONG_NAME>`. */
interface FlagSpec {
  long: string;
  short?: string;
  kind: 'string' | 'boolean' | 'duration';
  value?: string;
  help: string;
  default?: string;
  required?: boolean;
}

export const CONTROL_PLANE_FLAGS: FlagSpec[] = [
  { long: 'log', short: 'l', kind: 'string', value: 'LEVEL', help: 'debug, info, warn or error', default: 'INFO' },
  { long: 'tunnel-groups', short: 'g', kind: 'string', value: 'STRING', help: 'path to file or k8s configmap identifier', default: 'groups.yml' },
  { long: 'watch-groups', short: 'w', kind: 'boolean', help: 'watch tunnel groups sources for updates' },
  { long: 'listen', kind: 'string', value: 'STRING', help: 'address to serve the control plane API on', default: '0.0.0.0:8080' },
  { long: 'api-token', kind: 'string', value: 'STRING', help: 'token nodes present to read /v1/groups' },
  { long: 'api-token-file', kind: 'string', value: 'STRING', help: 'file holding the API token' },
  { long: 'max-wait', kind: 'duration', value: 'DURATION', help: 'longest long-poll (?wait=) a request may hold', default: `${DEFAULT_MAX_WAIT_MS / 1000}s` },
  { long: 'help', short: 'h', kind: 'boolean', help: 'show this help' },
];

export interface ControlPlaneFlags {
  log: string;
  tunnelGroups: string;
  watchGroups: boolean;
  listen: string;
  apiToken?: string;
  apiTokenFile?: string;
  maxWaitMs: number;
  help: boolean;
}

export const envName = (long: string): string => `REVERST_${long.toUpperCase().replace(/-/g, '_')}`;
const camel = (long: string): string => long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function controlPlaneUsage(): string {
  const names = CONTROL_PLANE_FLAGS.map((f) => `${f.short ? `-${f.short}, ` : '    '}--${f.long}${f.value ? ` ${f.value}` : ''}`);
  const width = Math.max(...names.map((n) => n.length));
  const rows = CONTROL_PLANE_FLAGS.map((f, i) => {
    const extra = f.required ? ' (required)' : f.default ? ` (default: ${f.default})` : '';
    return `  ${names[i]!.padEnd(width)}   ${f.help}${extra}`;
  });
  return [
    'COMMAND',
    '  reverst control-plane',
    '',
    'USAGE',
    '  reverst control-plane [FLAGS]   serve tunnel groups (GET /v1/groups) and external auth (GET /v1/auth/external) to nodes',
    '',
    'FLAGS',
    ...rows,
    '',
    'Every long flag can also be set as an environment variable: --api-token-file is REVERST_API_TOKEN_FILE.',
    '',
  ].join('\n');
}

/** Flags override environment variables, which override defaults. */
export function parseControlPlaneFlags(argv: string[], env: Record<string, string | undefined>): ControlPlaneFlags {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: Object.fromEntries(
        CONTROL_PLANE_FLAGS.map((f) => [f.long, { type: f.kind === 'boolean' ? 'boolean' : 'string', ...(f.short ? { short: f.short } : {}) }]),
      ),
    });
  } catch (err) {
    throw new ReverstError('ERR_INVALID_OPTION', `${(err as Error).message} (see reverst control-plane -h)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const out: Record<string, unknown> = {};
  for (const f of CONTROL_PLANE_FLAGS) {
    const fromEnv = env[envName(f.long)];
    const raw = values[f.long] ?? (fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined) ?? f.default;
    const key = f.kind === 'duration' ? `${camel(f.long)}Ms` : camel(f.long);
    if (raw === undefined) {
      out[key] = f.kind === 'boolean' ? false : undefined;
      continue;
    }
    const source = values[f.long] !== undefined ? `--${f.long}` : fromEnv !== undefined ? envName(f.long) : `--${f.long} default`;
    out[key] = convert(f, raw, source);
  }
  const flags = out as unknown as ControlPlaneFlags;
  if (flags.help) return flags;
  parseLogLevel(flags.log);
  if (flags.apiToken && flags.apiTokenFile) throw new ReverstError('ERR_INVALID_OPTION', 'give --api-token or --api-token-file, not both');
  if (!flags.apiToken && !flags.apiTokenFile) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      'missing required flag: --api-token-file (or REVERST_API_TOKEN_FILE, or --api-token): nodes present this token to read the tunnel groups',
    );
  }
  if (flags.maxWaitMs <= 0) throw new ReverstError('ERR_INVALID_OPTION', '--max-wait must be above 0 (nodes ask for 30s)');
  return flags;
}

function convert(f: FlagSpec, raw: string | boolean, source: string): unknown {
  if (f.kind === 'boolean') return raw === true || (typeof raw === 'string' && /^(1|true|yes|on)$/i.test(raw));
  const text = String(raw);
  if (f.kind === 'duration') {
    const ms = parseDuration(text);
    if (ms === undefined) throw new ReverstError('ERR_INVALID_OPTION', `${source}: "${text}" is not a duration (e.g. 30s, 1m0s, 250ms)`);
    return ms;
  }
  return text;
}
