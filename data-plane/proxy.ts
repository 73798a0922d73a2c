/**
 * Public HTTP → tunnel streams. Each visitor request is one ProxyRequest whose life
 * has named steps: route (Host → group), open (a stream on a local tunnel the group's
 * policy picks, else a hop to a node holding one), forward (the v2 head, then the
 * body), relay (the response head and body back to the visitor) and one finish().
 * Errors are ProxyErrors that know the visitor's answer; finish() sends it, clears
 * the deadline, resets what the far side still holds and counts the request.
 */
import type http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex, Readable } from 'node:stream';
import { ProtocolError } from '../shared/errors.js';
import { type RequestHead, type ResponseHead, decodeResponseHead, encodeRequestHead, readHead } from '../shared/heads.js';
import type { Logger } from '../shared/log.js';
import { type Far, TunnelFar } from './far.js';
import { TrustedProxies, visitorRequest } from './forwarding.js';
import type { Metrics } from './metrics.js';
import { ProxyError } from './proxy-errors.js';
import type { Tunnel, TunnelPicker } from './tunnels.js';
import { ResponseVisitor, SocketVisitor, responseProblem, type Visitor } from './visitors.js';

/** Headers a request may have; node:http keeps this many by default and drops the rest silently, so more is refused (431). */
export const MAX_HEADER_COUNT = 2000;

// RFC 9110 §9.2.2: repeating these has the same effect as sending them once.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export type HopResult = 'response' | 'retry' | 'failed' | 'cancelled';

export interface HopTarget {
  id: string;
  /** The target node's internal listener, `host:port`. */
  address: string;
}

/** Other nodes of the cluster, for groups this node holds no tunnel for. */
export interface Remote {
  /** Nodes holding the group's tunnels, in the order to try them. */
  targets(group: string): HopTarget[];
  /** Starts an exchange with `target` for a request with `head`; rejects if the node cannot be reached. */
  open(target: HopTarget, group: string, head: RequestHead): Promise<Far>;
  /** Counts hop outcomes: response (a head came back), retry (failed before it began, moving on), failed, cancelled (the visitor left). */
  count(result: HopResult): void;
}

export interface ProxyDeps {
  /** The group serving a host (a Host header, or an absolute-form target's authority), if any. */
  route(host: string | undefined): string | undefined;
  picker: TunnelPicker;
  metrics: Metrics;
  logger: Logger;
  /**
   * Longest wait for a response head before answering 504, opening a stream included,
   * counted from the request's last body byte (an upload still moving is not a silent tunnel).
   */
  requestTimeoutMs: number;
  /** Largest request body accepted (413 above); 0 for no limit. */
  maxBodySize: number;
  /**
   * Largest header section a request may have as it leaves the node, forwarding headers
   * included (431 above): what reaches the origin fits the same limit (0: not checked here).
   */
  maxHeaderSize?: number | undefined;
  /** Visitors whose X-Forwarded-*, Forwarded and X-Real-IP are kept. */
  trustedProxies?: TrustedProxies | undefined;
  remote?: Remote | undefined;
  /**
   * While a tunnel moves (a client reconnecting, or following a drain to another
   * node), its group can have no holder for a moment, or only holders whose route
   * is stale (they answer "no tunnel here"). Resolves true once a holder not in
   * `tried` appears; false at once if the group is not moving, or if none appears in time.
   */
  awaitHolder(group: string, tried: TriedHolders): Promise<boolean>;
}

/** What a request has tried so far: this node's tunnels, and the other nodes it hopped to. */
export interface TriedHolders {
  tunnels: ReadonlySet<Tunnel>;
  nodes: ReadonlySet<string>;
}

/** A request another node forwarded here: served from this node's tunnels only, never hopped again. */
export interface HopRequest {
  group: string;
  head: RequestHead;
  /** The head as it arrived, passed on to the tunnel as is. */
  headBytes?: Buffer | undefined;
  /** Body bytes (after the head), when the head says there are any. */
  body: Readable | undefined;
  visitor: Visitor;
}

export interface PublicProxy {
  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void;
  onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  serveHop(request: HopRequest): void;
}

interface Routed {
  group: string;
  head: RequestHead;
  headBytes: Buffer;
  requestId: string;
}

interface Context {
  readonly deps: ProxyDeps;
  readonly log: Logger;
}

/** A visitor's request from the moment it arrives until finish(). */
class ProxyRequest {
  readonly #ctx: Context;
  readonly #visitor: Visitor;
  readonly #group: string;
  readonly #head: RequestHead;
  /** The head as sent, encoded once for every attempt. */
  readonly #headBytes: Buffer;
  readonly #requestId: string;
  readonly #body: Readable | undefined;
  /** Bytes node:http read past an upgrade request's head: the first of its stream. */
  readonly #early: Buffer;
  /** Only a request from a visitor may go to another node; one from the hop may not go on. */
  readonly #mayHop: boolean;
  readonly #started = performance.now();
  readonly #tried = new Set<Tunnel>();
  /** Nodes hopped to in this round (they turned the request away, or could not be reached). */
  readonly #triedNodes = new Set<string>();
  #targets: HopTarget[] | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #far: Far | undefined;
  /** The current hop's outcome went into the metrics. */
  #hopCounted = false;
  #stopBody: (() => void) | undefined;
  #bodyBytes = 0;
  #response: ResponseHead | undefined;
  /** Why the last far side failed, for the answer when none is left to try. */
  #failure: ProxyError | undefined;
  #finished = false;

  constructor(ctx: Context, visitor: Visitor, routed: Routed, body: Readable | undefined, early: Buffer, mayHop: boolean) {
    this.#ctx = ctx;
    this.#visitor = visitor;
    this.#group = routed.group;
    this.#head = routed.head;
    this.#headBytes = routed.headBytes;
    this.#requestId = routed.requestId;
    this.#body = body;
    this.#early = early;
    this.#mayHop = mayHop;
  }

  start(): void {
    this.#visitor.onClose(() => this.finish());
    const limit = this.#ctx.deps.maxBodySize;
    const declared = Number(headerValue(this.#head.headers, 'content-length') ?? 0);
    if (limit > 0 && !this.#head.upgrade && declared > limit) {
      this.finish(ProxyError.bodyTooLarge(limit));
      return;
    }
    // One deadline up to the response head, waiting for a tunnel's stream credit included; each body byte sent restarts it.
    this.#deadline = setTimeout(() => this.finish(ProxyError.timeout(this.#ctx.deps.requestTimeoutMs, this.#requestId)), this.#ctx.deps.requestTimeoutMs);
    this.#run().catch((error: unknown) => this.finish(error));
  }

  /** open → forward → relay, moving to the next tunnel or node while that is safe. */
  async #run(): Promise<void> {
    let waited = false;
    for (;;) {
      const far = await this.#open();
      if (this.#finished) return far?.abandon();
      if (!far) {
        if (!waited && this.#mayWaitForHolder()) {
          waited = true;
          if ((await this.#ctx.deps.awaitHolder(this.#group, { tunnels: this.#tried, nodes: this.#triedNodes })) && !this.#finished) {
            this.#tried.clear();
            this.#triedNodes.clear();
            this.#targets = undefined;
            continue;
          }
          if (this.#finished) return;
        }
        // A request from the hop that nothing here could take goes back to the node that sent it, which may know another.
        if (!this.#mayHop && this.#bodyBytes === 0) throw ProxyError.noTunnelHere(this.#group);
        throw this.#failure ?? ProxyError.noTunnel(this.#group);
      }
      try {
        await this.#exchange(far);
        return;
      } catch (error) {
        far.abandon();
        this.#stopBody?.();
        if (this.#finished) return;
        // A far side that refused the request unprocessed is no failure of it: like finding no tunnel.
        if (!far.unprocessed(error)) this.#failure = this.#explain(far, error);
        const retry = this.#mayRetry(far, error);
        this.#countHop(retry ? 'retry' : 'failed');
        if (!retry) throw this.#explain(far, error);
        this.#ctx.log.debug('far side failed before responding, trying the next', {
          group: this.#group,
          far: far.label,
          error: String(error),
          requestId: this.#requestId,
        });
      }
    }
  }

  /** The next tunnel of the group on this node, else the next node holding it; undefined when none is left. */
  async #open(): Promise<Far | undefined> {
    const { deps, log } = this.#ctx;
    for (let tunnel = deps.picker.pick(this.#group, this.#tried); tunnel; tunnel = deps.picker.pick(this.#group, this.#tried)) {
      this.#tried.add(tunnel);
      try {
        const stream = await tunnel.connection.openStream();
        return new TunnelFar(tunnel, stream);
      } catch (error) {
        log.debug('tunnel unusable, trying the next', { group: this.#group, tunnel: tunnel.id, error: (error as Error).message });
      }
    }
    const remote = deps.remote;
    if (!this.#mayHop || !remote) return undefined;
    this.#targets ??= remote.targets(this.#group);
    for (let target = this.#targets.shift(); target && !this.#finished; target = this.#targets.shift()) {
      this.#triedNodes.add(target.id);
      try {
        return await remote.open(target, this.#group, this.#head);
      } catch (error) {
        remote.count('retry');
        log.debug('node unreachable, trying the next', { group: this.#group, node: target.id, error: (error as Error).message });
      }
    }
    return undefined;
  }

  /** forward, then relay: the head and body out; resolves once the response head went on to the visitor. */
  #exchange(far: Far): Promise<void> {
    this.#far = far;
    this.#hopCounted = false;
    const { stream } = far;
    // A client that goes silent before this request reached it: while the request may be sent again
    // and another tunnel answers, take it there instead of waiting for this one to be dropped.
    if (far instanceof TunnelFar) {
      const { picker } = this.#ctx.deps;
      far.whenSilent(performance.now(), (silent) => {
        if (!this.#finished && this.#mayRetry(far, silent) && picker.hasAnswering(this.#group, this.#tried)) stream.destroy(silent);
      });
    }
    stream.write(this.#headBytes);
    if (this.#head.body || this.#head.upgrade) this.#sendBody(stream);
    else stream.end();
    return new Promise((resolve, reject) =>
      readHead(
        stream,
        decodeResponseHead,
        ({ head, rest }) => {
          try {
            this.#relay(far, head, rest);
            resolve();
          } catch (error) {
            reject(error);
          }
        },
        reject,
      ),
    );
  }

  /**
   * relay: runs as the response head is read, before the stream moves on (a FIN may come with
   * the head). A head that cannot go to the visitor throws before anything changed: the far
   * side failed before the response began.
   */
  #relay(far: Far, head: ResponseHead, rest: Buffer): void {
    if (this.#finished) return;
    const problem = responseProblem(head, this.#head.upgrade);
    if (problem) throw ProxyError.badResponse(this.#requestId, problem);
    const expectBody = this.#head.method !== 'HEAD' && head.status !== 204 && head.status !== 304;
    this.#response = head;
    try {
      this.#visitor.respond(head, rest, far.stream, expectBody, (error) => this.finish(error));
    } catch (error) {
      // node:http refuses some heads it would parse (a status it cannot write): nothing went out yet.
      this.#response = undefined;
      throw ProxyError.badResponse(this.#requestId, error);
    }
    clearTimeout(this.#deadline);
    if (far instanceof TunnelFar) far.unwatch();
    this.#countHop('response');
    this.#ctx.deps.metrics.proxyLatency.observe({ group: this.#group }, (performance.now() - this.#started) / 1000);
    // From here a failure of the far side cuts the response: it cannot be answered any more.
    // A stream can also close without an error (its connection closed from this side).
    far.stream.on('error', (error: Error) => this.finish(error));
    far.stream.once('close', () => {
      if (!far.stream.readableEnded) this.finish(new Error(`${far.label} closed before the response ended`));
    });
  }

  /** The body, or an upgrade's early bytes and stream, to the far side: a pipe that counts and stops at the limit. */
  #sendBody(to: Duplex): void {
    const body = this.#body;
    const limit = this.#head.upgrade ? 0 : this.#ctx.deps.maxBodySize;
    const onData = (chunk: Buffer): void => {
      this.#bodyBytes += chunk.length;
      if (!this.#response) this.#deadline?.refresh();
      if (limit > 0 && this.#bodyBytes > limit) {
        this.finish(ProxyError.bodyTooLarge(limit));
        return;
      }
      if (!to.write(chunk)) body?.pause();
    };
    if (this.#early.length > 0) onData(this.#early);
    // An empty body may have ended during an earlier attempt.
    if (!body || body.readableEnded) return void to.end();
    const onDrain = (): void => void body.resume();
    const onEnd = (): void => void to.end();
    body.on('data', onData).once('end', onEnd);
    to.on('drain', onDrain);
    body.resume();
    this.#stopBody = () => {
      body.off('data', onData).off('end', onEnd).pause();
      to.off('drain', onDrain);
    };
  }

  /** The one place that decides whether a failed attempt may go to another tunnel or node. */
  #mayRetry(far: Far, error: unknown): boolean {
    if (this.#bodyBytes > 0 || this.#early.length > 0 || this.#visitor.started) return false;
    return IDEMPOTENT.has(this.#head.method) || far.unprocessed(error);
  }

  /** One count per hop attempt, whatever ends it. */
  #countHop(result: HopResult): void {
    if (this.#far?.kind !== 'hop' || this.#hopCounted) return;
    this.#hopCounted = true;
    this.#ctx.deps.remote?.count(result);
  }

  /** A request from the hop goes back to the node that sent it, which waits; one with body bytes sent cannot go again. */
  #mayWaitForHolder(): boolean {
    return this.#mayHop && this.#bodyBytes === 0;
  }

  #explain(far: Far, error: unknown): ProxyError {
    if (error instanceof ProxyError) return error;
    if (error instanceof ProtocolError && error.code === 'ERR_PROTOCOL_BAD_HEAD') return ProxyError.badResponse(this.#requestId, error);
    return far.kind === 'hop' ? ProxyError.hopFailed(this.#requestId, error) : ProxyError.tunnelFailed(this.#requestId, error);
  }

  /**
   * The end of the request, whatever ended it: the response went out whole (no
   * error), the visitor left, or a step failed (its ProxyError is the answer, if
   * one can still be given; otherwise the response is cut).
   */
  finish(error?: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#deadline);
    this.#stopBody?.();
    if (this.#far instanceof TunnelFar) this.#far.unwatch();
    // A hop still waiting for its answer: the visitor left (cancelled), or time ran out or it broke (failed).
    this.#countHop(error === undefined && !this.#visitor.completed ? 'cancelled' : 'failed');
    // Whatever of the body is left is read and dropped, so a keep-alive connection can carry the next request.
    if (this.#body && !this.#body.readableEnded) this.#body.resume();
    const visitor = this.#visitor;
    const far = this.#far;
    let code: number;
    if (error === undefined && visitor.completed) {
      // The response is whole; a request body still going out (the far side answered early) stops here.
      if (far && !far.stream.writableEnded) far.abandon();
      code = this.#response?.status ?? 0;
    } else {
      far?.abandon();
      if (error === undefined) {
        // The visitor left (499, as nginx counts it, when no answer had begun).
        code = visitor.started ? (this.#response?.status ?? 0) : 499;
        visitor.cut();
      } else if (visitor.started) {
        this.#ctx.log.debug('response cut', { group: this.#group, error: String(error), requestId: this.#requestId });
        code = this.#response?.status ?? 0;
        visitor.cut();
      } else {
        const answer = error instanceof ProxyError ? error : ProxyError.internal(this.#requestId, error);
        if (!(error instanceof ProxyError)) this.#ctx.log.error('proxy failure', { group: this.#group, error: String(error), requestId: this.#requestId });
        code = answer.status;
        visitor.reply(answer);
      }
    }
    this.#ctx.deps.metrics.proxyRequests.inc({ group: this.#group, code: String(code) });
  }
}

/** The head's size written as HTTP/1.1 (request line, Host, fields, blank line): what the origin's parser will count. */
function sectionSize(head: RequestHead): number {
  let size = head.method.length + head.target.length + 13 + 8 + head.authority.length;
  for (let i = 0; i < head.headers.length; i += 2) size += head.headers[i]!.length + head.headers[i + 1]!.length + 4;
  return size;
}

function headerValue(headers: string[], lower: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() === lower) return headers[i + 1];
  return undefined;
}

export function createProxy(deps: ProxyDeps): PublicProxy {
  const ctx: Context = { deps, log: deps.logger.child({ component: 'proxy' }) };
  const trusted = deps.trustedProxies ?? TrustedProxies.none;

  /** route: the visitor's request as a v2 head, and the group serving its host. */
  const route = (req: http.IncomingMessage, visitor: Visitor, upgrade: boolean): Routed | undefined => {
    try {
      if (req.rawHeaders.length > 2 * MAX_HEADER_COUNT) throw ProxyError.headersTooLarge(`more than ${MAX_HEADER_COUNT} headers`);
      const { head, requestId } = visitorRequest(req, upgrade, trusted);
      const group = deps.route(head.authority);
      if (!group) throw ProxyError.unknownHost(head.authority);
      const limit = deps.maxHeaderSize ?? 0;
      if (limit > 0 && sectionSize(head) > limit) throw ProxyError.headersTooLarge(`over ${limit} bytes with the forwarding headers the node adds`);
      return { group, head, headBytes: encode(head), requestId };
    } catch (error) {
      const answer = error instanceof ProxyError ? error : ProxyError.badRequest(String(error));
      deps.metrics.proxyRequests.inc({ group: '', code: String(answer.status) });
      visitor.reply(answer);
      return undefined;
    }
  };

  return {
    onRequest(req, res) {
      const visitor = new ResponseVisitor(res);
      const routed = route(req, visitor, false);
      if (routed) new ProxyRequest(ctx, visitor, routed, routed.head.body ? req : undefined, EMPTY, true).start();
    },

    onUpgrade(req, socket, early) {
      // A visitor who resets the connection must not take the node down.
      socket.on('error', () => {});
      const visitor = new SocketVisitor(socket);
      const routed = route(req, visitor, true);
      if (routed) new ProxyRequest(ctx, visitor, routed, socket, early, true).start();
    },

    serveHop({ group, head, headBytes, body, visitor }) {
      const requestId = headerValue(head.headers, 'x-request-id') ?? '-';
      new ProxyRequest(ctx, visitor, { group, head, headBytes: headBytes ?? encodeRequestHead(head), requestId }, body, EMPTY, false).start();
    },
  };
}

/** A head that cannot be sent is the visitor's doing: too large (431) or not HTTP that can travel (400). */
function encode(head: RequestHead): Buffer {
  try {
    return encodeRequestHead(head);
  } catch (error) {
    const message = (error as Error).message;
    throw /limit/.test(message) ? ProxyError.headersTooLarge(message) : ProxyError.badRequest(message);
  }
}

const EMPTY = Buffer.alloc(0);
