import { describe, expect, it } from 'vitest';
import { onCleanup, useCleanup } from '../harness/index.js';
import { QuicServer, QuicStreamResetError, type QuicConnection, type QuicStream } from '../../shared/quic/index.js';
import { ALPN, dial, pki, roundTrip } from './helpers.js';

useCleanup();

// Small windows that auto-tuning cannot grow, so that a few hundred KiB of lost credit show, where
// the defaults would take dozens of MiB.
const WINDOWS = { connectionWindow: 2 << 20, maxConnectionWindow: 2 << 20, streamWindow: 512 << 10, maxStreamWindow: 512 << 10 };
// A reader that does not read takes 256 KiB into its buffer; the rest waits in quiche.
const PAYLOAD = Buffer.alloc(448 << 10, 0x61);
const STREAMS = 16;

interface Setup {
  conn: QuicConnection;
  /** Client streams the server leaves unread. */
  victims: Set<number>;
  /** The server's side of victim `id` once quiche holds data for it that its reader has not taken. */
  held(id: number): Promise<QuicStream>;
}

/** A server that echoes every stream except the victims, which it never reads. */
async function setup(): Promise<Setup> {
  const p = await pki();
  const server = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert, ...WINDOWS });
  onCleanup(() => server.close());
  const victims = new Set<number>();
  const arrived = new Map<number, { conn: QuicConnection; stream: QuicStream }>();
  server.on('connection', (c: QuicConnection) =>
    c.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      if (victims.has(s.id)) arrived.set(s.id, { conn: c, stream: s });
      else s.pipe(s);
    }),
  );
  const conn = await dial(p, server.address().port, WINDOWS);
  const held = async (id: number): Promise<QuicStream> => {
    for (let i = 0; i < 1000; i++) {
      const a = arrived.get(id);
      if (a?.stream.readerBehind && a.conn.native.streamReadable(id)) return a.stream;
      await pause(5);
    }
    throw new Error(`stream ${id}: none of its data reached the server within 5 s (after ${victims.size - 1} abandoned streams)`);
  };
  return { conn, victims, held };
}

/** Open a victim stream and write PAYLOAD to it, until the server holds some of it unread. */
async function fillVictim(t: Setup): Promise<{ stream: QuicStream; peer: QuicStream }> {
  const stream = await t.conn.openStream();
  stream.on('error', () => {});
  t.victims.add(stream.id);
  stream.write(PAYLOAD);
  return { stream, peer: await t.held(stream.id) };
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
      expect(await roundTripWithin(t.conn, 5_000), `a round trip after ${i + 1} abandoned streams`).toBe('still here');
    }
  });

  it('comes back for data a reader had not read when the writer gave up on the stream', async () => {
    const t = await setup();
    const errors: Error[] = [];
    for (let i = 0; i < STREAMS; i++) {
      const { stream, peer } = await fillVictim(t);
      peer.on('error', (err) => errors.push(err));
      stream.reset(6);
      expect(await roundTripWithin(t.conn, 5_000), `a round trip after ${i + 1} abandoned streams`).toBe('still here');
    }
    // The readers that were not reading learn of it too, with the writer's code.
    for (let i = 0; i < 200 && errors.length < STREAMS; i++) await pause(10);
    expect(errors.map((e) => (e instanceof QuicStreamResetError ? e.resetCode : e.message))).toEqual(Array(STREAMS).fill(6));
  });
});
