import type { GroupsConfig } from './groups.js';

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const MAX_HOSTNAME_LENGTH = 253;

/** Hosts compare case-insensitively and ignore a trailing root dot. */
export function normalizeHostname(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * Why `pattern` (already normalized) cannot be a `hosts` entry, or undefined if it can.
 * Allowed: a hostname or IPv4 address, or `*.` followed by one, matching exactly one more label.
 */
export function hostPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'must not be empty';
  if (pattern.includes(':')) return 'must not include a port (hosts are matched against the Host header without its port)';
  const hostname = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
  if (hostname.includes('*')) return 'a wildcard may only be the whole first label, as in "*.example.com"';
  if (hostname.length > MAX_HOSTNAME_LENGTH) return `must be at most ${MAX_HOSTNAME_LENGTH} characters`;
  const bad = hostname.split('.').find((label) => !LABEL.test(label));
  if (bad !== undefined) {
    return `label ${JSON.stringify(bad)} is not valid (use 1-63 letters, digits, "-" or "_", not starting or ending with "-")`;
  }
  return undefined;
}

/** The hostname a Host header names: without port or IPv6 brackets, normalized. */
export function hostFromHeader(header: string): string {
  const host = header.trim();
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    return normalizeHostname(host.slice(1, close === -1 ? undefined : close));
  }
  const colon = host.indexOf(':');
  return normalizeHostname(colon === -1 ? host : host.slice(0, colon));
}

// Built once per loaded config; the config is immutable after load.
const indexes = new WeakMap<GroupsConfig, Map<string, string>>();

function hostIndex(config: GroupsConfig): Map<string, string> {
  let index = indexes.get(config);
  if (!index) {
    index = new Map();
    for (const group of config.groups.values()) for (const host of group.hosts) index.set(host, group.name);
    indexes.set(config, index);
  }
  return index;
}

/**
 * The group serving `hostHeader`: an exact host entry wins over a `*.` wildcard, and a
 * wildcard stands for exactly one label (`*.apps.dev` matches `a.apps.dev`, not `a.b.apps.dev`).
 */
export function matchHost(config: GroupsConfig, hostHeader: string | undefined): string | undefined {
  if (!hostHeader) return undefined;
  const host = hostFromHeader(hostHeader);
  // A '*' in the request must not match a wildcard entry literally.
  if (host === '' || host.includes('*')) return undefined;
  const index = hostIndex(config);
  const exact = index.get(host);
  if (exact !== undefined) return exact;
  const dot = host.indexOf('.');
  return dot === -1 ? undefined : index.get(`*${host.slice(dot)}`);
}
