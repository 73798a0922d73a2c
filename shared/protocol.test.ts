import { PassThrough, Readable } from 'node:stream';
import { encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { BadRequestError, NotFoundError, ProtocolError, ServerError, UnauthorizedError } from './errors.js';
import {
  CloseCode,
  CloseReason,
  FrameDecoder,
  MAX_FRAME_SIZE,
  closeForError,
  encodeFrame,
  errorForClose,
  parseControlFrame,
  readFrame,
  validateRegisterRequest,
  validateRegisterResponse,
  type Frame,
  type RegisterRequest,
  type RegisterResponse,
} from './protocol.js';

const request: RegisterRequest = { Version: 1, TunnelGroup: 'flipt.dev.local', Metadata: { Authorization: 'Basic dXNlcjpwYXNz' } };

function rawFrame(body: Uint8Array): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(body.byteLength);
  return Buffer.concat([prefix, body]);
}

/** Splits a buffer at random points, including empty chunks. */
function randomChunks(bytes: Buffer, random: () => number): Buffer[] {
  const chunks: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const size = Math.floor(random() * 12);
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

// Small deterministic PRNG (mulberry32) so a failing seed can be replayed.
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomMessage(random: () => number): Frame {
  const text = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + Math.floor(random() * 0x2000))).join('');
  const metadata: Record<string, string> = {};
  for (let i = 0; i < random() * 4; i++) metadata[text(1 + random() * 8)] = text(random() * 40);
  return { Version: 1, TunnelGroup: text(random() * 30), Metadata: metadata, DeadlineMs: Math.floor(random() * 1e9) };
}

describe('encodeFrame / FrameDecoder', () => {
  it('writes a 4-byte big-endian length followed by a msgpack map', () => {
    const frame = encodeFrame(request);
    const body = encode(request);
    expect(frame.readUInt32BE(0)).toBe(body.byteLength);
    expect(frame.subarray(4)).toEqual(Buffer.from(body));
  });

  it('omits undefined fields rather than sending nil', () => {
    const response: RegisterResponse = { Version: 1, Code: 0, Metadata: undefined };
    const frame = encodeFrame(response);
    expect(new FrameDecoder().push(frame)).toEqual([{ Version: 1, Code: 0 }]);
  });

  it('round-trips random messages split at random chunk boundaries', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const messages = Array.from({ length: 1 + Math.floor(random() * 4) }, () => randomMessage(random));
      const decoder = new FrameDecoder();
      const decoded = randomChunks(Buffer.concat(messages.map((m) => encodeFrame(m))), random).flatMap((c) => decoder.push(c));
      expect(decoded, `seed ${seed}`).toEqual(messages);
      expect(decoder.bufferedBytes).toBe(0);
    }
  });

  it('accepts a frame of exactly the limit and refuses to encode one over it', () => {
    // fixmap (1) + fixstr "p" (2) + str16 header (3) + the string itself
    const exact = { p: 'x'.repeat(MAX_FRAME_SIZE - 6) };
    expect(encodeFrame(exact).byteLength).toBe(4 + MAX_FRAME_SIZE);
    expect(new FrameDecoder().push(encodeFrame(exact))).toEqual([exact]);
    expect(() => encodeFrame({ p: 'x'.repeat(MAX_FRAME_SIZE) })).toThrow(expect.objectContaining({ code: 'ERR_PROTOCOL_FRAME_TOO_LARGE' }));
  });

  it('rejects an oversized length prefix before the body arrives', () => {
    const decoder = new FrameDecoder(16);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(17);
    expect(decoder.push(prefix.subarray(0, 3))).toEqual([]);
    expect(() => decoder.push(prefix.subarray(3))).toThrow(
      expect.objectContaining({ name: 'ProtocolError', code: 'ERR_PROTOCOL_FRAME_TOO_LARGE', message: expect.stringContaining('17 bytes') }),
    );
  });

  it.each([
    ['an array', encode([1, 2])],
    ['a string', encode('hello')],
    ['nil', encode(null)],
    ['binary', encode(new Uint8Array([1]))],
  ])('rejects a payload that is %s', (what, body) => {
    expect(() => new FrameDecoder().push(rawFrame(body))).toThrow(
      expect.objectContaining({ code: 'ERR_PROTOCOL_MALFORMED_FRAME', message: expect.stringContaining(`got ${what}`) }),
    );
  });

  it('rejects malformed msgpack and trailing garbage inside a frame', () => {
    // 0x85 announces a 5-entry map but only one entry follows.
    for (const body of [Buffer.from([0x85, 0xa1, 0x61, 0x01]), Buffer.from([0xc1]), Buffer.concat([encode({ a: 1 }), Buffer.from([0])])]) {
      expect(() => new FrameDecoder().push(rawFrame(body))).toThrow(expect.objectContaining({ code: 'ERR_PROTOCOL_MALFORMED_FRAME' }));
    }
  });

  it('rejects a __proto__ key instead of polluting prototypes', () => {
    const body = Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x80]);
    expect(() => new FrameDecoder().push(rawFrame(body))).toThrow(ProtocolError);
  });

  it('never throws anything but ProtocolError on random bytes', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const random = prng(seed);
      const body = Buffer.from(Array.from({ length: Math.floor(random() * 24) }, () => Math.floor(random() * 256)));
      try {
        new FrameDecoder().push(rawFrame(body));
      } catch (err) {
        expect(err, `seed ${seed}`).toBeInstanceOf(ProtocolError);
      }
    }
  });
});

describe('readFrame', () => {
  it('reads one frame and leaves the following bytes in the stream', async () => {
    const stream = new PassThrough();
    const second = encodeFrame({ Type: 'drain', DeadlineMs: 5 });
    const both = Buffer.concat([encodeFrame(request), second, Buffer.from('tail')]);
    stream.write(both.subarray(0, 3));
    setTimeout(() => stream.end(both.subarray(3)), 5);

    await expect(readFrame(stream, { timeoutMs: 1000 })).resolves.toEqual(request);
    const rest: Buffer[] = [];
    for await (const chunk of stream) rest.push(chunk as Buffer);
    expect(Buffer.concat(rest)).toEqual(Buffer.concat([second, Buffer.from('tail')]));
  });

  it('reads consecutive frames from the same stream', async () => {
    const stream = Readable.from([Buffer.concat([encodeFrame({ n: 1 }), encodeFrame({ n: 2 })])], { objectMode: false });
    expect(await readFrame(stream)).toEqual({ n: 1 });
    expect(await readFrame(stream)).toEqual({ n: 2 });
    await expect(readFrame(stream)).rejects.toMatchObject({ code: 'ERR_PROTOCOL_UNEXPECTED_EOF', message: 'stream ended before a frame arrived' });
  });

  it('rejects a truncated frame with the byte count', async () => {
    const stream = new PassThrough();
    stream.end(encodeFrame(request).subarray(0, 10));
    await expect(readFrame(stream)).rejects.toMatchObject({
      name: 'ProtocolError',
      code: 'ERR_PROTOCOL_UNEXPECTED_EOF',
      message: 'stream ended in the middle of a frame (10 bytes received)',
    });
  });

  it('rejects when nothing complete arrives in time', async () => {
    const stream = new PassThrough();
    stream.write(Buffer.from([0, 0]));
    const started = Date.now();
    await expect(readFrame(stream, { timeoutMs: 50 })).rejects.toMatchObject({ code: 'ERR_PROTOCOL_TIMEOUT' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(stream.listenerCount('readable')).toBe(0);
  });

  it('rejects an oversized prefix without waiting for the body', async () => {
    const stream = new PassThrough();
    stream.write(Buffer.from([0, 1, 0, 0]));
    await expect(readFrame(stream, { maxSize: 1024, timeoutMs: 5000 })).rejects.toMatchObject({ code: 'ERR_PROTOCOL_FRAME_TOO_LARGE' });
  });

  it('passes stream errors through and treats a silent destroy as EOF', async () => {
    const failing = new PassThrough();
    const boom = new Error('reset');
    setTimeout(() => failing.destroy(boom), 5);
    await expect(readFrame(failing)).rejects.toBe(boom);

    const destroyed = new PassThrough();
    setTimeout(() => destroyed.destroy(), 5);
    await expect(readFrame(destroyed)).rejects.toMatchObject({ code: 'ERR_PROTOCOL_UNEXPECTED_EOF' });
    await expect(readFrame(destroyed)).rejects.toMatchObject({ code: 'ERR_PROTOCOL_UNEXPECTED_EOF' });
  });
});

describe('message validation', () => {
  it('accepts a seed-shaped registration and ignores unknown fields', () => {
    expect(validateRegisterRequest({ ...request, Extra: true })).toEqual(request);
    expect(validateRegisterRequest({ Version: 1, TunnelGroup: 'g', Metadata: null })).toEqual({ Version: 1, TunnelGroup: 'g', Metadata: {} });
  });

  it.each([
    [[1, 2], 'registration must be a map'],
    [{ TunnelGroup: 'g' }, 'Version missing is not supported'],
    [{ ...request, Version: 2 }, 'Version 2 is not supported (this peer speaks 1)'],
    [{ ...request, TunnelGroup: '' }, 'TunnelGroup must be a non-empty string'],
    [{ ...request, TunnelGroup: 7 }, 'TunnelGroup must be a non-empty string, got a number'],
    [{ ...request, Metadata: [] }, 'Metadata must be a map of strings, got an array'],
    [{ ...request, Metadata: { Authorization: 5 } }, 'Metadata.Authorization must be a string'],
  ])('rejects %j naming the field', (frame, message) => {
    expect(() => validateRegisterRequest(frame)).toThrow(
      expect.objectContaining({ name: 'ProtocolError', code: 'ERR_PROTOCOL_BAD_MESSAGE', message: expect.stringContaining(`bad request: ${message}`) }),
    );
  });

  it('refuses a 20,000-level Version as a bad request (no stack overflow, nothing of it in the message)', () => {
    // msgpack decodes deep nesting without recursion; the check must not recurse either.
    const body = Buffer.concat([
      Buffer.from([0x83, 0xa7]),
      Buffer.from('Version'),
      Buffer.alloc(20_000, 0x91), // fixarray of one element, 20,000 times
      Buffer.from([0x01, 0xab]),
      Buffer.from('TunnelGroup'),
      Buffer.from([0xa1, 0x67, 0xa8]),
      Buffer.from('Metadata'),
      Buffer.from([0x80]),
    ]);
    const frame = new FrameDecoder().push(rawFrame(body))[0];
    expect(() => validateRegisterRequest(frame)).toThrow(
      expect.objectContaining({ code: 'ERR_PROTOCOL_BAD_MESSAGE', message: 'bad request: Version an array is not supported (this peer speaks 1)' }),
    );
    expect(closeForError(new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', 'x'))).toEqual({ code: CloseCode.ClientError, reason: 'bad request' });
  });

  it.each([
    ['CR LF', 'Bearer token\r\nX-Injected: yes'],
    ['a bare LF', 'Basic dXNlcjpwYXNz\n'],
    ['NUL', 'Bearer a\u0000b'],
    ['DEL', 'Bearer a\u007fb'],
  ])('refuses an Authorization holding %s, without quoting it', (_what, authorization) => {
    const error = (() => {
      try {
        validateRegisterRequest({ ...request, Metadata: { Authorization: authorization } });
      } catch (err) {
        return err as ProtocolError;
      }
    })();
    expect(error).toMatchObject({ code: 'ERR_PROTOCOL_BAD_MESSAGE' });
    expect(error!.message).not.toContain('token');
    expect(error!.message).not.toContain('dXNlcjpwYXNz');
    expect(closeForError(error)).toEqual({ code: CloseCode.ClientError, reason: 'bad request' });
  });

  it('accepts an Authorization with a tab, as HTTP does', () => {
    expect(validateRegisterRequest({ ...request, Metadata: { Authorization: 'Bearer\tabc' } }).Metadata.Authorization).toBe('Bearer\tabc');
  });

  it('validates responses', () => {
    expect(validateRegisterResponse({ Version: 1, Code: 0, Metadata: { NodeId: 'n1' } })).toEqual({ Version: 1, Code: 0, Metadata: { NodeId: 'n1' } });
    expect(() => validateRegisterResponse({ Version: 1, Code: 2 })).toThrow(/unexpected response Code 2/);
  });

  it('parses drain frames and ignores unknown control types', () => {
    expect(parseControlFrame({ Type: 'drain', DeadlineMs: 3000 })).toEqual({ Type: 'drain', DeadlineMs: 3000 });
    expect(parseControlFrame({ Type: 'rebalance', Anything: 1 })).toBeUndefined();
    expect(() => parseControlFrame({ Type: 'drain', DeadlineMs: -1 })).toThrow(/DeadlineMs must be a non-negative number/);
    expect(() => parseControlFrame({ Type: 'drain' })).toThrow(/got nothing/);
  });
});

describe('close codes', () => {
  it.each([
    [CloseCode.ClientError, CloseReason.Unauthorized, UnauthorizedError, false],
    // Not retryable by default: the client retries it only when asked to (connect's retryNotFound).
    [CloseCode.ClientError, CloseReason.NotFound, NotFoundError, false],
    [CloseCode.ClientError, CloseReason.BadRequest, BadRequestError, false],
    [CloseCode.ClientError, 'something new', BadRequestError, false],
    [CloseCode.ServerError, 'store unavailable', ServerError, true],
    [CloseCode.NoError, 'drained', ServerError, true],
    [0x99, '', ServerError, true],
  ] as const)('code %i reason %j → %o', (code, reason, type, retryable) => {
    const error = errorForClose(code, reason);
    expect(error).toBeInstanceOf(type);
    expect(error.retryable).toBe(retryable);
  });

  it('closeForError is the inverse of errorForClose', () => {
    for (const error of [new UnauthorizedError(), new NotFoundError(), new BadRequestError()]) {
      const { code, reason } = closeForError(error);
      expect(errorForClose(code, reason)).toBeInstanceOf(error.constructor);
    }
    expect(closeForError(new ProtocolError('ERR_PROTOCOL_TIMEOUT', 'slow'))).toEqual({ code: CloseCode.ServerError, reason: 'registration timed out' });
    expect(errorForClose(CloseCode.ServerError, 'registration timed out').retryable).toBe(true);
    expect(closeForError(new ProtocolError('ERR_PROTOCOL_UNEXPECTED_EOF', 'ended'))).toEqual({ code: CloseCode.ClientError, reason: 'bad request' });
    const server = closeForError(new Error('x'.repeat(500)));
    expect(server.code).toBe(CloseCode.ServerError);
    expect(server.reason).toHaveLength(200);
    expect(errorForClose(server.code, 'disk full').message).toBe('server error: disk full');
  });
});
