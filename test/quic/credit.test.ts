import { describe, expect, it } from 'vitest';
import { onCleanup, useCleanup } from '../harness/index.js';
import { QuicServer, QuicStreamResetError, type QuicConnection, type QuicStream } from '../../shared/quic/index.js';
import { ALPN, dial, pki, roundTrip } from './helpers.js';

useCleanup();

// Small windows that auto-tuning cannot grow, so that a few hundred KiB of lost credit show, where
// the defaults would take dozens of MiB. quiche 0.18 starts the connection window at 48 KiB and
// raises it to 1.5 stream windows (768 KiB) once a stream is read fast (the warm-up below).
const WINDOWS = { connectionWindow: 2 << 20, maxConnectionWindow: 2 << 20, streamWindow: 512 << 10, maxStreamWindow: 512 << 10 };
// A reader that does not read takes 256 KiB into its buffer; the rest waits in quiche. Well under
// half the connection window, so one such stream alone does not hold up the others.
const PAYLOAD = Buffer.alloc(448 << 10, 0x61);
const STREAMS = 16;

interface Setup {
  conn: QuicConnection;
  /** Streams the server leaves unread, by id, and how it receives them. */
  victims: Set<number>;
  held: Map<number, QuicStream>;
  arrived(id: number): Promise<QuicStream>;
}

/** A server that echoes every stream except the victims, which it never reads. */
async function setup(): Promise<Setup> {
  const p = await pki();
  const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert, ...WINDOWS });
  onCleanup(() => server.close());
  const victims = new Set<number>();
  const held = new Map<number, QuicStream>();
  const waiting = new Map<number, (s: QuicStream) => void>();
  server.on('connection', (c: QuicConnection) =>
    c.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      if (!victims.has(s.id)) return void s.pipe(s);
      held.set(s.id, s);
      waiting.get(s.id)?.(s);
    }),
  );
  const conn = await dial(p, server.address().port, WINDOWS);
  const warmUp = Buffer.alloc(4 << 20, 0x62);
  expect((await roundTrip(await conn.openStream(), warmUp)).equals(warmUp)).toBe(true);
  const arrived = (id: number): Promise<QuicStream> => {
    const s = held.get(id);
    return s ? Promise.resolve(s) : new Promise((resolve) => waiting.set(id, resolve));
  };
  return { conn, victims, held, arrived };
}

/** Open a victim stream and write PAYLOAD to it, until the server's reader is full. */
async function fillVictim(t: Setup): Promise<{ stream: QuicStream; peer: QuicStream }> {
  const stream = await t.conn.openStream();
  stream.on('error', () => {});
  t.victims.add(stream.id);
  stream.write(PAYLOAD);
  const peer = await t.arrived(stream.id);
  for (let i = 0; i < 500 && !peer.readerBehind; i++) await pause(5);
  expect(peer.readerBehind, `the data of stream ${t.victims.size} reached its reader`).toBe(true);
  // What quiche had taken reaches the peer within a round trip on another stream (which also
  // shows that the connection still moves data).
  expect(await roundTripWithin(t.conn, 5_000), `a round trip after ${t.victims.size - 1} abandoned streams`).toBe('still here');
  return { stream, peer };
}

/** A round trip on a new stream, or null if it has not ended after `ms`. */
async function roundTripWithin(conn: QuicConnection, ms: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  const trip = (async () => (await roundTrip(await conn.openStream(), 'still here')).toString())();
  trip.catch(() => {});
  try {
    return await Promise.race([trip, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('QUIC connection flow-control credit', () => {
  it('comes back for data left unread in a stream its reader gives up on', async () => {
    const t = await setup();
    for (let i = 0; i < STREAMS; i++) {
      const { stream, peer } = await fillVictim(t);
      const ended = new Promise((resolve) => stream.once('close', resolve));
      peer.reset(5);
      await ended;
    }
    expect(await roundTripWithin(t.conn, 5_000)).toBe('still here');
  });

  it('comes back for data a reader had not read when the writer gave up on the stream', async () => {
    const t = await setup();
    const errors: Error[] = [];
    for (let i = 0; i < STREAMS; i++) {
      const { stream, peer } = await fillVictim(t);
      peer.on('error', (err) => errors.push(err));
      stream.reset(6);
    }
    expect(await roundTripWithin(t.conn, 5_000)).toBe('still here');
    // The readers that were not reading learn of it too, with the writer's code.
    for (let i = 0; i < 200 && errors.length < STREAMS; i++) await pause(10);
    expect(errors.map((e) => (e instanceof QuicStreamResetError ? e.resetCode : e.message))).toEqual(Array(STREAMS).fill(6));
  });
});
