import dgram from 'node:dgram';
import net from 'node:net';

export type PortKind = 'tcp' | 'udp';

const HOST = '127.0.0.1';
// The kernel may hand back a port it gave us a moment ago (we closed it); retry a few times.
const MAX_ATTEMPTS = 20;

// Ports already handed out in this process, so two servers started by one test never collide.
const handedOut = new Set<string>();

/**
 * A port that was free on 127.0.0.1 a moment ago, never the same one twice in this process.
 * Prefer binding port 0 directly when the code under test allows it: this is for processes that
 * must be told their port up front (and for restarting on the same port).
 */
export async function freePort(kind: PortKind = 'tcp'): Promise<number> {
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const port = kind === 'tcp' ? await probeTcp() : await probeUdp();
    const key = `${kind}:${port}`;
    if (!handedOut.has(key)) {
      handedOut.add(key);
      return port;
    }
  }
  throw new Error(`no fresh ${kind} port after ${MAX_ATTEMPTS} attempts`);
}

/** `n` distinct free ports of one kind. */
export async function freePorts(n: number, kind: PortKind = 'tcp'): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort(kind));
  return ports;
}

function probeTcp(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function probeUdp(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, HOST, () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}
