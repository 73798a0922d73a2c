/**
 * The wire protocol between a client and a data-plane node (docs/PROTOCOL.md): the only
 * code the client and the data plane share, with the request and response heads in
 * heads.ts. Registration message field names follow the Go seed.
 */
import { decode, encode } from '@msgpack/msgpack';
import { BadRequestError, NotFoundError, ProtocolError, type RegistrationError, ServerError, UnauthorizedError } from './errors.js';

/** v2: each request stream carries a binary head and then the body (heads.ts), where v1 carried HTTP/1.1. */
export const ALPN = 'reverst/2';
/**
 * v1 is still offered by nodes, only so that a v1 client is told to upgrade (a closed
 * connection with a reason it prints) instead of failing the TLS handshake, which it
 * would retry forever.
 */
export const LEGACY_ALPN = 'reverst/1';
export const NODE_ALPNS: string[] = [ALPN, LEGACY_ALPN];
/** The registration message's version: its fields are the seed's and did not change with v2. */
export const PROTOCOL_VERSION = 1;

/** Largest frame body. Control messages are tiny; the cap stops a peer making us buffer without bound. */
export const MAX_FRAME_SIZE = 64 * 1024;
const LENGTH_PREFIX_BYTES = 4;

/** A client that opens the registration stream and sends nothing must not hold a slot for long. */
export const DEFAULT_FRAME_TIMEOUT_MS = 10_000;

/** QUIC application error codes used to close a connection. */
export const CloseCode = {
  /** Orderly close, e.g. after a drain. */
  NoError: 0x0,
  /** The server failed; the reason is free text. Clients retry. */
  ServerError: 0x1,
  /** The client's registration was refused; the reason is one of `CloseReason`. */
  ClientError: 0x2,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** QUIC stream error codes of the protocol. */
export const StreamCode = {
  /** The client refused a request stream unprocessed (it is leaving), like HTTP/3's H3_REQUEST_REJECTED: safe to retry elsewhere. */
  Refused: 0x10b,
  /** The node abandoned a request stream because the visitor went away. */
  Cancelled: 0x10c,
  /** The client could not read the request head (malformed or over its limit); nothing was processed. */
  BadHead: 0x10d,
} as const;

export const CloseReason = {
  Unauthorized: 'unauthorized',
  NotFound: 'not found',
  BadRequest: 'bad request',
} as const;
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];
/** The 0x1 reason for a registration the node gave up waiting for. */
export const REGISTRATION_TIMED_OUT = 'registration timed out';

export const ResponseCode = { Ok: 0 } as const;

export type Frame = Record<string, unknown>;

export interface RegisterRequest {
  Version: number;
  TunnelGroup: string;
  /** Carries `Authorization: "<Scheme> <payload>"` among other client metadata. */
  Metadata: Record<string, string>;
}

export interface RegisterResponse {
  Version: number;
  Code: number;
  Metadata?: ({ NodeId?: string } & Record<string, string>) | undefined;
}

export interface DrainFrame {
  Type: 'drain';
  /** How long the client has to move elsewhere before this node closes the connection. */
  DeadlineMs: number;
}
export type ControlFrame = DrainFrame;

/** `message` is any map: the typed messages above, or a frame of a type added later. */
export function encodeFrame(message: RegisterRequest | RegisterResponse | ControlFrame | Frame, maxSize = MAX_FRAME_SIZE): Buffer {
  const body = encode(message, { ignoreUndefined: true });
  if (body.byteLength > maxSize) {
    throw new ProtocolError('ERR_PROTOCOL_FRAME_TOO_LARGE', `frame of ${body.byteLength} bytes exceeds the ${maxSize}-byte limit`);
  }
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + body.byteLength);
  frame.writeUInt32BE(body.byteLength, 0);
  frame.set(body, LENGTH_PREFIX_BYTES);
  return frame;
}

function decodeBody(body: Uint8Array): Frame {
  let value: unknown;
  try {
    value = decode(body);
  } catch (err) {
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED_FRAME', `frame is not valid msgpack: ${(err as Error).message}`, { cause: err });
  }
  if (!isMap(value)) {
    throw new ProtocolError('ERR_PROTOCOL_MALFORMED_FRAME', `frame must be a msgpack map, got ${describe(value)}`);
  }
  return value as Frame;
}

/**
 * Turns a byte stream into frames. Chunks can split frames anywhere. An oversized
 * length prefix is rejected as soon as it arrives, before any of the body is awaited.
 * After it throws, the decoder is unusable (the stream is out of sync).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(private readonly maxSize = MAX_FRAME_SIZE) {}

  /** Bytes received but not yet returned as a frame. */
  get bufferedBytes(): number {
    return this.length;
  }

  write(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    // Copied: callers may reuse their buffer, and control frames are small.
    this.chunks.push(Buffer.from(chunk));
    this.length += chunk.byteLength;
  }

  /** The next complete frame, or undefined if more bytes are needed. */
  read(): Frame | undefined {
    if (this.length < LENGTH_PREFIX_BYTES) return undefined;
    const bodyLength = this.peek(LENGTH_PREFIX_BYTES).readUInt32BE(0);
    if (bodyLength > this.maxSize) {
      throw new ProtocolError('ERR_PROTOCOL_FRAME_TOO_LARGE', `frame of ${bodyLength} bytes exceeds the ${this.maxSize}-byte limit`);
    }
    if (this.length < LENGTH_PREFIX_BYTES + bodyLength) return undefined;
    const frame = this.take(LENGTH_PREFIX_BYTES + bodyLength).subarray(LENGTH_PREFIX_BYTES);
    return decodeBody(frame);
  }

  /** Writes a chunk and returns every frame it completed. */
  push(chunk: Uint8Array): Frame[] {
    this.write(chunk);
    const frames: Frame[] = [];
    for (let frame = this.read(); frame !== undefined; frame = this.read()) frames.push(frame);
    return frames;
  }

  /** Removes and returns the buffered bytes, e.g. to hand them back to a stream. */
  takeBuffered(): Buffer {
    const buffered = Buffer.concat(this.chunks);
    this.chunks = [];
    this.length = 0;
    return buffered;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.byteLength < n) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const head = this.peek(n);
    const taken = head.subarray(0, n);
    if (head.byteLength === n) this.chunks.shift();
    else this.chunks[0] = head.subarray(n);
    this.length -= n;
    return taken;
  }
}

export interface ReadFrameOptions {
  timeoutMs?: number | undefined;
  maxSize?: number | undefined;
}

/**
 * Reads exactly one frame from a stream. Bytes after the frame are unshifted back so
 * the next reader sees them; the stream is left paused.
 */
export function readFrame(stream: NodeJS.ReadableStream, options: ReadFrameOptions = {}): Promise<Frame> {
  const { timeoutMs = DEFAULT_FRAME_TIMEOUT_MS, maxSize = MAX_FRAME_SIZE } = options;
  const decoder = new FrameDecoder(maxSize);

  return new Promise<Frame>((resolve, reject) => {
    const finish = (error: unknown, frame?: Frame) => {
      clearTimeout(timer);
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
      if (frame) resolve(frame);
      else reject(error);
    };
    const onReadable = () => {
      let chunk: string | Buffer | null;
      while ((chunk = stream.read()) !== null) {
        let frame: Frame | undefined;
        try {
          decoder.write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
          frame = decoder.read();
        } catch (err) {
          return finish(err);
        }
        if (frame) {
          const rest = decoder.takeBuffered();
          if (rest.byteLength > 0) stream.unshift(rest);
          return finish(undefined, frame);
        }
      }
    };
    const onEnd = () => finish(unexpectedEof(decoder.bufferedBytes));
    const onError = (err: Error) => finish(err);
    const timer = setTimeout(() => finish(new ProtocolError('ERR_PROTOCOL_TIMEOUT', `no complete frame within ${timeoutMs}ms`)), timeoutMs);

    stream.on('error', onError);
    const { readableEnded, destroyed } = stream as { readableEnded?: boolean; destroyed?: boolean };
    if (readableEnded || destroyed) return onEnd();
    stream.on('end', onEnd);
    // A stream destroyed without an error (e.g. a reset QUIC stream) emits only 'close'.
    stream.on('close', onEnd);
    stream.on('readable', onReadable);
  });
}

function unexpectedEof(buffered: number): ProtocolError {
  return new ProtocolError(
    'ERR_PROTOCOL_UNEXPECTED_EOF',
    buffered === 0 ? 'stream ended before a frame arrived' : `stream ended in the middle of a frame (${buffered} bytes received)`,
  );
}

function badMessage(message: string): ProtocolError {
  return new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', `bad request: ${message}`);
}

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'binary';
  return `a ${typeof value}`;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function stringMap(value: unknown, field: string): Record<string, string> {
  // The seed's Go client sends a nil map when it has no metadata.
  if (value === undefined || value === null) return {};
  if (!isMap(value)) throw badMessage(`${field} must be a map of strings, got ${describe(value)}`);
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') throw badMessage(`${field}.${key} must be a string, got ${describe(entry)}`);
  }
  return value as Record<string, string>;
}

/**
 * A wire value for an error message: a number as itself, anything else by its kind.
 * Never serialised: a 20,000-level nesting would overflow the stack, and a 60 KB
 * string would end up in logs.
 */
function shown(value: unknown): string {
  if (value === undefined) return 'missing';
  return typeof value === 'number' ? String(value) : describe(value);
}

function checkVersion(value: unknown): number {
  if (value !== PROTOCOL_VERSION) {
    throw badMessage(`Version ${shown(value)} is not supported (this peer speaks ${PROTOCOL_VERSION})`);
  }
  return value;
}

/** RFC 9110 §5.5: a field value holds no control characters but HTAB (external auth sends Authorization on as a header). */
function isFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}

/** Checks a decoded registration frame; unknown fields are ignored for forward compatibility. */
export function validateRegisterRequest(frame: unknown): RegisterRequest {
  if (!isMap(frame)) throw badMessage(`registration must be a map, got ${describe(frame)}`);
  const Version = checkVersion(frame.Version);
  const { TunnelGroup } = frame;
  if (typeof TunnelGroup !== 'string' || TunnelGroup === '') {
    throw badMessage(`TunnelGroup must be a non-empty string, got ${describe(TunnelGroup)}`);
  }
  const Metadata = stringMap(frame.Metadata, 'Metadata');
  if (Metadata.Authorization !== undefined && !isFieldValue(Metadata.Authorization)) {
    throw badMessage('Metadata.Authorization holds a control character (CR, LF, NUL…): it is not a valid header value');
  }
  return { Version, TunnelGroup, Metadata };
}

export function validateRegisterResponse(frame: unknown): RegisterResponse {
  if (!isMap(frame)) throw badMessage(`registration response must be a map, got ${describe(frame)}`);
  const Version = checkVersion(frame.Version);
  if (frame.Code !== ResponseCode.Ok) throw badMessage(`unexpected response Code ${shown(frame.Code)}`);
  return { Version, Code: frame.Code, Metadata: stringMap(frame.Metadata, 'Metadata') };
}

/** A control frame this version understands, or undefined for types added later (to be ignored). */
export function parseControlFrame(frame: Frame): ControlFrame | undefined {
  if (frame.Type !== 'drain') return undefined;
  const { DeadlineMs } = frame;
  if (typeof DeadlineMs !== 'number' || !Number.isFinite(DeadlineMs) || DeadlineMs < 0) {
    throw badMessage(`drain DeadlineMs must be a non-negative number, got ${DeadlineMs === undefined ? 'nothing' : shown(DeadlineMs)}`);
  }
  return { Type: 'drain', DeadlineMs };
}

/** The client-side error for a connection the server closed with `code` and `reason`. */
export function errorForClose(code: number, reason: string): RegistrationError {
  if (code === CloseCode.ClientError) {
    if (reason === CloseReason.Unauthorized) return new UnauthorizedError();
    if (reason === CloseReason.NotFound) return new NotFoundError();
    // Any other client-error reason is still the client's fault: retrying unchanged cannot help.
    return new BadRequestError(reason === CloseReason.BadRequest ? 'bad request' : `bad request: ${reason}`);
  }
  if (code === CloseCode.ServerError) return new ServerError(reason ? `server error: ${reason}` : 'server error');
  return new ServerError(`connection closed (code 0x${code.toString(16)}${reason ? `: ${reason}` : ''})`);
}

/** How a node closes a connection from a client that speaks an older protocol: 0x2, so it stops and says why. */
export function outdatedClientClose(alpn: string): { code: CloseCode; reason: string } {
  return { code: CloseCode.ClientError, reason: `${alpn || 'this protocol'} is not served: upgrade the client to one that speaks ${ALPN}` };
}

/** The server-side close for a failed registration: the inverse of `errorForClose`. */
export function closeForError(error: unknown): { code: CloseCode; reason: string } {
  if (error instanceof UnauthorizedError) return { code: CloseCode.ClientError, reason: CloseReason.Unauthorized };
  // A registration that did not finish in time may be the network's or this node's doing
  // (a real client always sends its frame at once): the client should try again, not give up.
  if (error instanceof ProtocolError && error.code === 'ERR_PROTOCOL_TIMEOUT') return { code: CloseCode.ServerError, reason: REGISTRATION_TIMED_OUT };
  if (error instanceof NotFoundError) return { code: CloseCode.ClientError, reason: CloseReason.NotFound };
  if (error instanceof BadRequestError || error instanceof ProtocolError) {
    return { code: CloseCode.ClientError, reason: CloseReason.BadRequest };
  }
  // Reasons travel in a QUIC CONNECTION_CLOSE frame; keep them short.
  const message = error instanceof Error ? error.message : String(error);
  return { code: CloseCode.ServerError, reason: message.slice(0, 200) };
}
