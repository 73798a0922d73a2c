import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { freePort, spawnNode, type KeyPair, type ProcessHandle } from '../harness/index.js';
import { basic, connect, type Tunnel } from '../../client/index.js';
import { GROUP, nodeArgs } from './helpers.js';

export const SECRET = 'cluster-secret-for-tests';

/** One data-plane node as its own process, restartable on the same ports. */
export class ClusterNode {
  proc!: ProcessHandle;

  private constructor(
    readonly id: string,
    readonly quicPort: number,
    readonly httpPort: number,
    readonly internalPort: number,
    readonly managementPort: number,
    private readonly args: string[],
  ) {}

  static async start(
    id: string,
    opts: { membership: string; certs: { server: KeyPair }; groupsPath: string; secretPath: string; ttl?: string },
  ): Promise<ClusterNode> {
    const [quicPort, httpPort, internalPort, managementPort] = [await freePort('udp'), await freePort(), await freePort(), await freePort()];
    const args = [
      ...nodeArgs({ ...opts, quicPort, httpPort, managementPort }),
      '-l',
      'info',
      '--membership',
      opts.membership,
      '--node-id',
      id,
      '--internal-address',
      `127.0.0.1:${internalPort}`,
      '--cluster-secret-file',
      opts.secretPath,
      '--membership-ttl',
      opts.ttl ?? '2s',
      '--drain-timeout',
      '10s',
    ];
    const node = new ClusterNode(id, quicPort!, httpPort!, internalPort!, managementPort!, args);
    await node.run();
    return node;
  }

  async run(): Promise<void> {
    this.proc = spawnNode('cli.ts', this.args, { name: `node-${this.id}` });
    await this.proc.waitForLine(/"msg":"node ready"/, 20_000);
  }

  get address(): string {
    return `127.0.0.1:${this.quicPort}`;
  }

  /** This node's route table, from /readyz. */
  async routes(): Promise<{ nodes: string[]; groups: Record<string, string[]>; membership: string }> {
    const res = await fetch(`http://127.0.0.1:${this.managementPort}/readyz`);
    return (await res.json()) as { nodes: string[]; groups: Record<string, string[]>; membership: string };
  }
}

export function writeSecret(dir: string): string {
  const file = path.join(dir, 'cluster-secret');
  writeFileSync(file, `${SECRET}\n`);
  return file;
}

export interface NamedTunnel {
  tunnel: Tunnel;
  name: string;
}

/** A client that answers `PONG <name>`, on the given node addresses. */
export async function pongClient(
  name: string,
  addresses: string[],
  ca: string,
  options: { connections?: number; onRequest?: () => void } = {},
): Promise<Tunnel> {
  return connect({
    addresses,
    serverName: GROUP,
    ca,
    group: GROUP,
    auth: basic('user', 'pass'),
    handler: () => {
      options.onRequest?.();
      return new Response(`PONG ${name}`);
    },
    connections: options.connections,
    // Quick to notice a dead node: the kill tests need it within seconds.
    keepAliveMs: 300,
    idleTimeoutMs: 3_000,
    minDelayMs: 50,
    maxDelayMs: 300,
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface Outcome {
  at: number;
  ok: boolean;
  detail: string;
}

/**
 * One visitor request as a load balancer in front of the nodes would send it:
 * to the next node in turn, moving on when a node refuses the connection (it is
 * down or draining, as a health check would tell). Any answer other than a PONG
 * counts as a failure, as does an error after the request reached a node.
 */
export async function balancedGet(ports: () => number[], turn: number): Promise<Outcome> {
  const list = ports();
  let last = 'no node';
  for (let i = 0; i < list.length; i++) {
    const port = list[(turn + i) % list.length]!;
    const result = await new Promise<Outcome | 'refused'>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent, headers: { host: GROUP } }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () =>
          resolve({ at: Date.now(), ok: res.statusCode === 200 && body.startsWith('PONG'), detail: `${port}: ${res.statusCode} ${body.trim()}` }),
        );
        res.on('error', (e) => resolve({ at: Date.now(), ok: false, detail: `${port}: ${e.message}` }));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', (e: NodeJS.ErrnoException) => {
        // Refused, or a pooled keep-alive connection the node closed while draining: nothing was served.
        if (e.code === 'ECONNREFUSED' || (e.code === 'ECONNRESET' && req.reusedSocket)) resolve('refused');
        else resolve({ at: Date.now(), ok: false, detail: `${port}: ${e.message}` });
      });
    });
    if (result !== 'refused') return result;
    last = `${port}: refused`;
  }
  return { at: Date.now(), ok: false, detail: `every node refused (${last})` };
}

/** Steady load from `workers` loops until stop() is called. */
export function steadyLoad(ports: () => number[], workers = 8): { stop(): Promise<Outcome[]> } {
  const outcomes: Outcome[] = [];
  let running = true;
  let turn = 0;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      outcomes.push(await balancedGet(ports, turn++));
      await new Promise((r) => setTimeout(r, 5));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return outcomes;
    },
  };
}

export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
