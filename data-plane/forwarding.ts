/**
 * What a visitor's request becomes on the tunnel: a v2 request head with an
 * origin-form target, the visitor's headers less hop-by-hop ones, and the node's
 * own forwarding headers first. The node is the edge: X-Forwarded-*, Forwarded
 * and X-Real-IP from a visitor are dropped, unless the visitor's address is one
 * of the trusted proxies (a load balancer in front of the node), whose values are
 * kept and extended.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { ReverstError } from '../shared/errors.js';
import type { RequestHead } from '../shared/heads.js';
import { HOP_BY_HOP } from '../shared/http.js';
import { ProxyError } from './proxy-errors.js';

/** An address or CIDR block, as `[address, prefix bits, family]`; throws for anything else. */
function parseBlock(entry: string): [string, number, 'ipv4' | 'ipv6'] {
  const [address = '', prefix, ...extra] = entry.split('/');
  const family = net.isIP(address);
  const bits = prefix === undefined ? (family === 6 ? 128 : 32) : Number(prefix);
  if (family === 0 || extra.length > 0 || !/^\d{1,3}$/.test(String(bits)) || bits > (family === 6 ? 128 : 32)) {
    throw new ReverstError('ERR_INVALID_OPTION', `"${entry}" is not an IP address or CIDR block (e.g. 10.0.0.0/8 or fd00::/8)`);
  }
  return [address, bits, family === 6 ? 'ipv6' : 'ipv4'];
}

const entries = (value: string | readonly string[] | undefined): string[] =>
  (typeof value === 'string' ? [value] : (value ?? []))
    .flatMap((v) => v.split(','))
    .map((e) => e.trim())
    .filter(Boolean);

/** Checks `--trusted-proxies` values (comma-separated addresses or CIDR blocks) as the flag is read. */
export function checkTrustedProxies(text: string): string {
  for (const entry of entries(text)) parseBlock(entry);
  return text;
}

/** Addresses whose X-Forwarded-*, Forwarded and X-Real-IP the node keeps (`--trusted-proxies`). */
export class TrustedProxies {
  static readonly none = new TrustedProxies(undefined);

  private constructor(readonly list: net.BlockList | undefined) {}

  /** `10.0.0.0/8,192.168.1.7,fd00::/8`: addresses or CIDR blocks, comma-separated (or a list of them). */
  static parse(value: string | readonly string[] | undefined, flag = '--trusted-proxies'): TrustedProxies {
    const list = new net.BlockList();
    let any = false;
    for (const entry of entries(value)) {
      try {
        list.addSubnet(...parseBlock(entry));
      } catch (error) {
        throw new ReverstError('ERR_INVALID_OPTION', `${flag}: ${(error as Error).message}`);
      }
      any = true;
    }
    return any ? new TrustedProxies(list) : TrustedProxies.none;
  }

  has(address: string | undefined): boolean {
    if (!this.list || !address) return false;
    // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    const mapped = address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : undefined;
    if (mapped) return this.list.check(mapped, 'ipv4');
    return this.list.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
  }
}

/** Headers of the visitor's that say where the request came from: set by the node, kept only from trusted proxies. */
const PROVENANCE = new Set(['forwarded', 'x-real-ip']);
const isProvenance = (name: string): boolean => name.startsWith('x-forwarded-') || PROVENANCE.has(name);

/** Headers of the hop and of the node's own answers: never taken from a visitor. */
export const RESERVED = new Set(['x-reverst-cluster-secret', 'x-reverst-hop-from', 'x-reverst-group', 'x-reverst-no-tunnel']);

/** A request id a visitor may choose: short and printable, so it is safe in logs and answers. */
const REQUEST_ID = /^[\w.:@/+=-]{1,128}$/;

export interface VisitorRequest {
  head: RequestHead;
  requestId: string;
}

/** Where an absolute-form target (RFC 9112 §3.2.2) points: its authority, and the origin-form rest. */
function splitAbsolute(url: string): { authority: string; target: string } | undefined {
  const m = /^https?:\/\/([^/?#]*)(.*)$/is.exec(url);
  if (!m || m[1] === '' || m[1]!.includes('@')) return undefined;
  const rest = m[2]!;
  return { authority: m[1]!, target: rest.startsWith('/') ? rest : `/${rest}` };
}

/**
 * The head for a visitor's request, or a ProxyError for one that cannot be forwarded.
 * `remote` is the visitor's address as the node sees it.
 */
export function visitorRequest(req: IncomingMessage, upgrade: boolean, trusted: TrustedProxies, proto = 'http'): VisitorRequest {
  const raw = req.rawHeaders;
  const remote = req.socket.remoteAddress ?? '';
  const trust = trusted.has(remote);
  let host: string | undefined;
  let requestId: string | undefined;
  let connection: string | undefined;
  let body = false;
  let forwardedFor: string | undefined;
  let forwardedHost: string | undefined;
  let forwardedProto: string | undefined;
  // The node's own headers go first, so nothing a visitor adds can push them out of a parser's limit.
  const headers: string[] = ['X-Forwarded-For', '', 'X-Forwarded-Host', '', 'X-Forwarded-Proto', '', 'X-Request-Id', ''];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower === 'host') {
      if (host !== undefined) throw ProxyError.badRequest('more than one Host header');
      host = value;
    } else if (lower === 'content-length') {
      body ||= value !== '0';
      headers.push(name, value);
    } else if (HOP_BY_HOP.has(lower)) {
      if (lower === 'transfer-encoding') body = true;
      else if (lower === 'connection') connection = connection === undefined ? value : `${connection},${value}`;
      else if (lower === 'upgrade' && upgrade) headers.push(name, value);
    } else if (lower === 'x-request-id') {
      if (requestId === undefined && REQUEST_ID.test(value)) requestId = value;
    } else if (isProvenance(lower)) {
      if (!trust) continue;
      if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      else if (lower === 'x-forwarded-host') forwardedHost ??= value;
      else if (lower === 'x-forwarded-proto') forwardedProto ??= value;
      else headers.push(name, value);
    } else if (lower !== 'expect' && !RESERVED.has(lower)) {
      // Expect: the node's HTTP server has already answered 100-continue itself.
      headers.push(name, value);
    }
  }

  const url = req.url ?? '/';
  let target = url;
  let authority = host ?? '';
  if (!url.startsWith('/') && !(url === '*' && req.method === 'OPTIONS')) {
    const absolute = splitAbsolute(url);
    if (!absolute) throw ProxyError.badTarget(url);
    ({ target, authority } = absolute);
  }

  const id = requestId ?? randomUUID();
  headers[1] = forwardedFor === undefined ? remote : `${forwardedFor}, ${remote}`;
  headers[3] = forwardedHost ?? authority;
  headers[5] = forwardedProto ?? proto;
  headers[7] = id;
  const head: RequestHead = {
    method: req.method ?? 'GET',
    target,
    authority,
    headers: connection === undefined ? headers : withoutListed(headers, connection),
    body,
    upgrade,
  };
  return { head, requestId: id };
}

/** Headers a Connection header names are hop-by-hop too (RFC 9110 §7.6.1). */
function withoutListed(headers: string[], connection: string): string[] {
  const listed = new Set<string>();
  for (const token of connection.split(',')) {
    const name = token.trim().toLowerCase();
    // Upgrade stays when the request is an upgrade: it was already let through above.
    if (name && name !== 'upgrade' && name !== 'keep-alive' && name !== 'close') listed.add(name);
  }
  if (listed.size === 0) return headers;
  const out: string[] = headers.slice(0, 8);
  for (let i = 8; i < headers.length; i += 2) if (!listed.has(headers[i]!.toLowerCase())) out.push(headers[i]!, headers[i + 1]!);
  return out;
}
