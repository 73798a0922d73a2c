// Many idle tunnel clients in one process, for the memory and reconnect-storm scenarios of
// bench/main.ts. It uses the compiled client library (dist/), as an application would.
//
// Argument: a JSON SwarmSpec. Once the library is loaded it prints {"event":"loaded","port","pid","rss"}
// and takes commands as POSTs on that port (loopback), each answered with one JSON object:
//   /dial       every tunnel dials at once; answers when all registered or after deadlineMs
//               (progress lines {"event":"progress",…} go to stdout each second meanwhile)
//   /close?n=K  closes K registered tunnels: {"count","at","ms"} (at: epoch ms when it began)
//   /rss        {"rss"}
//   /exit       closes everything and exits
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import type * as ClientLibrary from '../client/index.js';

export interface SwarmSpec {
  count: number;
  address: string;
  serverName: string;
  caPath: string;
  group: string;
  deadlineMs: number;
  distDir: string;
}

const spec = JSON.parse(process.argv[2] ?? '') as SwarmSpec;
const client = (await import(pathToFileURL(`${spec.distDir}/client/index.js`).href)) as typeof ClientLibrary;
const { readFileSync } = await import('node:fs');
const ca = readFileSync(spec.caPath);

const say = (event: string, data: Record<string, unknown> = {}): void => void process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);
const rss = (): number => process.memoryUsage.rss();

const tunnels: ClientLibrary.Tunnel[] = [];
const registered = new Set<ClientLibrary.Tunnel>();
const retriedTunnels = new Set<ClientLibrary.Tunnel>();
let retries = 0;
const errors = new Map<string, number>();

async function dial(): Promise<Record<string, unknown>> {
  const start = performance.now();
  for (let i = 0; i < spec.count; i++) {
    const tunnel = new client.Tunnel({
      addresses: [spec.address],
      serverName: spec.serverName,
      ca,
      group: spec.group,
      handler: (_req, res) => void res.end('ok'),
    });
    tunnels.push(tunnel);
    tunnel.on('ready', () => registered.add(tunnel));
    tunnel.on('reconnecting', ({ error }) => {
      retries++;
      retriedTunnels.add(tunnel);
      errors.set(error.message, (errors.get(error.message) ?? 0) + 1);
      if (!registered.has(tunnel)) return;
      registered.delete(tunnel); // lost after registering: counts again once back
    });
  }
  const figures = () => ({
    registered: registered.size,
    retries,
    tunnelsRetried: retriedTunnels.size,
    elapsedMs: Math.round(performance.now() - start),
    rss: rss(),
  });
  const progress = setInterval(() => say('progress', figures()), 1_000);
  await new Promise<void>((resolve) => {
    const check = setInterval(() => {
      if (registered.size === spec.count || performance.now() - start > spec.deadlineMs) {
        clearInterval(check);
        resolve();
      }
    }, 5);
  });
  clearInterval(progress);
  return { ...figures(), errors: Object.fromEntries(errors) };
}

async function closeSome(n: number): Promise<Record<string, unknown>> {
  const chosen = tunnels.filter((t) => registered.has(t)).slice(0, n);
  const at = Date.now();
  const begun = performance.now();
  for (const t of chosen) {
    registered.delete(t);
    tunnels.splice(tunnels.indexOf(t), 1);
  }
  await Promise.all(chosen.map((t) => t.close({ graceMs: 0 })));
  return { count: chosen.length, at, ms: performance.now() - begun };
}

async function exit(): Promise<Record<string, unknown>> {
  setImmediate(async () => {
    await Promise.race([Promise.all(tunnels.map((t) => t.close({ graceMs: 0 }))), new Promise((r) => setTimeout(r, 10_000))]);
    process.exit(0);
  });
  return {};
}

const commands: Record<string, (url: URL) => Promise<Record<string, unknown>>> = {
  '/dial': dial,
  '/close': (url) => closeSome(Number(url.searchParams.get('n'))),
  '/rss': async () => ({ rss: rss() }),
  '/exit': exit,
};

const control = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://swarm');
  const command = commands[url.pathname];
  if (!command) return void res.writeHead(404).end();
  command(url).then(
    (answer) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)),
    (err: unknown) => res.writeHead(500).end(String(err)),
  );
});
control.listen(0, '127.0.0.1', () => say('loaded', { port: (control.address() as AddressInfo).port, pid: process.pid, rss: rss() }));
