import { PassThrough, Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProtocolError } from './errors.js';
import {
  type HeadRead,
  MAX_HEAD_SIZE,
  decodeRequestHead,
  decodeResponseHead,
  encodeRequestHead,
  encodeResponseHead,
  readHead,
  splitHead,
  type RequestHead,
  type ResponseHead,
} from './heads.js';

const TOKEN_CHARS = [..."!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"];
const char = (codes: fc.Arbitrary<number>) => codes.map((c) => String.fromCharCode(c));

const token = fc.string({ unit: fc.constantFrom(...TOKEN_CHARS), minLength: 1, maxLength: 20 });
// Field values: tab, space, visible ASCII and obs-text (0x80-0xff), as node:http hands them over.
const fieldValue = fc.string({
  unit: char(fc.oneof(fc.constant(0x09), fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }))),
  maxLength: 300,
});
const visible = (min: number) =>
  fc.string({ unit: char(fc.oneof(fc.integer({ min: 0x21, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }))), minLength: min, maxLength: 200 });
const headers = fc.array(fc.tuple(token, fieldValue), { maxLength: 40 }).map((pairs) => pairs.flat());

const requestHead: fc.Arbitrary<RequestHead> = fc.record({
  method: token,
  target: visible(0).map((path) => `/${path}`),
  authority: visible(0),
  headers,
  body: fc.boolean(),
  upgrade: fc.boolean(),
});
const responseHead: fc.Arbitrary<ResponseHead> = fc.record({
  status: fc.oneof(fc.constant(101), fc.integer({ min: 200, max: 999 })),
  reason: fieldValue,
  headers,
});

const read = <T>(stream: Readable, decode: (payload: Buffer) => T, maxSize?: number): Promise<HeadRead<T>> =>
  new Promise((resolve, reject) => readHead(stream, decode, resolve, reject, maxSize));

function payloadOf(frame: Buffer): Buffer {
  const split = splitHead(frame);
  expect(split?.rest.length).toBe(0);
  return split!.payload;
}

/** Writes `bytes` to a stream in the given chunk sizes (cycled), then the rest. */
function chunked(bytes: Buffer, sizes: number[]): PassThrough {
  const stream = new PassThrough();
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length] ?? bytes.length);
    stream.write(bytes.subarray(at, at + n));
    at += n;
  }
  return stream;
}

describe('the v2 head codec', () => {
  it('round-trips every request head HTTP can carry', () => {
    fc.assert(
      fc.property(requestHead, (head) => {
        expect(decodeRequestHead(payloadOf(encodeRequestHead(head)))).toEqual(head);
      }),
    );
  });

  it('round-trips every response head it carries', () => {
    fc.assert(
      fc.property(responseHead, (head) => {
        expect(decodeResponseHead(payloadOf(encodeResponseHead(head)))).toEqual(head);
      }),
    );
  });

  it('reads a head split anywhere across chunks, and hands back the body bytes that followed it', async () => {
    await fc.assert(
      fc.asyncProperty(
        requestHead,
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
        async (head, body, sizes) => {
          const stream = chunked(Buffer.concat([encodeRequestHead(head), body]), sizes);
          const got = await read(stream, decodeRequestHead);
          expect(got.head).toEqual(head);
          // What the reader took past the head is in `rest`; the rest of the body is still in the stream.
          stream.end();
          const remaining: Buffer[] = [got.rest];
          for await (const chunk of stream) remaining.push(chunk as Buffer);
          expect(Buffer.concat(remaining)).toEqual(Buffer.from(body));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads the largest head a byte at a time in one pass (a peer that trickles it costs no more than one that sends it whole)', async () => {
    const head: RequestHead = { method: 'GET', target: '/', authority: 'a', headers: ['x', 'v'.repeat(MAX_HEAD_SIZE - 20)], body: false, upgrade: false };
    const frame = encodeRequestHead(head);
    let at = 0;
    // A byte per read: copying what came so far on each one would move half a terabyte.
    const stream = new Readable({ read: () => void stream.push(at < frame.length ? frame.subarray(at, ++at) : null) });
    expect((await read(stream, decodeRequestHead)).head.headers[1]!.length).toBe(MAX_HEAD_SIZE - 20);
  });

  it('turns any bytes into a head or a ProtocolError, never another failure', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        for (const decode of [decodeRequestHead, decodeResponseHead]) {
          try {
            decode(Buffer.from(bytes));
          } catch (err) {
            expect(err).toBeInstanceOf(ProtocolError);
          }
        }
      }),
    );
  });

  it('rejects a flipped byte of a valid head or decodes it to a valid head', () => {
    fc.assert(
      fc.property(requestHead, fc.nat(), fc.integer({ min: 1, max: 255 }), (head, at, xor) => {
        const payload = Buffer.from(payloadOf(encodeRequestHead(head)));
        payload[at % payload.length]! ^= xor;
        let decoded: RequestHead;
        try {
          decoded = decodeRequestHead(payload);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          return;
        }
        // Whatever decodes must encode again: it is a head HTTP can carry.
        expect(() => encodeRequestHead(decoded)).not.toThrow();
      }),
    );
  });

  it('refuses to encode what HTTP/1.1 could not carry', () => {
    const base: RequestHead = { method: 'GET', target: '/', authority: 'a.example', headers: [], body: false, upgrade: false };
    const bad: Array<[string, Partial<RequestHead>]> = [
      ['an empty method', { method: '' }],
      ['a method with a space', { method: 'GE T' }],
      ['an absolute-form target', { target: 'http://other.example/x' }],
      ['a target with a space', { target: '/a b' }],
      ['a target with CR LF', { target: '/a\r\nX-Injected: 1' }],
      ['* for a method other than OPTIONS', { target: '*' }],
      ['an authority with a space', { authority: 'a b' }],
      ['a header name with a colon', { headers: ['x:y', '1'] }],
      ['a header value with LF', { headers: ['x', 'a\nb'] }],
      ['a header value with NUL', { headers: ['x', 'a\0b'] }],
      ['a character outside latin1', { headers: ['x', 'snow ☃'] }],
      ['an odd header list', { headers: ['x'] }],
    ];
    for (const [what, change] of bad) {
      expect(() => encodeRequestHead({ ...base, ...change }), what).toThrow(ProtocolError);
    }
    expect(encodeRequestHead({ ...base, method: 'OPTIONS', target: '*' })).toBeInstanceOf(Buffer);
    for (const status of [99, 100, 103, 199, 1000])
      expect(() => encodeResponseHead({ status, reason: '', headers: [] }), String(status)).toThrow(ProtocolError);
  });

  it('rejects an oversized head as soon as its length arrives, before any of it is buffered', async () => {
    const big: RequestHead = { method: 'GET', target: '/', authority: 'a', headers: ['x', 'v'.repeat(2_000)], body: false, upgrade: false };
    expect(() => encodeRequestHead(big, 1_000)).toThrow(/exceeds the 1000-byte limit/);
    const frame = encodeRequestHead(big);
    // Only the length prefix (2 bytes for 2 KB) is written: the reader fails without waiting for the rest.
    const stream = new PassThrough();
    stream.write(frame.subarray(0, 2));
    await expect(read(stream, decodeRequestHead, 1_000)).rejects.toThrow(/exceeds the 1000-byte limit/);
    const huge = Buffer.from([0xbf, 0xff, 0xff, 0xff]);
    expect(() => splitHead(huge)).toThrow(new RegExp(`exceeds the ${MAX_HEAD_SIZE}-byte limit`));
    expect(() => splitHead(Buffer.from([0xc0, 0, 0, 0, 0, 0, 0, 1]))).toThrow(/too large/);
  });

  it('fails a read when the stream ends or is destroyed before a whole head', async () => {
    const ended = new PassThrough();
    ended.end(encodeRequestHead({ method: 'GET', target: '/', authority: 'a', headers: [], body: false, upgrade: false }).subarray(0, 3));
    await expect(read(ended, decodeRequestHead)).rejects.toThrow(/in the middle of a head \(3 bytes\)/);
    const reset = new PassThrough();
    const reading = read(reset, decodeRequestHead);
    reset.destroy();
    await expect(reading).rejects.toThrow(/before a head/);
  });
});
