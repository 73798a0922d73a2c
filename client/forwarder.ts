/**
 * Forwards the requests a tunnel receives to a local HTTP origin (`reverst http`).
 * Bodies stream both ways with backpressure; `Upgrade` requests become a raw pipe.
 *
 * Two rules keep a tunnel from freezing (shared/notes/quiche-native.md): when the visitor
 * goes away mid-response, the origin request is destroyed so nothing keeps reading into a
 * stream nobody drains; and no origin request waits without a timeout.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import { pipeline, type Duplex } from 'node:stream';
import { ReverstError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { HOP_BY_HOP, connectionListed, declaresBody, rawTextResponse, replyText } from '../shared/http.js';

/** An origin silent this long (no bytes either way) is given up on: 504 before the response, a cut after. */
export const DEFAULT_ORIGIN_TIMEOUT_MS = 60_000;

export interface ForwarderOptions {
  /** `http:` or `https:`; a path prefix, if any, is prepended to every request path. */
  origin: URL;
  /** Send the visitor's Host to the origin instead of the origin's own (for origins that route by name). */
  preserveHost?: boolean | undefined;
  timeoutMs?: number | undefined;
  logger?: Logger | undefined;
}

export interface Forwarder {
  /** Serves requests and upgrades: give it to connect() as the handler. */
  readonly server: http.Server;
  /** Drop the pooled origin connections. */
  close(): void;
}

// A keep-alive socket the origin closed as we reused it fails with one of these before any response.
const STALE_SOCKET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

class OriginTimeoutError extends Error {
  override name = 'OriginTimeoutError';
  readonly code = 'ETIMEDOUT';
}

export function createForwarder(options: ForwarderOptions): Forwarder {
  const { origin, preserveHost = false, timeoutMs = DEFAULT_ORIGIN_TIMEOUT_MS } = options;
  if (origin.protocol !== 'http:' && origin.protocol !== 'https:')
    throw new ReverstError('ERR_INVALID_OPTION', `origin must be http: or https:, got ${origin.protocol}`);
  const logger = (options.logger ?? silentLogger).child({ component: 'forwarder', origin: origin.origin });
  const secure = origin.protocol === 'https:';
  // Keep-alive saves a TCP (and TLS) handshake per request; LIFO reuses the socket least likely to have idled out.
  const agent = secure ? new https.Agent({ keepAlive: true, scheduling: 'lifo' }) : new http.Agent({ keepAlive: true, scheduling: 'lifo' });
  const prefix = origin.pathname.replace(/\/+$/, '');

  const request = secure ? https.request : http.request;
  const hostname = origin.hostname.replace(/^\[|\]$/g, '');

  const originRequest = (req: IncomingMessage, headers: OutgoingHttpHeaders): http.ClientRequest => {
    const upstream = request({
      protocol: origin.protocol,
      hostname,
      port: origin.port || undefined,
      method: req.method,
      path: prefix + (req.url ?? '/'),
      headers,
      agent,
    });
    upstream.setTimeout(timeoutMs, () => upstream.destroy(new OriginTimeoutError(`origin silent for ${timeoutMs} ms`)));
    return upstream;
  };

  const forwardHeaders = (req: IncomingMessage, keep: string[] = []): OutgoingHttpHeaders => {
    const headers: OutgoingHttpHeaders = withoutHopByHop(req.headers, keep);
    if (!preserveHost) headers.host = origin.host;
    return headers;
  };

  const forward = (req: IncomingMessage, res: ServerResponse, retried = false): void => {
    const bodied = declaresBody(req);
    const upstream = originRequest(req, forwardHeaders(req));
    // The visitor left (the node reset the stream): stop the origin, so nothing keeps reading.
    const onVisitorGone = () => {
      if (!res.writableFinished) upstream.destroy();
    };
    res.once('close', onVisitorGone);

    upstream.on('response', (answer) => {
      try {
        res.writeHead(answer.statusCode ?? 502, answer.statusMessage, withoutHopByHop(answer.headers));
      } catch (error) {
        // node:http parses heads it then refuses to write (a status of 099, a control byte).
        upstream.destroy();
        replyText(res, 502, `bad gateway: ${origin.host} sent a response head that cannot be forwarded: ${(error as Error).message}`);
        return;
      }
      pipeline(answer, res, (error) => {
        if (!error) return;
        logger.debug('response cut short', { url: req.url, error });
        upstream.destroy();
        res.destroy();
      });
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (res.headersSent || res.destroyed) return; // the pipeline above handles a failure mid-body
      // A bodiless request on a reused socket the origin had just closed is safe to send again.
      if (!retried && !bodied && upstream.reusedSocket && STALE_SOCKET_CODES.has(error.code ?? '')) {
        res.off('close', onVisitorGone);
        forward(req, res, true);
        return;
      }
      const timedOut = error instanceof OriginTimeoutError;
      logger.warn('origin request failed', { method: req.method, url: req.url, error: error.message });
      replyText(res, timedOut ? 504 : 502, `${timedOut ? 'gateway timeout' : 'bad gateway'}: ${origin.host}: ${error.code ?? error.message}`);
    });

    if (bodied) req.pipe(upstream);
    else upstream.end();
  };

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', (error) => logger.debug('upgraded stream failed', { url: req.url, error }));
    const upstream = originRequest(req, forwardHeaders(req, ['connection', 'upgrade']));
    socket.once('close', () => upstream.destroy());

    upstream.on('upgrade', (answer, originSocket, originHead) => {
      // From here on it is a raw pipe: silence is normal (a quiet WebSocket), so no idle timeout.
      originSocket.setTimeout(0);
      socket.write(rawHead(answer));
      if (originHead.length > 0) socket.write(originHead);
      if (head.length > 0) originSocket.write(head);
      // pipe() carries each side's end as a half-close to the other.
      originSocket.pipe(socket);
      socket.pipe(originSocket);
      originSocket.on('error', (error) => {
        logger.debug('origin side of an upgrade failed', { url: req.url, error });
        socket.destroy();
      });
      socket.once('close', () => originSocket.destroy());
    });
    // The origin declined to switch protocols: relay its answer and end the stream.
    upstream.on('response', (answer) => {
      socket.write(rawHead(answer, { connection: 'close' }));
      pipeline(answer, socket, () => upstream.destroy());
    });
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      logger.warn('origin upgrade failed', { url: req.url, error: error.message });
      if (!socket.destroyed) socket.end(rawTextResponse(502, `bad gateway: ${origin.host}: ${error.code ?? error.message}`));
    });
    upstream.end();
  };

  const server = http.createServer(forward);
  server.on('upgrade', upgrade);
  return { server, close: () => agent.destroy() };
}

function withoutHopByHop(headers: IncomingHttpHeaders, keep: readonly string[] = []): OutgoingHttpHeaders {
  // Headers named in Connection are hop-by-hop too.
  const listed = keep.includes('connection') ? undefined : connectionListed(headers.connection || undefined);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || (HOP_BY_HOP.has(name) && !keep.includes(name)) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** The status line and headers of `answer`, for writing to a raw (upgraded) stream. */
function rawHead(answer: IncomingMessage, override: Record<string, string> = {}): string {
  const skip = new Set(Object.keys(override));
  // A declined upgrade's body is relayed as it arrives and ended by the close, so its framing goes.
  if ('connection' in override) skip.add('transfer-encoding');
  let head = `HTTP/1.1 ${answer.statusCode} ${answer.statusMessage ?? ''}\r\n`;
  for (let i = 0; i < answer.rawHeaders.length; i += 2) {
    if (!skip.has(answer.rawHeaders[i]!.toLowerCase())) head += `${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}\r\n`;
  }
  for (const [name, value] of Object.entries(override)) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}
