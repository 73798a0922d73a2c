// Tunnel benchmark: HTTP through a standalone reverst node and a tunnel client, against the same
// request listener served directly, both measured in the same run. Informative only: no targets;
// the exit code is non-zero only when the run crashed or a phase stalled past its limit.
//
// Processes (so that the load generator never shares a core's event loop with what it measures):
//   this one         orchestrates; runs the bulk transfers (node:http client, one connection each)
//   origin           bench/tunnel-peer.ts origin: node:http server with the listener (direct baseline)
//   tunnel           bench/tunnel-peer.ts tunnel: the data-plane node (startNode) AND the tunnel
//                    client (connect) in ONE process; the client serves the same listener
//   load generator   bench/tunnel-load.ts: autocannon's API, a new process per run
// The machine this was written on has 2 cores: autocannon takes one, the serving side the other.
//
// One command, one run: prints a table and writes bench-results/tunnel-<timestamp>.json.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { makeCa, makeServerCert } from '../test/harness/certs.js';
import { onCleanup, runCleanups } from '../test/harness/cleanup.js';
import { spawnNode, type ProcessHandle } from '../test/harness/processes.js';
import { cpuSeconds } from './cpu.js';
import type { LoadResult, LoadSpec } from './tunnel-load.js';

const MB = 1_000_000;
/** Must match bench/tunnel-peer.ts. */
const SMALL_BODY_BYTES = 1024;
const BULK_BYTES = 10 * MB;

const CONNECTIONS = [1, 10, 100];
const LOAD_WARMUP_S = 1;
const LOAD_DURATION_S = 5;
/** autocannon's per-request timeout: a request unanswered this long is counted as an error. */
const REQUEST_TIMEOUT_S = 10;
/** Two: this process's first transfers run several times slower (its code paths warm up), which caps a direct figure. */
const BULK_WARMUPS = 2;
const BULK_REPETITIONS = 5;
/** A bulk transfer not complete by then is a hang: counted, its connection destroyed. */
const TRANSFER_TIMEOUT_MS = 30_000;

/** A load run with no result by then has stalled: the run fails. */
const LOAD_LIMIT_MS = (LOAD_WARMUP_S + LOAD_DURATION_S + 20) * 1000;
/** A bulk phase (all its transfers) with no result by then has stalled. */
const BULK_LIMIT_MS = (BULK_WARMUPS + BULK_REPETITIONS) * TRANSFER_TIMEOUT_MS + 5_000;
/** How long a peer gets to close everything and exit after SIGTERM before it is killed (and reported). */
const PEER_STOP_MS = 5_000;
/** After the run, anything still holding the event loop is a leak: report it and exit anyway. */
const EXIT_GRACE_MS = 5_000;

const HOST = '127.0.0.1';
/** The tunnel group, its one host, and the name in the node's certificate. */
const GROUP = 'bench.local';
const PEER_SCRIPT = fileURLToPath(new URL('./tunnel-peer.ts', import.meta.url));
const LOAD_SCRIPT = fileURLToPath(new URL('./tunnel-load.ts', import.meta.url));
const RESULTS_DIR = fileURLToPath(new URL('../bench-results/', import.meta.url));
/** Logged by the node at start for a group without authentication: expected here. */
const EXPECTED_WARNINGS = new Set(['tunnel group has no authentication: anyone can register and serve its hosts']);

type Side = 'direct' | 'tunnel';

interface Peer {
  side: Side;
  handle: ProcessHandle;
  port: number;
  pid: number;
  /** Rejects if the peer exits before the run is over. */
  died: Promise<never>;
  /** SIGTERM, then SIGKILL after PEER_STOP_MS; says how it went. */
  stop(): Promise<PeerExit>;
}

interface PeerExit {
  code: number | null;
  signal: string | null;
  /** False when it had to be killed: something kept it alive after SIGTERM. */
  exitedByItself: boolean;
  seconds: number;
}

interface BulkResult {
  /** MB/s of each timed transfer that completed. */
  mbPerSecond: number[];
  median: number;
  failures: number;
  firstError?: string;
  /** CPU used by the serving process during the timed transfers, percent of one core. */
  serverCpuPercent?: number;
  /** CPU used by this process (the client) during the timed transfers, percent of one core. */
  clientCpuPercent: number;
}

// --- the peers ------------------------------------------------------------------------------

async function startPeer(side: Side, args: string[]): Promise<Peer> {
  const mode = side === 'direct' ? 'origin' : 'tunnel';
  const handle = spawnNode(PEER_SCRIPT, [mode, ...args], { name: `tunnel-peer ${mode}` });
  let stopping = false;
  // Matched on stdout and stderr alike, and the tunnel peer logs JSON lines on stderr.
  const line = await handle.waitForLine((l) => l.startsWith('{"httpPort":'), 20_000);
  const { httpPort, pid } = JSON.parse(line) as { httpPort: number; pid: number };
  const died = handle.exited.then((exit): Promise<never> => {
    if (stopping) return new Promise<never>(() => {});
    throw new Error(`the ${mode} process exited mid-run (code ${exit.code}, signal ${exit.signal}):\n${handle.output()}`);
  });
  died.catch(() => {});
  let stopped: Promise<PeerExit> | undefined;
  const stop = (): Promise<PeerExit> =>
    (stopped ??= (async () => {
      stopping = true;
      const begun = performance.now();
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), PEER_STOP_MS)));
      const first = await Promise.race([handle.kill('SIGTERM'), timedOut]);
      clearTimeout(timer);
      const exit = first === 'timeout' ? await handle.kill('SIGKILL') : first;
      return { code: exit.code, signal: exit.signal, exitedByItself: first !== 'timeout', seconds: (performance.now() - begun) / 1000 };
    })());
  onCleanup(stop);
  return { side, handle, port: httpPort, pid, died, stop };
}

/** The tunnel peer's warnings and errors (JSON lines on stderr), counted by level and message. */
function logSummary(peer: Peer): Array<{ level: string; msg: string; count: number; example: string }> {
  const byKey = new Map<string, { level: string; msg: string; count: number; example: string }>();
  for (const line of peer.handle.stderr) {
    let level = 'stderr';
    let msg = line;
    try {
      const parsed = JSON.parse(line) as { level?: string; msg?: string };
      level = parsed.level ?? level;
      msg = parsed.msg ?? msg;
    } catch {
      // not a log line: counted as it is
    }
    if (EXPECTED_WARNINGS.has(msg)) continue;
    const key = `${level}\0${msg}`;
    const entry = byKey.get(key);
    if (entry) entry.count++;
    else byKey.set(key, { level, msg, count: 1, example: line });
  }
  return [...byKey.values()];
}

// --- requests from this process -------------------------------------------------------------

interface Answer {
  status: number;
  /** Bytes of the answer's body. */
  received: number;
  /** The body itself, when kept. */
  body: Buffer;
  ms: number;
}

/** One request on a connection of its own; `upload` bytes are streamed with backpressure. */
function request(port: number, method: string, urlPath: string, upload = 0, keepBody = true): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const headers: http.OutgoingHttpHeaders = { host: GROUP };
    if (upload > 0) Object.assign(headers, { 'content-type': 'application/octet-stream', 'content-length': upload });
    const req = http.request({ host: HOST, port, method, path: urlPath, headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${TRANSFER_TIMEOUT_MS / 1000} s`)), TRANSFER_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    req.on('error', fail);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (keepBody) chunks.push(chunk);
      });
      res.on('error', fail);
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, received, body: Buffer.concat(chunks), ms: performance.now() - start });
      });
      res.on('close', () => {
        if (!res.complete) fail(new Error(`the response ended after ${received} bytes, before its end`));
      });
    });
    if (upload === 0) return void req.end();
    const block = Buffer.alloc(64 << 10, 0xa5);
    let left = upload;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, block.length);
        left -= n;
        if (!req.write(n === block.length ? block : block.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

/** The 1 KB answer, or an error saying what came instead. */
async function checkSmall(peer: Peer): Promise<void> {
  const a = await request(peer.port, 'GET', '/check');
  if (a.status !== 200 || a.body.length !== SMALL_BODY_BYTES) {
    throw new Error(
      `${peer.side}: GET /check answered ${a.status} with ${a.body.length} bytes (expected 200 with ${SMALL_BODY_BYTES}): ${a.body.subarray(0, 200).toString()}`,
    );
  }
}

async function download(port: number): Promise<number> {
  const a = await request(port, 'GET', '/download', 0, false);
  if (a.status !== 200 || a.received !== BULK_BYTES) throw new Error(`download: ${a.status} with ${a.received} bytes, expected 200 with ${BULK_BYTES}`);
  return a.ms;
}

async function upload(port: number): Promise<number> {
  const a = await request(port, 'POST', '/upload', BULK_BYTES);
  const counted = Number(a.body.toString());
  if (a.status !== 200 || counted !== BULK_BYTES)
    throw new Error(`upload: ${a.status}, the origin counted ${a.body.subarray(0, 200).toString()} bytes, expected ${BULK_BYTES}`);
  return a.ms;
}

async function bulk(peer: Peer, transfer: (port: number) => Promise<number>): Promise<BulkResult> {
  let failures = 0;
  let firstError: string | undefined;
  const attempt = async (): Promise<number | undefined> => {
    try {
      return await transfer(peer.port);
    } catch (err) {
      failures++;
      firstError ??= err instanceof Error ? err.message : String(err);
      return undefined;
    }
  };
  for (let i = 0; i < BULK_WARMUPS; i++) await attempt();
  const mbPerSecond: number[] = [];
  const cpuBefore = cpuSeconds(peer.pid);
  const clientBefore = process.cpuUsage();
  const start = performance.now();
  for (let i = 0; i < BULK_REPETITIONS; i++) {
    const ms = await attempt();
    if (ms !== undefined) mbPerSecond.push(BULK_BYTES / MB / (ms / 1000));
  }
  const cpuAfter = cpuSeconds(peer.pid);
  const client = process.cpuUsage(clientBefore);
  const wall = (performance.now() - start) / 1000;
  const sorted = [...mbPerSecond].sort((a, b) => a - b);
  return {
    mbPerSecond,
    median: sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)]!,
    failures,
    ...(firstError === undefined ? {} : { firstError }),
    ...(cpuBefore !== undefined && cpuAfter !== undefined ? { serverCpuPercent: ((cpuAfter - cpuBefore) / wall) * 100 } : {}),
    clientCpuPercent: ((client.user + client.system) / 1e6 / wall) * 100,
  };
}

// --- load runs ------------------------------------------------------------------------------

async function load(peer: Peer, connections: number): Promise<LoadResult> {
  const spec: LoadSpec = {
    url: `http://${HOST}:${peer.port}/`,
    connections,
    warmupSeconds: LOAD_WARMUP_S,
    durationSeconds: LOAD_DURATION_S,
    headers: { host: GROUP },
    timeoutSeconds: REQUEST_TIMEOUT_S,
    serverPid: peer.pid,
  };
  const child = spawnNode(LOAD_SCRIPT, [JSON.stringify(spec)], { name: `autocannon -c ${connections} (${peer.side})` });
  try {
    const line = await child.waitForLine((l) => l.startsWith('{"connections":'), LOAD_LIMIT_MS);
    const exit = await child.exited;
    if (exit.code !== 0) throw new Error(`${child.name} exited with code ${exit.code} after its result:\n${child.output()}`);
    return JSON.parse(line) as LoadResult;
  } finally {
    await child.kill('SIGKILL');
  }
}

// --- the run --------------------------------------------------------------------------------

/** Runs a measurement; fails the run if it stalls past `limitMs` or a peer dies. */
async function phase<T>(name: string, limitMs: number, peers: Peer[], run: () => Promise<T>): Promise<T> {
  process.stderr.write(`  ${name}\n`);
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: no result within ${limitMs / 1000} s`)), limitMs);
  });
  try {
    return await Promise.race([run(), limit, ...peers.map((p) => p.died)]);
  } finally {
    clearTimeout(timer);
  }
}

async function measure(direct: Peer, tunnel: Peer) {
  const peers = [direct, tunnel];
  const sides = { direct, tunnel };
  await phase('check: GET / directly and through the tunnel', 10_000, peers, async () => {
    await checkSmall(direct);
    await checkSmall(tunnel);
  });

  // Direct and tunnel alternate, so a change in the machine's load touches both alike.
  const loads: Array<{ connections: number; direct: LoadResult; tunnel: LoadResult }> = [];
  for (const connections of CONNECTIONS) {
    const row = {} as Record<Side, LoadResult>;
    for (const side of ['direct', 'tunnel'] as const) {
      row[side] = await phase(`GET 1 KB, ${connections} connection${connections === 1 ? '' : 's'}, ${side}`, LOAD_LIMIT_MS, peers, () =>
        load(sides[side], connections),
      );
    }
    loads.push({ connections, ...row });
  }

  const bulks = {} as Record<'download' | 'upload', Record<Side, BulkResult>>;
  for (const [kind, transfer] of [
    ['download', download],
    ['upload', upload],
  ] as const) {
    bulks[kind] = {} as Record<Side, BulkResult>;
    for (const side of ['direct', 'tunnel'] as const) {
      bulks[kind][side] = await phase(`${kind} 10 MB ×${BULK_WARMUPS + BULK_REPETITIONS}, ${side}`, BULK_LIMIT_MS, peers, () => bulk(sides[side], transfer));
    }
  }
  return { load: loads, bulk: bulks };
}

type Results = Awaited<ReturnType<typeof measure>>;

// --- output ---------------------------------------------------------------------------------

const fixed = (n: number | undefined, digits = 1): string => (n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : '–');
const count = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const times = (tunnel: number, direct: number): string => (Number.isFinite(tunnel / direct) ? `${(tunnel / direct).toFixed(2)}×` : '–');
const ms = (n: number): string => fixed(n, n < 10 ? 2 : 1);
const percent = (n: number | undefined): string => (n === undefined ? '–' : `${Math.round(n)}%`);
const failures = (r: LoadResult): string => `${r.non2xx} / ${r.errors}`;

function table(r: Results): string {
  const rows: string[][] = [
    ['measurement', 'direct', 'tunnel (× direct)', 'direct p50 / p99', 'tunnel p50 / p99 (× direct)', 'non-2xx / errors ¹', 'CPU: server, client ²'],
  ];
  for (const { connections: c, direct: d, tunnel: t } of r.load) {
    rows.push([
      `GET 1 KB, ${c} connection${c === 1 ? '' : 's'}`,
      `${count(d.requestsPerSecond)} req/s`,
      `${count(t.requestsPerSecond)} req/s (${times(t.requestsPerSecond, d.requestsPerSecond)})`,
      `${ms(d.p50Ms)} / ${ms(d.p99Ms)} ms`,
      `${ms(t.p50Ms)} / ${ms(t.p99Ms)} ms (${times(t.p50Ms, d.p50Ms)} / ${times(t.p99Ms, d.p99Ms)})`,
      `${failures(d)}  |  ${failures(t)}`,
      `${percent(d.serverCpuPercent)}, ${percent(d.loadGeneratorCpuPercent)}  |  ${percent(t.serverCpuPercent)}, ${percent(t.loadGeneratorCpuPercent)}`,
    ]);
  }
  for (const kind of ['download', 'upload'] as const) {
    const { direct: d, tunnel: t } = r.bulk[kind];
    rows.push([
      `${kind} 10 MB ³`,
      `${fixed(d.median)} MB/s`,
      `${fixed(t.median)} MB/s (${times(t.median, d.median)})`,
      '',
      '',
      `– / ${d.failures}  |  – / ${t.failures}`,
      `${percent(d.serverCpuPercent)}, ${percent(d.clientCpuPercent)}  |  ${percent(t.serverCpuPercent)}, ${percent(t.clientCpuPercent)}`,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]): string =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const notes: string[] = [];
  for (const { connections: c, direct: d, tunnel: t } of r.load) {
    for (const [side, x] of [
      ['direct', d],
      ['tunnel', t],
    ] as const) {
      const codes = Object.entries(x.statusCodes).filter(([code]) => !code.startsWith('2'));
      if (x.non2xx + x.errors + x.warmup.non2xx + x.warmup.errors > 0) {
        notes.push(
          `  ${side}, ${c} connection(s): ${x.non2xx} non-2xx${codes.length ? ` (${codes.map(([k, v]) => `${v}× ${k}`).join(', ')})` : ''}, ` +
            `${x.errors} errors (${x.timeouts} timeouts)${x.firstError ? `, first: ${x.firstError}` : ''}; warm-up: ${x.warmup.non2xx} non-2xx, ${x.warmup.errors} errors`,
        );
      }
    }
  }
  for (const kind of ['download', 'upload'] as const) {
    for (const side of ['direct', 'tunnel'] as const) {
      const b = r.bulk[kind][side];
      if (b.failures > 0) notes.push(`  ${kind}, ${side}: ${b.failures} failed transfer(s), first: ${b.firstError}`);
    }
  }
  return [
    line(rows[0]!),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.slice(1).map(line),
    '',
    `  GET: autocannon, ${LOAD_WARMUP_S} s untimed warm-up then ${LOAD_DURATION_S} s measured, each run a new process; req/s counts 2xx answers;`,
    '  p50 / p99 over 2xx answers. Ratios are tunnel ÷ direct (above 1× is slower for latency, faster for req/s and MB/s).',
    `¹ direct | tunnel. Errors: connection errors and requests unanswered after ${REQUEST_TIMEOUT_S} s (autocannon's count), or failed transfers.`,
    '² percent of one core during the measured run: the serving process (origin, or node + tunnel client), then the client',
    '  (autocannon; for the transfers, this process). A client near 100% caps the figure it measures.',
    `³ node:http in this process, one connection per transfer, ${BULK_WARMUPS} untimed then the median of ${BULK_REPETITIONS};`,
    "  time from the request to the last byte of the answer (upload: to the origin's byte count).",
    ...(notes.length > 0 ? ['', 'Failures:', ...notes] : []),
  ].join('\n');
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined; // not a checkout: the JSON just lacks the commit
  }
}

async function writeJson(started: Date, report: Record<string, unknown>): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `tunnel-${started.toISOString().replace(/[:.]/g, '-')}.json`);
  await writeFile(file, JSON.stringify({ startedAt: started.toISOString(), seconds: (Date.now() - started.getTime()) / 1000, ...report }, null, 2) + '\n');
  return file;
}

async function main(): Promise<void> {
  const started = new Date();
  const loadBefore = os.loadavg();
  process.stderr.write(`tunnel benchmark (load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')})\n`);
  const ca = await makeCa('reverst bench CA');
  const leaf = await makeServerCert(ca, { names: [GROUP, 'localhost', '127.0.0.1'] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reverst-bench-tunnel-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const groupsPath = path.join(dir, 'groups.yml');
  writeFileSync(groupsPath, `groups:\n  "${GROUP}":\n    hosts:\n    - "${GROUP}"\n`);

  const [direct, tunnel] = await Promise.all([startPeer('direct', []), startPeer('tunnel', [leaf.keyPath, leaf.certPath, ca.certPath, groupsPath, GROUP])]);
  const results = await measure(direct, tunnel);
  const exits = { origin: await direct.stop(), tunnel: await tunnel.stop() };
  const tunnelLog = logSummary(tunnel);
  const originLog = logSummary(direct);

  const odd: string[] = [];
  for (const [name, exit] of Object.entries(exits)) {
    if (!exit.exitedByItself) odd.push(`the ${name} process did not exit within ${PEER_STOP_MS / 1000} s of SIGTERM (killed): a handle stayed open`);
    else if (exit.code !== 0) odd.push(`the ${name} process exited with code ${exit.code} (signal ${exit.signal}) on SIGTERM`);
  }
  for (const [name, log] of [
    ['tunnel', tunnelLog],
    ['origin', originLog],
  ] as const) {
    for (const e of log) odd.push(`${name} process logged ${e.count}× ${e.level}: ${e.msg}  (e.g. ${e.example.slice(0, 300)})`);
  }

  console.log(`\n${table(results)}\n`);
  if (odd.length > 0) console.log(`Odd:\n${odd.map((o) => `  ${o}`).join('\n')}\n`);
  const file = await writeJson(started, {
    environment: {
      node: process.version,
      cpus: os.cpus().length,
      loadAverageBefore: loadBefore,
      loadAverageAfter: os.loadavg(),
      niceness: os.getPriority(),
      commit: gitCommit(),
    },
    processes: {
      orchestrator: 'this process: bulk transfers (node:http, one connection per transfer)',
      origin: 'bench/tunnel-peer.ts origin: node:http server (direct baseline)',
      tunnel: 'bench/tunnel-peer.ts tunnel: startNode + connect in one process; the client serves the same listener',
      loadGenerator: 'bench/tunnel-load.ts: autocannon API, one process per run',
    },
    parameters: {
      megabyte: MB,
      smallBodyBytes: SMALL_BODY_BYTES,
      bulkBytes: BULK_BYTES,
      connections: CONNECTIONS,
      loadWarmupSeconds: LOAD_WARMUP_S,
      loadDurationSeconds: LOAD_DURATION_S,
      requestTimeoutSeconds: REQUEST_TIMEOUT_S,
      bulkWarmups: BULK_WARMUPS,
      bulkRepetitions: BULK_REPETITIONS,
      group: GROUP,
    },
    results,
    ratios: {
      load: results.load.map(({ connections, direct: d, tunnel: t }) => ({
        connections,
        requestsPerSecond: t.requestsPerSecond / d.requestsPerSecond,
        p50: t.p50Ms / d.p50Ms,
        p99: t.p99Ms / d.p99Ms,
      })),
      downloadMbPerSecond: results.bulk.download.tunnel.median / results.bulk.download.direct.median,
      uploadMbPerSecond: results.bulk.upload.tunnel.median / results.bulk.upload.direct.median,
    },
    peerExits: exits,
    peerLogs: { tunnel: tunnelLog, origin: originLog },
    odd,
  });
  console.log(`written to ${path.relative(process.cwd(), file)}`);
}

try {
  await main();
} catch (err) {
  console.error('tunnel benchmark failed:', err);
  process.exitCode = 1;
} finally {
  await runCleanups();
  // Everything is closed now; if something still keeps the process alive, say so rather than hang.
  setTimeout(() => {
    console.error(`tunnel benchmark: still running ${EXIT_GRACE_MS / 1000} s after cleanup (a handle leaked); exiting`);
    process.exit(1);
  }, EXIT_GRACE_MS).unref();
}
