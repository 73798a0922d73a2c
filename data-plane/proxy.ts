import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { Transform, type Duplex } from 'node:stream';
import { HOP_BY_HOP, connectionListed, declaresBody, rawTextResponse, replyText } from '../shared/http.js';
import type { Logger } from '../shared/log.js';
import { QuicStreamResetError, type QuicStream } from '../shared/quic/index.js';
import { StreamCode } from '../shared/protocol.js';
import { HOP_HEADERS, HOP_NO_TUNNEL_HEADER, type HopClient, type HopTarget } from './hop.js';
import type { Metrics } from './metrics.js';
import { TunnelSilentError, whenSilent, type Tunnel, type TunnelPicker } from './tunnels.js';

const STREAM_CANCELLED = StreamCode.Cancelled;

// Set by this node, never taken from a visitor: the node is the edge.
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-request-id']);

export interface ProxyDeps {
  /** The group serving a Host header, if any. */
  route(host: string | undefined): string | undefined;
  picker: TunnelPicker;
  metrics: Metrics;
  logger: Logger;
  /** Longest wait for a response head from the tunnel before answering 504. */
  requestTimeoutMs: number;
  /** Largest request body accepted (413 above); 0 for no limit. */
  maxBodySize: number;
  /** Other nodes that hold a group's tunnels, in the order to try them (cluster only). */
  remote?: { targets(group: string): HopTarget[]; hop: HopClient } | undefined;
  /**
   * While a tunnel moves (a client reconnecting, or following a drain to another
   * node), its group can have no holder for a moment. Resolves true once one
   * appears, false if none does in time.
   */
  awaitHolder(group: string): Promise<boolean>;
}

/** A group served this recently is likely moving, not gone: wait for it a little. */
const HANDOVER_WINDOW_MS = 5_000;

export interface PublicProxy {
  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void;
  onHopRequest(req: http.IncomingMessage, res: http.ServerResponse, group: string): void;
  onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, hopGroup?: string): void;
}

/** The data-plane's own answers: a status and a line saying which. */
const statusLine = (status: number, message: string): string => `${status} ${http.STATUS_CODES[status] ?? ''}: ${message}`;

/** Answers the visitor from the data-plane itself. */
function reply(res: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  replyText(res, status, statusLine(status, message), headers);
}

/** Raw headers (name, value, name, value…) less those `drop` names (given in lower case). */
function filterHeaders(raw: string[], drop: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (!drop(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  return out;
}

/**
 * Hop-by-hop headers stop here, but for Upgrade on a real upgrade and
 * Transfer-Encoding, which node:http's client then re-frames the same way.
 */
const SCOPED = new Set([...HOP_BY_HOP].filter((name) => name !== 'transfer-encoding'));
const SCOPED_UPGRADE = new Set([...SCOPED].filter((name) => name !== 'upgrade'));

/** Request headers as sent down the tunnel: hop-by-hop removed, forwarding headers added. */
function forwardHeaders(req: http.IncomingMessage, requestId: string, upgrade: boolean): string[] {
  const listed = connectionListed(req.headers.connection);
  if (upgrade) listed?.delete('upgrade');
  const scoped = upgrade ? SCOPED_UPGRADE : SCOPED;
  const out = filterHeaders(req.rawHeaders, (name) => scoped.has(name) || listed?.has(name) === true || FORWARDING.has(name) || HOP_HEADERS.has(name));
  const visitor = req.socket.remoteAddress ?? '';
  const prior = req.headers['x-forwarded-for'];
  out.push('X-Forwarded-For', prior ? `${String(prior)}, ${visitor}` : visitor);
  if (req.headers.host) out.push('X-Forwarded-Host', req.headers.host);
  out.push('X-Forwarded-Proto', 'http');
  out.push('X-Request-Id', requestId);
  // One request per stream: the client's HTTP server ends the stream after the response.
  out.push('Connection', upgrade ? 'Upgrade' : 'close');
  return out;
}

/** A forwarded request's headers as the first node set them, less the hop's own. */
function hopHeaders(req: http.IncomingMessage, upgrade = false): string[] {
  const scoped = upgrade ? SCOPED_UPGRADE : SCOPED;
  const out = filterHeaders(req.rawHeaders, (name) => scoped.has(name) || HOP_HEADERS.has(name));
  out.push('Connection', upgrade ? 'Upgrade' : 'close');
  return out;
}

/** node:http frames the visitor's response itself. */
const responseHeaders = (raw: string[]): string[] => filterHeaders(raw, (name) => HOP_BY_HOP.has(name));

// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * Whether a request whose tunnel failed before responding may be sent again: never
 * once body bytes were read; otherwise when repeating it is harmless, or when the
 * client refused the stream unprocessed (it is leaving the node).
 */
function retrySafe(req: http.IncomingMessage, stream: QuicStream, err: Error): boolean {
  if (req.readableDidRead) return false;
  if (IDEMPOTENT.has(req.method ?? '')) return true;
  return !stream.created || (err instanceof QuicStreamResetError && err.resetCode === StreamCode.Refused);
}

/** Passes a body through until it exceeds `limit` bytes, then calls `onExceeded` once. */
function bodyLimit(limit: number, onExceeded: () => void): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      seen += chunk.length;
      if (seen > limit) {
        onExceeded();
        cb();
      } else cb(null, chunk);
    },
  });
}

/**
 * Public HTTP → tunnel streams. Each visitor request gets a new stream on a
 * tunnel picked by the group's policy and is written on it as HTTP/1.1; bodies
 * stream both ways. A tunnel that fails before the response began is skipped
 * and the request retried on the next one while no body byte has gone out.
 */
export function createProxy(deps: ProxyDeps): PublicProxy {
  const log = deps.logger.child({ component: 'proxy' });
  const lastServed = new Map<string, number>();

  async function openOn(group: string, tried: Set<Tunnel>): Promise<{ tunnel: Tunnel; stream: QuicStream } | undefined> {
    for (;;) {
      const tunnel = deps.picker.pick(group, tried);
      if (!tunnel) return undefined;
      tried.add(tunnel);
      try {
        const stream = await tunnel.connection.openStream();
        tunnel.inFlight++;
        stream.once('close', () => tunnel.inFlight--);
        stream.on('error', () => {}); // reported through the HTTP layer
        return { tunnel, stream };
      } catch (err) {
        log.debug('tunnel unusable, trying the next', { group, tunnel: tunnel.id, error: (err as Error).message });
      }
    }
  }

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const requestId = (req.headers['x-request-id'] as string | undefined) || randomUUID();
    const group = deps.route(req.headers.host);
    if (!group) {
      reply(res, 404, `unknown host: no tunnel group serves "${req.headers.host ?? ''}"`);
      return;
    }
    serve(req, res, group, requestId, forwardHeaders(req, requestId, false), true);
  }

  /**
   * A request another node forwarded (already authenticated by the hop
   * listener): served from this node's own tunnels only, never hopped again,
   * its forwarding headers kept as the first node set them.
   */
  function onHopRequest(req: http.IncomingMessage, res: http.ServerResponse, group: string): void {
    const requestId = (req.headers['x-request-id'] as string | undefined) || randomUUID();
    serve(req, res, group, requestId, hopHeaders(req), false);
  }

  function serve(req: http.IncomingMessage, res: http.ServerResponse, group: string, requestId: string, headers: string[], mayHop: boolean): void {
    const started = performance.now();
    res.once('close', () => deps.metrics.proxyRequests.inc({ group, code: String(res.statusCode) }));
    const limit = deps.maxBodySize;
    if (limit > 0 && Number(req.headers['content-length'] ?? 0) > limit) {
      reply(res, 413, `the request body is over the limit of ${limit} bytes`, { connection: 'close' });
      return;
    }

    const tried = new Set<Tunnel>();
    const withBody = declaresBody(req);
    // Set once the visitor is gone or we have answered: nothing more goes to a tunnel.
    let ended = false;
    let current: { stream: QuicStream; upstream: http.ClientRequest; limited?: Transform } | undefined;
    // Only a node in a cluster hops; standalone requests skip the controller.
    const hopAbort = deps.remote ? new AbortController() : undefined;
    const abandon = (): void => {
      hopAbort?.abort();
      req.unpipe();
      current?.limited?.destroy();
      current?.upstream.destroy();
      // Give the tunnel its stream credit back at once.
      current?.stream.reset(STREAM_CANCELLED);
    };
    // The visitor went away before the response was complete.
    let left = false;
    res.once('close', () => {
      clearTimeout(deadline);
      if (res.writableFinished) return;
      ended = left = true;
      abandon();
    });
    // One deadline up to the response head, waiting for a tunnel's stream credit included.
    const deadline = setTimeout(() => {
      if (res.headersSent) return;
      ended = true;
      abandon();
      reply(res, 504, `no response from the tunnel within ${deps.requestTimeoutMs} ms (request ${requestId})`);
    }, deps.requestTimeoutMs);

    // Local tunnels first; then, when none could take it, the other nodes holding the group.
    let waited = false;
    const attempt = async (): Promise<void> => {
      const opened = await openOn(group, tried);
      if (ended) {
        opened?.stream.reset(STREAM_CANCELLED);
        return;
      }
      if (!opened) {
        if (mayHop && deps.remote && (await hop())) return;
        const recentlyServed = performance.now() - (lastServed.get(group) ?? -Infinity) < HANDOVER_WINDOW_MS;
        if (mayHop && !waited && recentlyServed && !req.readableDidRead) {
          waited = true;
          if ((await deps.awaitHolder(group)) && !ended) {
            tried.clear();
            return attempt();
          }
        }
        if (ended) return;
        clearTimeout(deadline);
        if (!mayHop && !req.readableDidRead) {
          // The node that sent this may know another node for the group: let it retry there.
          reply(res, 503, `no tunnel for group "${group}" on this node could take the request (forwarded requests are not forwarded again)`, {
            [HOP_NO_TUNNEL_HEADER]: '1',
          });
        } else if (tried.size === 0) reply(res, 503, `no tunnel is registered for group "${group}"`, { 'retry-after': '1' });
        else reply(res, 502, `the tunnel failed before the response began (request ${requestId})`);
        return;
      }
      const { tunnel, stream } = opened;
      const sentAt = performance.now();
      const upstream = http.request({ method: req.method, path: req.url, headers, setHost: false, createConnection: () => stream });
      current = { stream, upstream };
      // A client that went silent before this request reached it: when the request may be sent again,
      // take it to another tunnel (the 'error' handler below retries it) instead of waiting for this one's drop.
      const unwatch = whenSilent(tunnel, sentAt, () => {
        const silent = new TunnelSilentError(tunnel.id);
        if (!ended && !res.headersSent && retrySafe(req, stream, silent) && deps.picker.hasAnswering(group, tried)) upstream.destroy(silent);
      });
      upstream.once('close', unwatch);

      upstream.once('response', (up) => {
        unwatch();
        clearTimeout(deadline);
        lastServed.set(group, performance.now());
        deps.metrics.proxyLatency.observe({ group }, (performance.now() - started) / 1000);
        try {
          res.writeHead(up.statusCode ?? 502, up.statusMessage, responseHeaders(up.rawHeaders));
        } catch (err) {
          // node:http parses heads that it then refuses to write (a status of 099, a control byte).
          stream.destroy();
          reply(res, 502, `the tunnel sent a response head that cannot be forwarded: ${(err as Error).message}`);
          return;
        }
        up.pipe(res);
        // The response is complete by its own framing: the stream has nothing more to give.
        up.once('end', () => stream.destroy());
        up.once('error', () => res.destroy());
      });
      upstream.once('error', (err) => {
        req.unpipe();
        current?.limited?.destroy();
        stream.destroy();
        if (ended || res.headersSent) {
          res.destroy();
          return;
        }
        if (retrySafe(req, stream, err)) {
          log.debug('tunnel failed before responding, retrying', { group, tunnel: tunnel.id, error: err.message, requestId });
          void attempt().catch(fail);
          return;
        }
        clearTimeout(deadline);
        reply(res, 502, `the tunnel failed before the response began (request ${requestId})`);
      });
      // FIN right after the request: the client's server then ends after its response.
      upstream.once('finish', () => stream.end());

      if (!withBody) upstream.end();
      else if (limit > 0 && req.headers['content-length'] === undefined) {
        const limited = bodyLimit(limit, () => {
          ended = true;
          clearTimeout(deadline);
          abandon();
          reply(res, 413, `the request body is over the limit of ${limit} bytes`, { connection: 'close' });
        });
        current.limited = limited;
        req.pipe(limited).pipe(upstream);
      } else req.pipe(upstream);
    };

    const fail = (err: Error): void => {
      log.error('proxy failure', { group, error: err.message, requestId });
      clearTimeout(deadline);
      reply(res, 502, `proxy error (request ${requestId})`);
    };

    /** Forward to another node; false when no node could take the request before it began. */
    const hop = async (): Promise<boolean> => {
      const remote = deps.remote!;
      for (const target of remote.targets(group)) {
        if (ended) return true;
        const result = await remote.hop.forward(target, group, req, headers, res, withBody, deps.requestTimeoutMs, hopAbort!.signal);
        // A hop aborted because the visitor left (or the deadline passed) reports 'retry': count what happened.
        deps.metrics.hopRequests.inc({ result: left ? 'cancelled' : ended ? 'failed' : result.kind });
        if (result.kind === 'response') {
          clearTimeout(deadline);
          lastServed.set(group, performance.now());
          return true;
        }
        if (ended) return true;
        if (result.kind === 'failed') {
          clearTimeout(deadline);
          reply(res, 502, `the node holding the tunnel failed while the request was being sent (request ${requestId})`);
          return true;
        }
        log.debug('hop failed before responding, trying the next node', { group, target: target.id, error: result.error.message, requestId });
      }
      return false;
    };

    void attempt().catch(fail);
  }

  /**
   * An Upgrade (WebSocket) request: once a tunnel stream (or, with no local
   * tunnel, a hop connection to a node holding one) is open, both sides become a
   * raw pipe, the far side's 101 included. `hopGroup` marks a request another
   * node forwarded: served from local tunnels only.
   */
  function onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer, hopGroup?: string): void {
    socket.on('error', () => {});
    const rawReply = (status: number, message: string): void => void socket.end(rawTextResponse(status, statusLine(status, message)));
    const group = hopGroup ?? deps.route(req.headers.host);
    if (!group) {
      rawReply(404, `unknown host: no tunnel group serves "${req.headers.host ?? ''}"`);
      return;
    }
    const requestId = (req.headers['x-request-id'] as string | undefined) || randomUUID();
    const headers = hopGroup ? hopHeaders(req, true) : forwardHeaders(req, requestId, true);
    const splice = (far: Duplex, extra: string[] = []): void => {
      let text = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (const list of [headers, extra]) for (let i = 0; i < list.length; i += 2) text += `${list[i]}: ${list[i + 1]}\r\n`;
      far.write(`${text}\r\n`);
      if (head.length > 0) far.write(head);
      far.pipe(socket);
      socket.pipe(far);
      socket.once('close', () => far.destroy());
      far.once('close', () => socket.destroy());
      deps.metrics.proxyRequests.inc({ group, code: '101' });
    };
    void (async () => {
      const opened = await openOn(group, new Set());
      if (opened) {
        if (socket.destroyed) return opened.stream.reset(STREAM_CANCELLED);
        return splice(opened.stream);
      }
      for (const target of hopGroup || !deps.remote ? [] : deps.remote.targets(group)) {
        const conn = await deps.remote!.hop.connectRaw(target).catch(() => undefined);
        if (!conn) continue;
        if (socket.destroyed) return conn.destroy();
        return splice(conn, deps.remote!.hop.markers(group));
      }
      rawReply(503, `no tunnel is registered for group "${group}"`);
    })().catch((err: Error) => {
      log.error('upgrade failure', { group, error: err.message, requestId });
      socket.destroy();
    });
  }

  return { onRequest, onHopRequest, onUpgrade };
}
