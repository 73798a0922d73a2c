import { createAuthenticator, type Authenticator } from '../shared/auth/index.js';
import type { Group, GroupsConfig, GroupsSource, GroupsSourceStatus } from '../shared/config/index.js';
import { NotFoundError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { closeForError } from '../shared/protocol.js';
import { reauthorize } from './registration.js';
import type { TunnelRegistry } from './tunnels.js';

/**
 * The node's tunnel groups as they are now: the config last loaded from the
 * source, one authenticator per group (made on first use), and what a reload
 * does to tunnels already registered.
 */
export class GroupsState {
  readonly #source: GroupsSource;
  readonly #registry: TunnelRegistry;
  readonly #log: Logger;
  #config: GroupsConfig;
  #authenticators = new Map<string, Authenticator>();

  private constructor(source: GroupsSource, config: GroupsConfig, registry: TunnelRegistry, log: Logger) {
    this.#source = source;
    this.#config = config;
    this.#registry = registry;
    this.#log = log;
  }

  /** Load the source (rejecting on a bad one) and, with `watch`, follow its changes. */
  static async load(source: GroupsSource, registry: TunnelRegistry, log: Logger, watch: boolean): Promise<GroupsState> {
    const state = new GroupsState(source, await source.load(), registry, log);
    state.#apply(state.#config);
    log.info('tunnel groups loaded', { source: source.name, groups: [...state.#config.groups.keys()] });
    if (watch) {
      source.watch(
        (next) => {
          state.#apply(next);
          log.info('tunnel groups reloaded', { source: source.name, groups: [...next.groups.keys()] });
        },
        (err) => log.error('tunnel groups reload failed; keeping the last good config', { source: source.name, error: err.message }),
        () => log.debug('tunnel groups reread: unchanged', { source: source.name }),
      );
    }
    return state;
  }

  get config(): GroupsConfig {
    return this.#config;
  }

  /** The group's authenticator under the current config; undefined for a group not configured. */
  authenticatorFor(group: string): Authenticator | undefined {
    const g = this.#config.groups.get(group);
    if (!g) return undefined;
    let a = this.#authenticators.get(group);
    if (!a) {
      a = createAuthenticator(g, { logger: this.#log });
      this.#authenticators.set(group, a);
    }
    return a;
  }

  /** Whether the source has given a config at all, and how current it is (for /readyz). */
  sourceStatus(): GroupsSourceStatus {
    return this.#source.status?.() ?? { ready: true, detail: `loaded from ${this.#source.name}` };
  }

  close(): void {
    this.#source.close();
  }

  #apply(next: GroupsConfig): void {
    const previous = this.#config;
    this.#config = next;
    this.#authenticators = new Map();
    this.#registry.setPolicies((g) => this.#config.groups.get(g)?.loadBalancing ?? 'round-robin');
    if (next.groups.size === 0) {
      this.#log.warn('the tunnel groups source defines no groups: every request is answered 404 and every registration "not found"', {
        source: this.#source.name,
      });
    }
    const reauthenticate = new Set<string>();
    for (const [name, group] of next.groups) {
      if (!group.authentication.basic && !group.authentication.bearer && !group.authentication.external) {
        this.#log.warn('tunnel group has no authentication: anyone can register and serve its hosts', { group: group.name });
      }
      if (!sameAuthentication(previous.groups.get(name), group)) reauthenticate.add(name);
    }
    for (const tunnel of this.#registry.all()) {
      const group = next.groups.get(tunnel.group);
      // Tunnels of a group that is gone serve nothing: tell their clients.
      if (!group) void tunnel.connection.close(closeForError(new NotFoundError()));
      // Changed credentials (a rotated password or token) apply to tunnels already in, too.
      else if (reauthenticate.has(tunnel.group)) {
        void reauthorize(tunnel, {
          authenticator: () => this.authenticatorFor(tunnel.group),
          stillCurrent: () => sameAuthentication(group, this.#config.groups.get(tunnel.group)),
          logger: this.#log,
        });
      }
    }
  }
}

/** Whether a reload left a group's authentication as it was (tokens are compared by their hashes). */
function sameAuthentication(before: Group | undefined, after: Group | undefined): boolean {
  return before !== undefined && after !== undefined && JSON.stringify(before.authentication) === JSON.stringify(after.authentication);
}
