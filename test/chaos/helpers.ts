// Shared by the fault and fuzz suite: sizes for CI and for `npm run soak`, figures for the
// issue notes, and real processes (a node from the CLI, the example client) to freeze and kill.
import http from 'node:http';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { freePort, spawnNode, spawnProcess, type KeyPair, type ProcessHandle } from '../harness/index.js';
import { GROUP, nodeArgs } from '../e2e/helpers.js';

/** `npm run soak` sets this: the full counts and durations instead of CI's short ones. */
export const SOAK = process.env.REVERST_SOAK === '1';

/** The CI figure, or the soak figure under `npm run soak`. */
export function sized<T>(ci: T, soak: T): T {
  return SOAK ? soak : ci;
}

/** With REVERST_TEST_REPORT set, print a figure (counts, seconds, MB) for the issue notes. */
export function report(line: string): void {
  if (process.env.REVERST_TEST_REPORT) console.log(`[chaos] ${line}`);
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
export const megabytes = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The example PONG service (examples/simple/main.ts) as its own process, registered on `address`. */
export function spawnExampleClient(address: string, ca: KeyPair, name = 'client'): ProcessHandle {
  return spawnNode('examples/simple/main.ts', ['--address', address, '--ca', ca.certPath, '--username', 'user', '--password', 'pass'], { name });
}

/** A data-plane node started from the CLI as its own process, restartable on the same ports. */
export class NodeProcess {
  proc!: ProcessHandle;

  private constructor(
    readonly quicPort: number,
    readonly httpPort: number,
    readonly managementPort: number,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly gc: boolean,
  ) {}

  /** `gc`: run it with --expose-gc, so that heapAfterGc() can ask for its heap. */
  static async start(opts: { certs: { server: KeyPair }; groupsPath: string; args?: string[]; env?: NodeJS.ProcessEnv; gc?: boolean }): Promise<NodeProcess> {
    const [quicPort, httpPort, managementPort] = [await freePort('udp'), await freePort(), await freePort()];
    const args = [...nodeArgs({ ...opts, quicPort, httpPort, managementPort }), ...(opts.args ?? [])];
    const node = new NodeProcess(quicPort, httpPort, managementPort, args, opts.env ?? {}, opts.gc ?? false);
    await node.run();
    return node;
  }

  /** (Re)starts the process on the same ports and waits until it is ready. */
  async run(): Promise<void> {
    this.proc = this.gc
      ? spawnProcess(process.execPath, ['--expose-gc', '--import', tsxLoader(), 'test/fixtures/node-with-gc.ts', ...this.args], { name: 'node', env: this.env })
      : spawnNode('cli.ts', this.args, { name: 'node', env: this.env });
    await this.proc.waitForLine(/"msg":"node ready"/, 60_000);
  }

  get address(): string {
    return `127.0.0.1:${this.quicPort}`;
  }

  /** The Prometheus text of /metrics. */
  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.managementPort}/metrics`)).text();
  }

  /** The node's resident memory, from its own process metrics. */
  async rss(): Promise<number> {
    const match = /^reverst_process_resident_memory_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(await this.metrics());
    if (!match) throw new Error('no resident memory figure in /metrics');
    return Number(match[1]);
  }

  /** The node's heap in use after a full collection (started with `gc`). */
  async heapAfterGc(): Promise<number> {
    const seen = this.proc.stdout.length;
    this.proc.child.kill('SIGUSR2');
    // Lines already written are checked too: only one printed after this signal counts.
    const line = await this.proc.waitForLine((l) => /^heap \d+$/.test(l) && this.proc.stdout.lastIndexOf(l) >= seen, 30_000);
    return Number(line.slice('heap '.length));
  }

  /** Bytes the node has written to stderr (its JSON log) so far. */
  logBytes(): number {
    return this.proc.stderr.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0);
  }

  /** Registered tunnels of the group, from /metrics. */
  async tunnels(): Promise<number> {
    const match = new RegExp(`^reverst_tunnel_group_active_conn\\{group="${GROUP.replace(/\./g, '\\.')}"\\} (\\d+)$`, 'm').exec(await this.metrics());
    return match ? Number(match[1]) : 0;
  }
}

const tsxLoader = (): string => pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export interface Answer {
  status: number;
  body: string;
  /** When it was sent and when it ended (performance.now()). */
  sentAt: number;
  doneAt: number;
}

/** One GET through the node's public listener; a connection error comes back as status 0 with the message as body. */
export function get(port: number, path = '/', timeoutMs = 30_000): Promise<Answer> {
  const sentAt = performance.now();
  return new Promise((resolve) => {
    const done = (status: number, body: string) => resolve({ status, body, sentAt, doneAt: performance.now() });
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers: { host: GROUP } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => done(res.statusCode ?? 0, body));
      res.on('error', (e) => done(0, e.message));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => done(0, e.message));
  });
}

/** GETs from `workers` loops until stop(): every answer, in order of completion. */
export function load(port: number, workers = 4, pauseMs = 5): { stop(): Promise<Answer[]>; answers: Answer[] } {
  const answers: Answer[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      answers.push(await get(port));
      if (pauseMs > 0) await sleep(pauseMs);
    }
  });
  return {
    answers,
    async stop() {
      running = false;
      await Promise.all(loops);
      return answers;
    },
  };
}
