import dgram from 'node:dgram';
import { once } from 'node:events';
import { onCleanup } from './cleanup.js';

export interface LossyRelayOptions {
  /** Where datagrams from clients go. Replies are recognised by the target's port. */
  target: { host: string; port: number };
  /** Probability that any one datagram is dropped, applied independently in each direction. */
  dropRate?: number;
  /** Same seed, same datagrams (by arrival order) dropped: a failing run can be replayed. */
  seed?: number;
}

export interface RelayCounters {
  forwarded: number;
  dropped: number;
}

export interface LossyRelay {
  readonly host: string;
  readonly port: number;
  readonly stats: { toTarget: RelayCounters; toClient: RelayCounters };
  close(): Promise<void>;
}

export const DEFAULT_DROP_RATE = 0.01;
const DEFAULT_SEED = 0x5eed;
const HOST = '127.0.0.1';

/**
 * A UDP relay on 127.0.0.1 that forwards client → target and back, dropping datagrams at random.
 * Each client address gets its own upstream socket, so the target sees one peer per client, as it
 * would without the relay. Closed with the current cleanup scope.
 */
export async function startLossyRelay(options: LossyRelayOptions): Promise<LossyRelay> {
  const { target, dropRate = DEFAULT_DROP_RATE, seed = DEFAULT_SEED } = options;
  if (!(dropRate >= 0 && dropRate <= 1)) throw new Error(`dropRate must be between 0 and 1, got ${dropRate}`);
  // One generator per direction, so the pattern one way does not depend on traffic the other way.
  const dropToTarget = bernoulli(seed, dropRate);
  const dropToClient = bernoulli(seed + 1, dropRate);
  const stats = { toTarget: { forwarded: 0, dropped: 0 }, toClient: { forwarded: 0, dropped: 0 } };

  const front = udpSocket();
  front.bind(0, HOST);
  await once(front, 'listening');
  const upstreams = new Map<string, dgram.Socket>();

  const upstreamFor = (client: dgram.RemoteInfo) => {
    const key = `${client.address}:${client.port}`;
    let upstream = upstreams.get(key);
    if (!upstream) {
      upstream = udpSocket();
      upstream.bind(0, HOST); // sends made before the bind completes are queued by Node
      upstream.on('message', (msg, from) => {
        if (from.port !== target.port) return;
        if (dropToClient()) stats.toClient.dropped++;
        else {
          stats.toClient.forwarded++;
          front.send(msg, client.port, client.address);
        }
      });
      upstreams.set(key, upstream);
    }
    return upstream;
  };

  front.on('message', (msg, client) => {
    const upstream = upstreamFor(client);
    if (dropToTarget()) stats.toTarget.dropped++;
    else {
      stats.toTarget.forwarded++;
      upstream.send(msg, target.port, target.host);
    }
  });

  let closing: Promise<void> | undefined;
  const close = () => {
    const sockets = [front, ...upstreams.values()];
    closing ??= Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined);
    return closing;
  };
  onCleanup(close);

  return { host: HOST, port: front.address().port, stats, close };
}

// Large buffers (the kernel caps them at net.core.[rw]mem_max), so that bursts are lost to the
// coin rather than to overflowing socket buffers.
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

function udpSocket(): dgram.Socket {
  const socket = dgram.createSocket({
    type: 'udp4',
    recvBufferSize: SOCKET_BUFFER_BYTES,
    sendBufferSize: SOCKET_BUFFER_BYTES,
  });
  // A failed send is just one more lost datagram; it must not crash the test process.
  socket.on('error', () => {});
  return socket;
}

/** A seeded coin that lands true with probability `p` (mulberry32: tiny, fast, good enough here). */
function bernoulli(seed: number, p: number): () => boolean {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32 < p;
  };
}
