/**
 * `reverst control-plane`: the web-standard app on a Node listener, its config from a groups
 * source (a file, `k8s://…`: whatever `groupsSourceFromUrl` knows), drained on SIGTERM.
 */
import type http from 'node:http';
import { createAdaptorServer } from '@hono/node-server';
import { groupsSourceFromUrl, type GroupsConfig, type GroupsSource } from '../shared/config/index.js';
import { ReverstError } from '../shared/errors.js';
import { formatHostPort, LISTEN, parseHostPort, type HostPort } from '../shared/address.js';
import { readFlagFile } from '../shared/flag-file.js';
import { listen } from '../shared/listen.js';
import { createLogger, type Logger } from '../shared/log.js';
import { createControlPlane } from './app.js';
import type { JwksOptions } from './external-auth.js';
import { controlPlaneUsage, parseControlPlaneFlags } from './flags.js';
import { PublishedGroups } from './published-groups.js';

export interface ControlPlaneOptions {
  /** `-g`: a path, `file://…`, `k8s://…`, or a ready source. */
  groups: string | GroupsSource;
  watchGroups: boolean;
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  apiToken: string;
  maxWaitMs?: number | undefined;
  jwks?: JwksOptions | undefined;
  logger: Logger;
}

export interface ControlPlaneServer {
  readonly address: HostPort;
  /** `http://host:port`, for logs and tests. */
  readonly url: string;
  readonly groups: PublishedGroups;
  /** Not ready any more, long-polls answered at once, requests in flight finish, then stop. */
  drain(): Promise<void>;
  stop(): Promise<void>;
  readonly closed: Promise<void>;
}

/** How long requests already in flight get on a drain (long-polls are answered at once). */
const DRAIN_GRACE_MS = 5_000;

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlaneServer> {
  let at: HostPort;
  try {
    at = parseHostPort(options.listen, LISTEN);
  } catch (err) {
    throw new ReverstError('ERR_INVALID_OPTION', `--listen: ${(err as Error).message}`);
  }
  const log = options.logger.child({ component: 'control-plane' });
  const source = typeof options.groups === 'string' ? groupsSourceFromUrl(options.groups) : options.groups;
  const groups = new PublishedGroups({ saltKey: options.apiToken, logger: log });
  try {
    // A bad source at start is an error the operator must see; on reload it only keeps the last good config.
    await groups.publish(await source.load(), source.name);
  } catch (err) {
    source.close();
    throw err;
  }
  if (options.watchGroups) {
    const failed = (err: Error): void => {
      groups.reportSource(err);
      log.error('tunnel groups reload failed; keeping the last good config', { source: source.name, error: err.message });
    };
    source.watch((config: GroupsConfig) => void groups.publish(config, source.name).catch(failed), failed);
  }

  const app = createControlPlane({ groups, apiToken: options.apiToken, maxWaitMs: options.maxWaitMs, jwks: options.jwks, logger: options.logger });
  // Not overriding the global Request/Response: this process may be a node too (tests, embedding).
  const server = createAdaptorServer({ fetch: app.fetch, overrideGlobalObjects: false }) as http.Server;
  let address: HostPort;
  try {
    address = await listen(server, at, '--listen');
  } catch (err) {
    source.close();
    throw err;
  }
  const url = `http://${formatHostPort(address)}`;
  log.info('control plane ready', { url, source: source.name, watch: options.watchGroups, groups: groups.current?.config.groups.size });

  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      groups.close();
      source.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      log.info('control plane stopped');
      resolveClosed();
    })());
  const drain = async (): Promise<void> => {
    if (stopping) return stopping;
    log.info('draining');
    // Waiting nodes get "not modified" now and poll again, on another replica.
    groups.close();
    server.close();
    server.closeIdleConnections();
    const deadline = Date.now() + DRAIN_GRACE_MS;
    // Connections go as their last response ends (keep-alive ones included).
    while (Date.now() < deadline && (await connectionCount(server)) > 0) {
      server.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 25));
    }
    await stop();
  };
  return { address, url, groups, drain, stop, closed };
}

function connectionCount(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((err, count) => resolve(err ? 0 : count)));
}

/** `reverst control-plane [FLAGS]`: serve until SIGTERM/SIGINT, then drain and exit. */
export async function runControlPlane(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const flags = parseControlPlaneFlags(argv, env);
  if (flags.help) {
    process.stdout.write(controlPlaneUsage());
    return;
  }
  const logger = createLogger({ level: flags.log });
  const apiToken = flags.apiTokenFile ? (await readFlagFile(flags.apiTokenFile, '--api-token-file')).toString().trim() : flags.apiToken!;
  if (!apiToken) throw new ReverstError('ERR_INVALID_OPTION', `--api-token-file: ${flags.apiTokenFile} is empty`);
  const server = await startControlPlane({
    groups: flags.tunnelGroups,
    watchGroups: flags.watchGroups,
    listen: flags.listen,
    apiToken,
    maxWaitMs: flags.maxWaitMs,
    logger,
  });
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    // The first signal drains; a second one stops at once.
    if (++signals === 1) {
      logger.info('signal received: draining', { signal });
      void server.drain();
    } else void server.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await server.closed;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
}
