/**
 * Serves a fetch-style handler (`Request => Response`) from node:http: the tunnel hands
 * every request stream to an http.Server, and this turns its IncomingMessage into a web
 * Request and the handler's Response back into the ServerResponse. Bodies stream both
 * ways; nothing is buffered whole.
 */
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { Logger } from '../shared/log.js';
import { HOP_BY_HOP, declaresBody, replyText } from '../shared/http.js';

export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Statuses whose responses never carry a body (RFC 9110 §6.4.1). */
const NO_BODY_STATUSES = new Set([204, 205, 304]);

/**
 * The web Request for `req`. The URL's origin comes from `Host` and the data plane's
 * `X-Forwarded-Proto`; `signal` lets the handler see the visitor going away.
 */
function toWebRequest(req: IncomingMessage, signal?: AbortSignal): Request {
  const proto = req.headers['x-forwarded-proto'] === 'https' ? 'https' : 'http';
  const target = req.url ?? '/';
  // Concatenated, not resolved: a path such as "//other.host/x" must stay a path.
  const url = target.startsWith('/') ? `${proto}://${req.headers.host ?? 'localhost'}${target}` : target;

  // Hop-by-hop headers stop here: a handler forwarding the Request with fetch() would have them rejected by undici.
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (!HOP_BY_HOP.has(name.toLowerCase())) headers.append(name, req.rawHeaders[i + 1]!);
  }

  const init: RequestInit & { duplex?: 'half' } = { method: req.method ?? 'GET', headers, signal: signal ?? null };
  // undici refuses a body on GET and HEAD.
  if (req.method !== 'GET' && req.method !== 'HEAD' && declaresBody(req)) {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    // Required by undici for a streamed body: the handler may answer before the body ends.
    init.duplex = 'half';
  }
  return new Request(url, init);
}

/**
 * Writes `response` to `res`, streaming the body with backpressure. If the visitor goes
 * away first, the body is cancelled; if the body fails midway, `res` is destroyed so the
 * visitor sees a cut response rather than a short one that looks complete.
 */
async function sendWebResponse(response: Response, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const headers: string[] = [];
  for (const [name, value] of response.headers) {
    if (!HOP_BY_HOP.has(name)) headers.push(name, value);
  }
  res.writeHead(response.status, response.statusText || undefined, headers);

  const body = response.body;
  if (!body || req.method === 'HEAD' || NO_BODY_STATUSES.has(response.status)) {
    await body?.cancel().catch(() => {});
    res.end();
    return;
  }
  await pipeline(Readable.fromWeb(body as NodeReadableStream<Uint8Array>), res);
}

/** A Node request listener that serves `handler`. A throwing handler gets a 500 and a log line. */
export function fetchListener(handler: FetchHandler, logger: Logger): RequestListener {
  return (req, res) => void serve(handler, req, res, logger);
}

async function serve(handler: FetchHandler, req: IncomingMessage, res: ServerResponse, logger: Logger): Promise<void> {
  const visitorGone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) visitorGone.abort();
  });

  let request: Request;
  try {
    request = toWebRequest(req, visitorGone.signal);
  } catch (err) {
    logger.debug('unparseable request', { method: req.method, url: req.url, error: err });
    replyText(res, 400, 'bad request');
    return;
  }

  let response: Response;
  try {
    response = await handler(request);
    if (!isResponse(response)) throw new TypeError(`the fetch handler returned ${typeof response}, not a Response`);
  } catch (err) {
    if (visitorGone.signal.aborted) logger.debug('handler failed after the visitor left', { url: req.url, error: err });
    else logger.error('fetch handler failed', { method: req.method, url: req.url, error: err });
    replyText(res, 500, 'internal server error');
    return;
  }

  try {
    await sendWebResponse(response, req, res);
  } catch (err) {
    if (visitorGone.signal.aborted) logger.debug('visitor left before the response ended', { url: req.url });
    else logger.warn('response body failed midway', { method: req.method, url: req.url, error: err });
    res.destroy();
  }
}

// Duck-typed: a Response from another copy of undici is just as good.
function isResponse(value: unknown): value is Response {
  const candidate = value as Partial<Response> | null;
  return typeof candidate?.status === 'number' && typeof candidate.headers?.get === 'function';
}
