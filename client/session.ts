/**
 * One registered tunnel: a QUIC connection to one node, its control stream, and the
 * request streams the node opens on it. The Tunnel above decides when to make or drop one.
 */
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { ProtocolError, ServerError } from '../shared/errors.js';
import { decodeRequestHead, readHead } from '../shared/heads.js';
import type { Logger } from '../shared/log.js';
import {
  ALPN,
  CloseCode,
  FrameDecoder,
  PROTOCOL_VERSION,
  encodeFrame,
  errorForClose,
  parseControlFrame,
  readFrame,
  StreamCode,
  validateRegisterResponse,
  type Frame,
  type RegisterRequest,
} from '../shared/protocol.js';
import { QuicClosedError, connectQuic, type QuicCloseInfo, type QuicConnectOptions, type QuicConnection, type QuicStream } from '../shared/quic/index.js';
import type { Address, TunnelOptions } from './options.js';
import type { StreamServer } from './tunnel-request.js';
import { explainTlsFailure } from './server-name.js';

/**
 * After a registration step fails, how long to wait for the node's CONNECTION_CLOSE: a
 * refusal arrives as a close code, and the stream error that got here first says less.
 */
const REFUSAL_SETTLE_MS = 250;

export type SessionOptions = Pick<
  TunnelOptions,
  | 'serverName'
  | 'ca'
  | 'insecure'
  | 'group'
  | 'authorization'
  | 'serve'
  | 'idleTimeoutMs'
  | 'keepAliveMs'
  | 'unresponsiveTimeoutMs'
  | 'connectTimeoutMs'
  | 'registrationTimeoutMs'
> & { address: Address; logger: Logger; signal?: AbortSignal };

interface SessionEvents {
  /** The node is going away; it closes the connection after `deadlineMs`. */
  drain: [deadlineMs: number];
}

export class Session extends EventEmitter<SessionEvents> {
  readonly address: Address;
  readonly nodeId: string;
  /** Settles when the connection is gone: with why, or undefined if this side closed it. */
  readonly ended: Promise<Error | undefined>;

  readonly #conn: QuicConnection;
  readonly #control: QuicStream;
  readonly #requests: RequestStreams;
  readonly #logger: Logger;
  #closing: Promise<void> | undefined;
  #endReason: Error | undefined;

  constructor(conn: QuicConnection, control: QuicStream, nodeId: string, requests: RequestStreams, options: SessionOptions) {
    super();
    this.address = options.address;
    this.nodeId = nodeId;
    this.#conn = conn;
    this.#control = control;
    this.#requests = requests;
    this.#logger = options.logger;
    this.ended = conn.closed.then((info) => (this.#closing ? this.#endReason : closeError(info)));
    this.#readControl();
  }

  /**
   * Leave the node: end the control stream, which takes the tunnel out of the node's
   * rotation at once; refuse request streams that still arrive (reset before any
   * response, so the node retries them on another tunnel); give in-flight ones up to
   * `graceMs` to finish; then close the connection.
   */
  close(graceMs = 0): Promise<void> {
    this.#closing ??= this.#leave(graceMs);
    return this.#closing;
  }

  async #leave(graceMs: number): Promise<void> {
    this.#requests.refuseNew();
    this.#control.end();
    if (graceMs > 0) await this.#requests.idle(graceMs);
    await this.#conn.close({ code: CloseCode.NoError, reason: 'client leaving' });
    await this.ended;
  }

  #readControl(): void {
    const decoder = new FrameDecoder();
    this.#control.on('data', (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = decoder.push(chunk);
      } catch (error) {
        // The stream is out of sync: nothing later on it can be trusted.
        this.#abandon(new ServerError('node sent a malformed control frame', { cause: error }));
        return;
      }
      for (const frame of frames) this.#onControlFrame(frame);
    });
    // The node ending its side ('end'), or a reset ('close' without 'end'): the registration is over.
    const over = () => this.#abandon(new ServerError(`node ${this.nodeId} ended the control stream`));
    this.#control.once('end', over).once('close', over);
  }

  #onControlFrame(frame: Frame): void {
    let control;
    try {
      control = parseControlFrame(frame);
    } catch (error) {
      this.#logger.warn('ignoring a malformed control frame', { error });
      return;
    }
    // Types added by later versions are ignored.
    if (control?.Type === 'drain') this.emit('drain', control.DeadlineMs);
  }

  /** The registration is gone while the connection is not: drop the connection too. */
  #abandon(reason: Error): void {
    // A closing connection destroys its streams: the close info explains that better.
    if (this.#closing || this.#conn.isClosing) return;
    this.#endReason = reason;
    void this.close();
  }
}

/** Dial `address`, register on the group and start serving. Rejects with why it failed. */
export async function openSession(options: SessionOptions): Promise<Session> {
  const { address, logger } = options;
  const dial: QuicConnectOptions = {
    alpn: [ALPN],
    host: address.host,
    port: address.port,
    serverName: options.serverName,
    ca: options.ca,
    verifyPeer: !options.insecure,
    idleTimeoutMs: options.idleTimeoutMs,
    keepAliveMs: options.keepAliveMs,
    unresponsiveTimeoutMs: options.unresponsiveTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs,
  };
  const conn = await connectQuic(dial).catch(async (error: unknown) => {
    throw await explainTlsFailure(error, dial);
  });
  // The first requests can arrive right behind the registration answer: serve from the start.
  const requests = new RequestStreams(conn, options.serve, logger);
  const abort = () => void conn.close({ code: CloseCode.NoError, reason: 'client closing' });
  options.signal?.addEventListener('abort', abort, { once: true });
  try {
    options.signal?.throwIfAborted();
    const { control, nodeId } = await register(conn, options);
    return new Session(conn, control, nodeId, requests, options);
  } catch (err) {
    const reason = await explainFailure(conn, err);
    await conn.close();
    throw reason;
  } finally {
    options.signal?.removeEventListener('abort', abort);
  }
}

async function register(conn: QuicConnection, options: SessionOptions): Promise<{ control: QuicStream; nodeId: string }> {
  const control = await conn.openStream();
  control.on('error', (error) => options.logger.debug('control stream failed', { error }));
  const request: RegisterRequest = {
    Version: PROTOCOL_VERSION,
    TunnelGroup: options.group,
    Metadata: options.authorization ? { Authorization: options.authorization } : {},
  };
  control.write(encodeFrame(request));
  const response = validateRegisterResponse(await readFrame(control, { timeoutMs: options.registrationTimeoutMs }));
  return { control, nodeId: response.Metadata?.NodeId ?? 'unknown' };
}

/** A node refuses a registration by closing the connection; prefer its close code to our symptom. */
async function explainFailure(conn: QuicConnection, err: unknown): Promise<unknown> {
  const info = conn.isClosing ? await conn.closed : await Promise.race([conn.closed, delay(REFUSAL_SETTLE_MS, undefined, { ref: false })]);
  return info?.byPeer ? closeError(info) : err;
}

/** The error for a connection the node (or the network) ended. */
function closeError(info: QuicCloseInfo): Error {
  if (info.byPeer && info.app) return errorForClose(info.code, info.reason);
  return info.error ?? new QuicClosedError(info);
}

/** The streams the node opens for requests: each one's head is read, then it is served. */
class RequestStreams {
  #open = 0;
  readonly #idleWaiters = new Set<() => void>();
  #refusing = false;

  constructor(conn: QuicConnection, serve: StreamServer, logger: Logger) {
    // Made once, shared by every stream (`this` is the stream).
    const onError = function (this: QuicStream, error: Error): void {
      // A visitor who leaves resets the stream: that is routine, never a crash.
      logger.debug('request stream ended abnormally', { stream: this.id, error });
    };
    const onClose = (): void => {
      if (--this.#open === 0) for (const wake of this.#idleWaiters) wake();
    };
    conn.on('stream', (stream: QuicStream) => {
      stream.on('error', onError);
      if (this.#refusing) {
        stream.reset(StreamCode.Refused);
        return;
      }
      this.#open++;
      stream.once('close', onClose);
      readHead(
        stream,
        decodeRequestHead,
        ({ head, rest }) => {
          // Synchronously, before a FIN that came with the head ends the stream.
          if (rest.length > 0) stream.unshift(rest);
          try {
            serve({ head, stream });
          } catch (error) {
            // A handler's bug fails its request, not the process (this runs in the connection's read loop).
            logger.error('the request handler threw', { stream: stream.id, error });
            stream.destroy();
          }
        },
        (error) => {
          // A head this client cannot read was not processed: the node may send it elsewhere.
          if (error instanceof ProtocolError && error.code === 'ERR_PROTOCOL_BAD_HEAD') {
            logger.warn('refusing a request with an unreadable head', { stream: stream.id, error: error.message });
            stream.reset(StreamCode.BadHead);
          } else stream.destroy();
        },
      );
    });
  }

  /** From now on, reset new streams instead of serving them. */
  refuseNew(): void {
    this.#refusing = true;
  }

  /** Resolves once no request stream is open, or after `timeoutMs`. */
  async idle(timeoutMs: number): Promise<void> {
    if (this.#open === 0) return;
    let wake!: () => void;
    const idle = new Promise<void>((resolve) => (wake = resolve));
    this.#idleWaiters.add(wake);
    const timer = setTimeout(wake, timeoutMs);
    await idle;
    clearTimeout(timer);
    this.#idleWaiters.delete(wake);
  }
}
