import type http from 'node:http';
import net from 'node:net';
import { Agent, request as undiciRequest } from 'undici';
import { parseHostPort } from '../shared/address.js';
import { sameDigest, sha256 } from '../shared/auth/index.js';
import { HOP_BY_HOP } from '../shared/http.js';
import type { Logger } from '../shared/log.js';

/**
 * The internal hop: a node that has no tunnel for a group forwards the request
 * to a node that has one. Headers that carry the hop; a visitor's copies are
 * always dropped at the public listener.
 */
export const HOP_SECRET_HEADER = 'x-reverst-cluster-secret';
export const HOP_FROM_HEADER = 'x-reverst-hop-from';
export const HOP_GROUP_HEADER = 'x-reverst-group';
/** Set on a hop's 503 when the receiving node holds no tunnel for the group (any more). */
export const HOP_NO_TUNNEL_HEADER = 'x-reverst-no-tunnel';
export const HOP_HEADERS = new Set([HOP_SECRET_HEADER, HOP_FROM_HEADER, HOP_GROUP_HEADER, HOP_NO_TUNNEL_HEADER]);

/** A constant-time check of the cluster secret (digests hide its length), the secret hashed once. */
export function secretChecker(secret: string): (given: string | string[] | undefined) => boolean {
  const expected = sha256(secret);
  return (given) => typeof given === 'string' && sameDigest(given, expected);
}

export interface HopTarget {
  id: string;
  /** The target node's internal listener, `host:port`. */
  address: string;
}

export type HopResult =
  | { kind: 'response' }
  /** Failed before any response byte and before any body byte left: safe to try elsewhere. */
  | { kind: 'retry'; error: Error }
  | { kind: 'failed'; error: Error };

/**
 * Sends requests to other nodes over a keep-alive pool. Bodies stream both
 * ways; the visitor's X-Forwarded-* (set by the public node) travel unchanged.
 */
export class HopClient {
  readonly #agent = new Agent({ connections: 256, keepAliveTimeout: 30_000, pipelining: 1 });

  constructor(
    private readonly selfId: string,
    private readonly secret: string,
    private readonly log: Logger,
  ) {}

  /**
   * `signal` aborts the hop when the visitor leaves or the request times out, so
   * neither the pooled connection nor the far node's tunnel stream is left behind.
   */
  async forward(
    target: HopTarget,
    group: string,
    req: http.IncomingMessage,
    headers: string[],
    res: http.ServerResponse,
    withBody: boolean,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<HopResult> {
    const out: Record<string, string | string[]> = {};
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!.toLowerCase();
      // undici frames the body itself and refuses these two.
      if (name === 'connection' || name === 'transfer-encoding' || name === 'expect') continue;
      const prior = out[name];
      out[name] = prior === undefined ? headers[i + 1]! : ([] as string[]).concat(prior, headers[i + 1]!);
    }
    out[HOP_SECRET_HEADER] = this.secret;
    out[HOP_FROM_HEADER] = this.selfId;
    out[HOP_GROUP_HEADER] = group;
    try {
      const up = await undiciRequest(`http://${target.address}${req.url ?? '/'}`, {
        method: req.method as 'GET',
        headers: out,
        body: withBody ? req : null,
        dispatcher: this.#agent,
        headersTimeout: timeoutMs,
        bodyTimeout: 0,
        signal,
      });
      if (signal.aborted || res.destroyed) {
        up.body.destroy();
        return { kind: 'response' };
      }
      // The route table was stale (the tunnel just left that node): try the next node.
      if (up.statusCode === 503 && up.headers[HOP_NO_TUNNEL_HEADER] !== undefined && !(withBody && req.readableDidRead)) {
        up.body.resume();
        return { kind: 'retry', error: new Error(`node ${target.id} holds no tunnel for ${group}`) };
      }
      const raw: string[] = [];
      for (const [name, value] of Object.entries(up.headers)) {
        if (value === undefined || HOP_BY_HOP.has(name) || name === HOP_NO_TUNNEL_HEADER) continue;
        for (const v of Array.isArray(value) ? value : [value]) raw.push(name, v);
      }
      try {
        res.writeHead(up.statusCode, raw);
      } catch (err) {
        up.body.destroy();
        return { kind: 'failed', error: err as Error };
      }
      res.once('close', () => {
        if (!res.writableFinished) up.body.destroy();
      });
      up.body.on('error', () => res.destroy());
      up.body.pipe(res);
      return { kind: 'response' };
    } catch (err) {
      const error = err as Error;
      this.log.debug('hop failed', { target: target.id, group, error: error.message });
      // undici destroys a request body it was given when the request fails, so only
      // a request without one can be tried on another node.
      return withBody ? { kind: 'failed', error } : { kind: 'retry', error };
    }
  }

  /** The headers that carry a request over the hop. */
  markers(group: string): string[] {
    return [HOP_SECRET_HEADER, this.secret, HOP_FROM_HEADER, this.selfId, HOP_GROUP_HEADER, group];
  }

  /** A plain TCP connection to a node's hop listener, for Upgrade requests (they leave the pool). */
  connectRaw(target: HopTarget): Promise<net.Socket> {
    const { host, port } = parseHostPort(target.address);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port }, () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}
