/**
 * Serves a fetch-style handler (`Request => Response`) straight from a tunnel request's
 * head: no HTTP parsing on the client. Bodies stream both ways with backpressure;
 * nothing is buffered whole.
 */
import type { Duplex } from 'node:stream';
import type { RequestHead } from '../shared/heads.js';
import type { Logger } from '../shared/log.js';
import { type StreamServer, type TunnelRequest, discardBody, writeResponseHead, writeTextResponse } from './tunnel-request.js';

export type FetchHandler = (request: Request) => Response | Promise<Response>;

/** Statuses whose responses never carry a body (RFC 9110 §6.4.1). */
const NO_BODY_STATUSES = new Set([204, 205, 304]);
/** How much of a request body the web stream holds before the tunnel stream is paused. */
const BODY_HIGH_WATER_MARK = 256 << 10;

/**
 * The web Request for a tunnel request. The URL's origin comes from the head's
 * authority and the node's X-Forwarded-Proto; `signal` lets the handler see the
 * visitor going away.
 */
function toWebRequest(head: RequestHead, stream: Duplex, signal: AbortSignal): Request {
  const headers = new Headers();
  let proto = 'http';
  const list = head.headers;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    headers.append(name, list[i + 1]!);
    if (proto === 'http' && name.length === 17 && name.toLowerCase() === 'x-forwarded-proto' && list[i + 1] === 'https') proto = 'https';
  }
  headers.set('host', head.authority);
  // Concatenated, not resolved: a path such as "//other.host/x" must stay a path.
  const url = `${proto}://${head.authority || 'localhost'}${head.target === '*' ? '/' : head.target}`;
  const init: RequestInit & { duplex?: 'half' } = { method: head.method, headers, signal };
  // undici refuses a body on GET and HEAD.
  if (head.body && head.method !== 'GET' && head.method !== 'HEAD') {
    init.body = bodyStream(stream);
    // Required by undici for a streamed body: the handler may answer before the body ends.
    init.duplex = 'half';
  }
  return new Request(url, init);
}

/** The tunnel stream's body as a web stream, pulling from the stream only as the handler reads. */
function bodyStream(stream: Duplex): ReadableStream<Uint8Array> {
  let open = true;
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        stream.on('data', (chunk: Buffer) => {
          if (!open) return;
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
          if ((controller.desiredSize ?? 0) <= 0) stream.pause();
        });
        stream.once('end', () => {
          if (open) controller.close();
          open = false;
        });
        stream.once('close', () => {
          if (open) controller.error(new Error('the visitor went away before the request body ended'));
          open = false;
        });
      },
      pull() {
        stream.resume();
      },
      cancel() {
        // The handler wants no more of it: read and drop the rest, so the response can still go out.
        open = false;
        stream.resume();
      },
    },
    { highWaterMark: BODY_HIGH_WATER_MARK, size: (chunk) => chunk.byteLength },
  );
}

/** Resolves once `stream` can take more, or has closed. */
function writable(stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done).off('close', done);
      resolve();
    };
    stream.on('drain', done).on('close', done);
  });
}

/**
 * Writes `response` to the tunnel stream, streaming the body with backpressure. If the
 * visitor goes away first, the body is cancelled; if the body fails midway, the stream
 * is reset, so the visitor sees a cut response rather than a short one that looks whole.
 */
async function sendWebResponse(response: Response, head: RequestHead, stream: Duplex): Promise<void> {
  const headers: string[] = [];
  for (const [name, value] of response.headers) headers.push(name, value);
  writeResponseHead(stream, response.status, response.statusText, headers);
  const body = response.body;
  if (!body || head.method === 'HEAD' || NO_BODY_STATUSES.has(response.status)) {
    await body?.cancel().catch(() => {});
    stream.end();
    return;
  }
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (stream.destroyed) throw new Error('the visitor went away');
      if (!stream.write(value)) await writable(stream);
    }
  } catch (error) {
    await reader.cancel(error).catch(() => {});
    throw error;
  }
  stream.end();
}

/** A StreamServer that serves `handler`. A throwing handler gets a 500 and a log line. */
export function fetchServer(handler: FetchHandler, logger: Logger): StreamServer {
  return (request) => void serve(handler, request, logger);
}

async function serve(handler: FetchHandler, { head, stream }: TunnelRequest, logger: Logger): Promise<void> {
  // The handler's way to see the visitor leave: part of the fetch API, so one controller per request.
  const visitorGone = new AbortController();
  stream.once('close', () => {
    if (!stream.writableFinished) visitorGone.abort();
  });

  let request: Request;
  try {
    request = toWebRequest(head, stream, visitorGone.signal);
  } catch (err) {
    logger.debug('unusable request', { method: head.method, url: head.target, error: err });
    writeTextResponse(stream, 400, 'bad request');
    discardBody(stream);
    return;
  }
  await answer(handler, request, head, stream, visitorGone.signal, logger);
  // A body the handler never touched is dropped; one it holds a reader of is its own to finish.
  if (!request.body) discardBody(stream);
  else if (!request.body.locked) await request.body.cancel().catch(() => {});
}

/** The handler's response (or a 500 for a handler that failed) onto the tunnel stream. */
async function answer(handler: FetchHandler, request: Request, head: RequestHead, stream: Duplex, visitorGone: AbortSignal, logger: Logger): Promise<void> {
  let response: Response;
  try {
    response = await handler(request);
    if (!isResponse(response)) throw new TypeError(`the fetch handler returned ${typeof response}, not a Response`);
  } catch (err) {
    if (visitorGone.aborted) logger.debug('handler failed after the visitor left', { url: head.target, error: err });
    else logger.error('fetch handler failed', { method: head.method, url: head.target, error: err });
    writeTextResponse(stream, 500, 'internal server error');
    return;
  }

  try {
    await sendWebResponse(response, head, stream);
  } catch (err) {
    if (visitorGone.aborted) logger.debug('visitor left before the response ended', { url: head.target });
    else logger.warn('response body failed midway', { method: head.method, url: head.target, error: err });
    stream.destroy();
  }
}

// Duck-typed: a Response from another copy of undici is just as good.
function isResponse(value: unknown): value is Response {
  const candidate = value as Partial<Response> | null;
  return typeof candidate?.status === 'number' && typeof candidate.headers?.get === 'function';
}
