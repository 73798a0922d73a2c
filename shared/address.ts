/**
 * `host:port` as every part of reverst reads and writes it: flags, client options, the
 * node's listeners, the membership record and the hop. IPv6 hosts go in brackets
 * (`[::1]:7171`), so the text is also valid in a URL.
 */
import { isIPv6 } from 'node:net';
import { ReverstError } from './errors.js';

export interface HostPort {
  host: string;
  port: number;
}

export interface AddressRules {
  /** Port 0 lets the system pick one: right for a listener, never for an address to dial. */
  allowPortZero?: boolean | undefined;
  /** The host for `:8181`; without it a host is required. */
  defaultHost?: string | undefined;
  /** Refuse 0.0.0.0 and `::`: the address is published for others to dial, and they cannot dial "any". */
  reachable?: boolean | undefined;
}

/** Where listeners bind when given `:port`, as the seed's Go listeners do. */
export const ANY_HOST = '0.0.0.0';

/** Rules for an address this process listens on. */
export const LISTEN: AddressRules = { allowPortZero: true, defaultHost: ANY_HOST };

/** Rules for an address this process listens on and publishes for other nodes to dial (the hop's). */
export const ADVERTISED: AddressRules = { allowPortZero: true, reachable: true };

// A host name or IPv4 literal: no whitespace, no separators a URL would read differently.
const HOST = /^[^\s/?#@[\]:]+$/;

const invalid = (message: string) => new ReverstError('ERR_INVALID_OPTION', message);

/** Reads `host:port`, `[ipv6]:port` or (with a default host) `:port`; throws a ReverstError saying what is wrong. */
export function parseHostPort(text: string, rules: AddressRules = {}): HostPort {
  const value = text.trim();
  const expected = `expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got ${JSON.stringify(text)}`;
  if (value.includes('://')) throw invalid(`give the address without a scheme (${expected})`);
  const colon = value.lastIndexOf(':');
  if (colon < 0) throw invalid(expected);
  let host = value.slice(0, colon);
  const portText = value.slice(colon + 1);
  if (host.startsWith('[')) {
    if (!host.endsWith(']') || !isIPv6(host.slice(1, -1))) throw invalid(`${JSON.stringify(host)} is not a bracketed IPv6 address (${expected})`);
    host = host.slice(1, -1);
  } else if (host.includes(':')) {
    throw invalid(`put an IPv6 address in brackets, e.g. [${host}]:${portText} (${expected})`);
  } else if (host === '') {
    if (rules.defaultHost === undefined) throw invalid(`missing host (${expected})`);
    host = rules.defaultHost;
  } else if (!HOST.test(host)) {
    throw invalid(expected);
  }
  if (rules.reachable && isUnspecified(host)) {
    throw invalid(`${JSON.stringify(text)} is not an address another machine can dial: give this machine's own address (its IP or host name)`);
  }
  if (!/^\d{1,5}$/.test(portText)) throw invalid(expected);
  const port = Number(portText);
  const lowest = rules.allowPortZero ? 0 : 1;
  if (port < lowest || port > 65535) throw invalid(`port ${port} is out of range ${lowest}-65535 in ${JSON.stringify(text)}`);
  return { host, port };
}

/** 0.0.0.0 or `::` (however written): "any address", to listen on but not to dial. */
function isUnspecified(host: string): boolean {
  return host === ANY_HOST || (isIPv6(host) && /^[0:]+$/.test(host));
}

/** `host:port`, with an IPv6 host in brackets. */
export function formatHostPort({ host, port }: HostPort): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The same address as canonical text (`:8181` gains its default host); throws like parseHostPort. */
export function normalizeHostPort(text: string, rules: AddressRules = {}): string {
  return formatHostPort(parseHostPort(text, rules));
}
