import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';

export type PortKind = 'tcp' | 'udp';

const HOST = '127.0.0.1';
const MAX_ATTEMPTS = 200;

/**
 * Ports are handed out from below the kernel's ephemeral range. A port taken from the ephemeral
 * range (bind 0, close, hand out) can be given by the kernel to any socket that binds port 0 in
 * the meantime — every QUIC client does — before the process it was meant for binds it; on a
 * busy machine that showed up as "address already in use" at random. Below the range, only
 * another test can take it, and each candidate is probed first.
 */
function handOutRange(): { low: number; high: number } {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || ephemeralLow;
  } catch {
    // Not Linux: keep the common default.
  }
  const high = Math.min(ephemeralLow, 32768);
  return { low: Math.max(1024, high - 12_000), high };
}

const range = handOutRange();
// Each process starts at its own random place, so test workers rarely probe the same ports.
let next = range.low + Math.floor(Math.random() * (range.high - range.low));

// Ports already handed out in this process, so two servers started by one test never collide.
const handedOut = new Set<number>();

/**
 * A port that was free on 127.0.0.1 a moment ago (for both TCP and UDP), never the same one twice
 * in this process. Prefer binding port 0 directly when the code under test allows it: this is for
 * processes that must be told their port up front (and for restarting on the same port).
 */
export async function freePort(_kind: PortKind = 'tcp'): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const port = next;
    next = next + 1 >= range.high ? range.low : next + 1;
    if (handedOut.has(port)) continue;
    if ((await canBind(() => probeTcp(port))) && (await canBind(() => probeUdp(port)))) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${range.low}-${range.high - 1} after ${MAX_ATTEMPTS} attempts`);
}

/** `n` distinct free ports of one kind. */
export async function freePorts(n: number, kind: PortKind = 'tcp'): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort(kind));
  return ports;
}

async function canBind(probe: () => Promise<void>): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch {
    return false;
  }
}

function probeTcp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, HOST, () => server.close(() => resolve()));
  });
}

function probeUdp(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(port, HOST, () => socket.close(() => resolve()));
  });
}
