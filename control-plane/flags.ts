import { LISTEN, normalizeHostPort } from '../shared/address.js';
import { GROUPS_SOURCE_FLAGS } from '../shared/config/index.js';
import { ReverstError } from '../shared/errors.js';
import { LOG_FLAG, parseCommandLine, usage, type CommandLine, type CommandSpec, type FlagSpec } from '../shared/flags.js';
import { DEFAULT_MAX_WAIT_MS } from './app.js';

export const CONTROL_PLANE_FLAGS = [
  LOG_FLAG,
  ...GROUPS_SOURCE_FLAGS,
  {
    long: 'listen',
    kind: 'string',
    help: 'address to serve the control plane API on',
    default: '0.0.0.0:8080',
    parse: (text: string) => normalizeHostPort(text, LISTEN),
  },
  {
    long: 'api-token',
    kind: 'string',
    help: 'token nodes present to read /v1/groups (prefer --api-token-file: a flag shows in ps)',
    conflicts: { 'api-token-file': 'give the token one way' },
  },
  { long: 'api-token-file', kind: 'string', value: 'PATH', help: 'file holding the API token' },
  { long: 'max-wait', kind: 'duration', help: 'longest long-poll (?wait=) a request may hold', default: `${DEFAULT_MAX_WAIT_MS / 1000}s` },
] as const satisfies readonly FlagSpec[];

export const CONTROL_PLANE_COMMAND = {
  name: 'reverst control-plane',
  usage: ['reverst control-plane [FLAGS]'],
  description: 'Serves tunnel groups (GET /v1/groups) and external auth (GET /v1/auth/external) to nodes.',
  flags: CONTROL_PLANE_FLAGS,
} as const satisfies CommandSpec;

export function controlPlaneUsage(): string {
  return usage(CONTROL_PLANE_COMMAND);
}

/** Flags override environment variables, which override defaults. */
export function parseControlPlaneFlags(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): CommandLine<typeof CONTROL_PLANE_COMMAND> {
  const flags = parseCommandLine(CONTROL_PLANE_COMMAND, argv, env);
  if (flags.help) return flags;
  if (!flags.apiToken && !flags.apiTokenFile) {
    throw new ReverstError(
      'ERR_INVALID_OPTION',
      'missing required flag: --api-token-file (or REVERST_API_TOKEN_FILE, or --api-token): nodes present this token to read the tunnel groups',
    );
  }
  if (flags.maxWaitMs <= 0) throw new ReverstError('ERR_INVALID_OPTION', '--max-wait must be above 0 (nodes ask for 30s)');
  return flags;
}
