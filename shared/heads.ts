/**
 * Wire protocol v2 request and response heads (docs/PROTOCOL.md): each request stream
 * starts with one binary head, then body bytes run to FIN, as HTTP/3 carries a HEADERS
 * frame before DATA. HTTP is parsed once where it enters (the node's public listener)
 * and serialized once where it leaves (the visitor's response, the origin request);
 * nothing on the tunnel parses HTTP/1.1.
 *
 * A head is `varint length` + that many bytes; integers are QUIC variable-length
 * integers (RFC 9000 §16) and strings are `varint length` + latin1 bytes, as HTTP
 * field octets arrive from node:http.
 *
 *   request:  0x01 flags(u8) method target authority count (name value)*count
 *   response: 0x02 status(u16) reason count (name value)*count
 *
 * Every length is checked against a limit before anything is buffered, so a peer
 * cannot make the reader hold more than `maxSize` bytes for a head.
 */
import type { Readable } from 'node:stream';
import { ProtocolError } from './errors.js';

/** The largest head either side accepts: far above any header section a node is configured for. */
export const MAX_HEAD_SIZE = 1 << 20;

const REQUEST_HEAD = 0x01;
const RESPONSE_HEAD = 0x02;
/** The request has body bytes after its head (they run to FIN). */
const FLAG_BODY = 0x01;
/** An Upgrade request: after a 101 the stream carries the upgraded protocol both ways. */
const FLAG_UPGRADE = 0x02;
const KNOWN_FLAGS = FLAG_BODY | FLAG_UPGRADE;
/** Values up to 2^30 - 1 fit a 4-byte varint; longer ones never fit a head. */
const MAX_VARINT = 0x3fffffff;

export interface RequestHead {
  method: string;
  /** Origin-form (`/path?query`), or `*` for `OPTIONS *`: never an absolute URL. */
  target: string;
  /** What the visitor's Host named (or an absolute-form target's authority). */
  authority: string;
  /** Flat `[name, value, name, value…]` as sent, Host and hop-by-hop headers excluded. */
  headers: string[];
  /** Body bytes follow the head. */
  body: boolean;
  upgrade: boolean;
}

export interface ResponseHead {
  /** 101 (upgrade accepted) or 200-999: other informational answers are not carried. */
  status: number;
  /** Empty for the status's usual text. */
  reason: string;
  headers: string[];
}

function headError(message: string): ProtocolError {
  return new ProtocolError('ERR_PROTOCOL_BAD_HEAD', message);
}

// The same character classes node:http checks with (native regular expressions beat a loop in JS).
/** RFC 9110 §5.6.2 token: methods and header names. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Field values and reason phrases: octets, tabs and spaces, no other control characters (RFC 9110 §5.5). */
const NOT_FIELD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** Request targets and authorities: visible octets, no spaces or controls. */
const NOT_VISIBLE = /[^\x21-\x7e\x80-\xff]/;

const isToken = (s: string): boolean => TOKEN.test(s);
const isFieldValue = (s: string): boolean => !NOT_FIELD_VALUE.test(s);
const isVisible = (s: string): boolean => !NOT_VISIBLE.test(s);

function checkRequest(head: RequestHead): void {
  if (!isToken(head.method)) throw headError(`method ${JSON.stringify(head.method)} is not a token`);
  if (!(head.target.startsWith('/') || (head.target === '*' && head.method === 'OPTIONS')) || !isVisible(head.target)) {
    throw headError(`request target ${JSON.stringify(head.target.slice(0, 100))} is not origin-form`);
  }
  if (!isVisible(head.authority)) throw headError(`authority ${JSON.stringify(head.authority.slice(0, 100))} has spaces or control characters`);
  checkFields(head.headers);
}

function checkResponse(head: ResponseHead): void {
  if (!Number.isInteger(head.status) || !(head.status === 101 || (head.status >= 200 && head.status <= 999))) {
    throw headError(`status ${head.status} cannot be carried (101 or 200-999)`);
  }
  if (!isFieldValue(head.reason)) throw headError('the reason phrase has control characters');
  checkFields(head.headers);
}

function checkFields(headers: string[]): void {
  if (headers.length % 2 !== 0) throw headError('headers must be name, value pairs');
  for (let i = 0; i < headers.length; i += 2) {
    if (!isToken(headers[i]!)) throw headError(`header name ${JSON.stringify(headers[i]!.slice(0, 100))} is not a token`);
    if (!isFieldValue(headers[i + 1]!)) throw headError(`header ${headers[i]} has a value with control characters`);
  }
}

const varintSize = (n: number): number => (n < 0x40 ? 1 : n < 0x4000 ? 2 : 4);
const stringSize = (s: string): number => varintSize(s.length) + s.length;

function writeVarint(buf: Buffer, at: number, n: number): number {
  if (n < 0x40) {
    buf[at] = n;
    return at + 1;
  }
  if (n < 0x4000) {
    buf.writeUInt16BE(0x4000 | n, at);
    return at + 2;
  }
  buf.writeUInt32BE((0x80000000 | n) >>> 0, at);
  return at + 4;
}

function writeString(buf: Buffer, at: number, s: string): number {
  const next = writeVarint(buf, at, s.length);
  return next + buf.write(s, next, s.length, 'latin1');
}

function frame(bodySize: number, maxSize: number, fill: (buf: Buffer, at: number) => number): Buffer {
  if (bodySize > maxSize) throw headError(`head of ${bodySize} bytes exceeds the ${maxSize}-byte limit`);
  const buf = Buffer.allocUnsafe(varintSize(bodySize) + bodySize);
  const end = fill(buf, writeVarint(buf, 0, bodySize));
  if (end !== buf.length) throw new Error(`head encoder wrote ${end} of ${buf.length} bytes`);
  return buf;
}

function fieldsSize(headers: string[]): number {
  let size = varintSize(headers.length / 2);
  for (const s of headers) size += stringSize(s);
  return size;
}

function writeFields(buf: Buffer, at: number, headers: string[]): number {
  let next = writeVarint(buf, at, headers.length / 2);
  for (const s of headers) next = writeString(buf, next, s);
  return next;
}

/** The request head as sent on a new request stream. Throws a ProtocolError for a head HTTP could not carry. */
export function encodeRequestHead(head: RequestHead, maxSize = MAX_HEAD_SIZE): Buffer {
  checkRequest(head);
  const size = 2 + stringSize(head.method) + stringSize(head.target) + stringSize(head.authority) + fieldsSize(head.headers);
  return frame(size, maxSize, (buf, at) => {
    buf[at] = REQUEST_HEAD;
    buf[at + 1] = (head.body ? FLAG_BODY : 0) | (head.upgrade ? FLAG_UPGRADE : 0);
    let next = writeString(buf, at + 2, head.method);
    next = writeString(buf, next, head.target);
    next = writeString(buf, next, head.authority);
    return writeFields(buf, next, head.headers);
  });
}

/** The response head a request stream's far side sends before the response body. */
export function encodeResponseHead(head: ResponseHead, maxSize = MAX_HEAD_SIZE): Buffer {
  checkResponse(head);
  const size = 3 + stringSize(head.reason) + fieldsSize(head.headers);
  return frame(size, maxSize, (buf, at) => {
    buf[at] = RESPONSE_HEAD;
    buf.writeUInt16BE(head.status, at + 1);
    const next = writeString(buf, at + 3, head.reason);
    return writeFields(buf, next, head.headers);
  });
}

/** Reads the fields of one complete head payload; every read is bounds-checked. */
class Cursor {
  at = 0;
  constructor(readonly buf: Buffer) {}

  byte(): number {
    if (this.at >= this.buf.length) throw headError('head ends early');
    return this.buf[this.at++]!;
  }

  varint(): number {
    const first = this.byte();
    const size = 1 << (first >> 6);
    if (size === 8) throw headError('a length in the head is too large');
    let n = first & 0x3f;
    for (let i = 1; i < size; i++) n = n * 256 + this.byte();
    return n;
  }

  string(): string {
    const length = this.varint();
    if (this.at + length > this.buf.length) throw headError('head ends early');
    const s = this.buf.toString('latin1', this.at, this.at + length);
    this.at += length;
    return s;
  }

  fields(): string[] {
    const count = this.varint();
    // Each field takes at least two bytes: a count beyond that is a lie, not a reason to allocate.
    if (count * 2 > this.buf.length - this.at) throw headError('head ends early');
    const headers = new Array<string>(count * 2);
    for (let i = 0; i < count * 2; i++) headers[i] = this.string();
    return headers;
  }

  end(): void {
    if (this.at !== this.buf.length) throw headError(`${this.buf.length - this.at} bytes left over after the head`);
  }
}

/** A request head from one complete payload (without its length prefix). */
export function decodeRequestHead(payload: Buffer): RequestHead {
  const c = new Cursor(payload);
  if (c.byte() !== REQUEST_HEAD) throw headError('expected a request head');
  const flags = c.byte();
  if ((flags & ~KNOWN_FLAGS) !== 0) throw headError(`unknown request head flags 0x${flags.toString(16)}`);
  const head: RequestHead = {
    method: c.string(),
    target: c.string(),
    authority: c.string(),
    headers: c.fields(),
    body: (flags & FLAG_BODY) !== 0,
    upgrade: (flags & FLAG_UPGRADE) !== 0,
  };
  c.end();
  checkRequest(head);
  return head;
}

/** A response head from one complete payload (without its length prefix). */
export function decodeResponseHead(payload: Buffer): ResponseHead {
  const c = new Cursor(payload);
  if (c.byte() !== RESPONSE_HEAD) throw headError('expected a response head');
  const status = c.byte() * 256 + c.byte();
  const head: ResponseHead = { status, reason: c.string(), headers: c.fields() };
  c.end();
  checkResponse(head);
  return head;
}

/**
 * Where the head at the start of `buf` lies: its length prefix's size and, once `buf`
 * holds the prefix, the size of prefix and head together (`size` is the prefix's until
 * then). Throws as soon as the prefix says the head is too large.
 */
function frameOf(buf: Buffer, maxSize: number): { prefix: number; size: number; known: boolean } {
  if (buf.length === 0) return { prefix: 1, size: 1, known: false };
  const prefix = 1 << (buf[0]! >> 6);
  if (buf.length < prefix) return { prefix, size: prefix, known: false };
  if (prefix === 8) throw headError('head length is too large');
  let length = buf[0]! & 0x3f;
  for (let i = 1; i < prefix; i++) length = length * 256 + buf[i]!;
  if (length > maxSize || length > MAX_VARINT) throw headError(`head of ${length} bytes exceeds the ${maxSize}-byte limit`);
  return { prefix, size: prefix + length, known: true };
}

/**
 * The payload of the first head in `buf`, and the bytes after it; undefined while
 * more bytes are needed. Throws as soon as the length prefix says the head is too large.
 */
export function splitHead(buf: Buffer, maxSize = MAX_HEAD_SIZE): { payload: Buffer; rest: Buffer } | undefined {
  const frame = frameOf(buf, maxSize);
  if (!frame.known || buf.length < frame.size) return undefined;
  return { payload: buf.subarray(frame.prefix, frame.size), rest: buf.subarray(frame.size) };
}

export interface HeadRead<T> {
  head: T;
  /** Bytes that arrived after the head in the same chunk: the start of the body. */
  rest: Buffer;
}

/**
 * Reads one head from the start of `stream` and calls `onHead` with it, synchronously
 * from the stream's 'data' event, so the caller can unshift `rest` or attach its
 * listeners before the stream moves on: a FIN that arrived with the head ends the
 * stream on the next tick. The stream is left paused with nothing consumed past the
 * head but `rest`. `onError` gets a ProtocolError for a bad or oversized head, or the
 * stream's error, end or close if one comes first.
 */
export function readHead<T>(
  stream: Readable,
  decode: (payload: Buffer) => T,
  onHead: (read: HeadRead<T>) => void,
  onError: (error: Error) => void,
  maxSize = MAX_HEAD_SIZE,
): void {
  // Chunks are joined only once enough has come for the next look (the length prefix, then
  // the whole head): a head trickled in a byte at a time is copied once, not once per byte.
  const chunks: Buffer[] = [];
  let buffered = 0;
  let needed = 1;
  const stop = (): void => {
    stream.pause();
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('close', onEnd);
    stream.off('error', onFailure);
  };
  const onFailure = (error: Error): void => {
    stop();
    onError(error);
  };
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    buffered += chunk.length;
    if (buffered < needed) return;
    const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, buffered);
    chunks.length = 0;
    chunks.push(buf);
    let read: HeadRead<T>;
    try {
      const frame = frameOf(buf, maxSize);
      if (!frame.known || buf.length < frame.size) {
        needed = frame.size;
        return;
      }
      read = { head: decode(buf.subarray(frame.prefix, frame.size)), rest: buf.subarray(frame.size) };
    } catch (error) {
      onFailure(error as Error);
      return;
    }
    stop();
    onHead(read);
  };
  const onEnd = (): void =>
    onFailure(
      new ProtocolError(
        'ERR_PROTOCOL_UNEXPECTED_EOF',
        buffered > 0 ? `stream ended in the middle of a head (${buffered} bytes)` : 'stream ended before a head',
      ),
    );
  if (stream.destroyed || stream.readableEnded) {
    onEnd();
    return;
  }
  stream.on('error', onFailure);
  stream.on('end', onEnd);
  // A reset stream is destroyed without 'end'.
  stream.on('close', onEnd);
  stream.on('data', onData);
}
