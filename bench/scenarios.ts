// What the benchmark measures, one function per scenario. Each returns plain figures; report.ts
// turns them into ratios, targets and the table.
import { rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { spawnProcess } from '../test/harness/processes.js';
import type { Transfer } from './bulk.js';
import { command } from './http-probe.js';
import type { LoadGenerator, LoadResult } from './load.js';
import { ORIGIN_PATHS } from './nginx.js';
import type { BenchOptions } from './options.js';
import { cpuSeconds, cpuSince, cpuSnapshot, rssBytes, sampleRss, udpReceiveBufferErrors, udpSocketDrops, type CpuSnapshot } from './procfs.js';
import { activeTunnels, ROOT, startNode, type NodeSpec, type ReverstNode } from './reverst.js';
import { GROUP, LARGE_BYTES, UPLOAD_BYTES, type Setup, type Site } from './setups.js';
import type { SwarmSpec } from './swarm.js';

const MB = 1_000_000;
const REQUEST_TIMEOUT_S = 10;
const TRANSFER_TIMEOUT_S = 60;

export interface LoadRow extends LoadResult {
  setup: string;
  /** CPU milliseconds per 2xx request, by role. */
  cpuMsPerRequest: Record<string, number | undefined>;
  /** Largest RSS of the node seen during the run (reverst setups). */
  nodeRssMax?: number | undefined;
}

const perUnit = (cpu: CpuSnapshot, units: number): Record<string, number | undefined> =>
  Object.fromEntries(Object.entries(cpu).map(([role, s]) => [role, s === undefined || units === 0 ? undefined : (s * 1000) / units]));

export async function loadRun(setup: Setup, connections: number, o: BenchOptions, generate: LoadGenerator): Promise<LoadRow> {
  const spec = { port: setup.port, path: ORIGIN_PATHS.small, host: GROUP, connections, seconds: o.loadSeconds, timeoutSeconds: REQUEST_TIMEOUT_S };
  // Warm-up first, untimed and unmeasured: the CPU and RSS below cover the measured run only.
  if (o.warmupSeconds > 0) await generate({ ...spec, seconds: o.warmupSeconds, warmupSeconds: 0 });
  const rss = setup.pids.node === undefined ? undefined : sampleRss(setup.pids.node);
  const before = cpuSnapshot(setup.pids);
  const result = await generate({ ...spec, warmupSeconds: 0 });
  const cpu = cpuSince(before, cpuSnapshot(setup.pids));
  return { setup: setup.name, ...result, cpuMsPerRequest: perUnit(cpu, result.ok), nodeRssMax: rss?.stop() };
}

export interface BulkRow {
  setup: string;
  kind: 'download' | 'upload';
  bytes: number;
  /** MB/s of each timed transfer that completed. */
  mbPerSecond: number[];
  median: number;
  failures: number;
  firstError?: string;
  /** CPU milliseconds per MB moved, by role. */
  cpuMsPerMb: Record<string, number | undefined>;
}

export async function bulkRun(setup: Setup, kind: 'download' | 'upload', o: BenchOptions, transfer: Transfer, site: Site): Promise<BulkRow> {
  const bytes = kind === 'download' ? LARGE_BYTES : UPLOAD_BYTES;
  const spec = {
    port: setup.port,
    host: GROUP,
    kind,
    path: kind === 'download' ? ORIGIN_PATHS.large : ORIGIN_PATHS.upload,
    file: site.uploadFile,
    bytes,
    timeoutSeconds: TRANSFER_TIMEOUT_S,
  };
  let failures = 0;
  let firstError: string | undefined;
  const attempt = async (): Promise<number | undefined> => {
    try {
      const seconds = await transfer(spec);
      if (kind === 'upload') checkUploaded(site, bytes);
      return seconds;
    } catch (err) {
      failures++;
      firstError ??= (err as Error).message;
      return undefined;
    }
  };
  const runs = o.bulkRuns[kind];
  for (let i = 0; i < runs.warmups; i++) await attempt();
  const mbPerSecond: number[] = [];
  const before = cpuSnapshot(setup.pids);
  for (let i = 0; i < runs.repetitions; i++) {
    const seconds = await attempt();
    if (seconds !== undefined) mbPerSecond.push(bytes / MB / seconds);
  }
  const cpu = cpuSince(before, cpuSnapshot(setup.pids));
  const sorted = [...mbPerSecond].sort((a, b) => a - b);
  return {
    setup: setup.name,
    kind,
    bytes,
    mbPerSecond,
    median: sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) / 2)]!,
    failures,
    ...(firstError === undefined ? {} : { firstError }),
    cpuMsPerMb: perUnit(cpu, (mbPerSecond.length * bytes) / MB),
  };
}

/** The origin wrote the whole upload (nginx's WebDAV writes it under the site; the Node origin only counts). */
function checkUploaded(site: Site, bytes: number): void {
  const file = path.join(site.dir, 'www', ORIGIN_PATHS.upload);
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return; // the Node origin keeps nothing
  }
  rmSync(file);
  if (size !== bytes) throw new Error(`upload: the origin stored ${size} bytes, expected ${bytes}`);
}

// --- tunnels at rest and in a crowd ------------------------------------------------------------

interface Swarm {
  port: number;
  pid: number;
  rss: number;
  stop(): Promise<void>;
}

async function startSwarm(node: ReverstNode, caPath: string, count: number, deadlineMs: number, profile?: string): Promise<Swarm> {
  const spec: SwarmSpec = {
    count,
    address: `127.0.0.1:${node.quicPort}`,
    serverName: GROUP,
    caPath,
    group: GROUP,
    deadlineMs,
    distDir: path.join(ROOT, 'dist'),
  };
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const proc = spawnProcess(
    process.execPath,
    [
      // Its own directory: the main thread and tsx's loader thread each write a profile.
      ...(profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : []),
      '--import',
      tsx,
      new URL('./swarm.ts', import.meta.url).pathname,
      JSON.stringify(spec),
    ],
    { name: `swarm of ${count}` },
  );
  const loaded = JSON.parse(await proc.waitForLine((l) => l.startsWith('{"event":"loaded"'), 20_000)) as { port: number; pid: number; rss: number };
  return {
    ...loaded,
    async stop() {
      await command(loaded.port, '/exit', 5_000).catch(() => {});
      const timer = setTimeout(() => void proc.kill('SIGKILL'), 15_000);
      await proc.exited;
      clearTimeout(timer);
    },
  };
}

interface Dialed {
  registered: number;
  retries: number;
  tunnelsRetried: number;
  elapsedMs: number;
  rss: number;
  errors: Record<string, number>;
}

/** How long a node with nothing to do takes to settle its memory after start. */
const SETTLE_MS = 3_000;

export interface MemoryResult {
  idleTunnels: number;
  registered: number;
  nodeIdleRss?: number | undefined;
  nodeWithTunnelsRss?: number | undefined;
  nodeBytesPerTunnel?: number | undefined;
  clientBytesPerTunnel: number;
}

export async function memoryRun(spec: NodeSpec, o: BenchOptions, profileDir?: string): Promise<MemoryResult> {
  const node = await startNode(spec);
  try {
    await sleep(SETTLE_MS);
    const idle = rssBytes(node.proc.child.pid);
    const swarm = await startSwarm(node, spec.tls.caPath, o.idleTunnels, 120_000, profileDir && path.join(profileDir, 'idle-swarm'));
    try {
      const dialed = await command<Dialed>(swarm.port, '/dial', 130_000);
      await sleep(SETTLE_MS);
      const loaded = rssBytes(node.proc.child.pid);
      const clientRss = (await command<{ rss: number }>(swarm.port, '/rss', 5_000)).rss;
      return {
        idleTunnels: o.idleTunnels,
        registered: dialed.registered,
        nodeIdleRss: idle,
        nodeWithTunnelsRss: loaded,
        nodeBytesPerTunnel: idle === undefined || loaded === undefined ? undefined : (loaded - idle) / dialed.registered,
        clientBytesPerTunnel: (clientRss - swarm.rss) / dialed.registered,
      };
    } finally {
      await swarm.stop();
    }
  } finally {
    await node.proc.kill('SIGTERM');
  }
}

export interface StormResult {
  tunnels: number;
  registered: number;
  /** Until the last one registered (or the deadline). */
  seconds: number;
  /** Dials that failed and were tried again (handshake or registration timeouts, refusals). */
  retries: number;
  tunnelsRetried: number;
  /** Never registered within the deadline. */
  gaveUp: number;
  errors: Record<string, number>;
  nodeCount: number;
  /** Datagrams the kernel dropped for want of socket receive buffer while they dialled (machine-wide). */
  udpReceiveBufferDrops?: number | undefined;
  /** Of those, dropped on the node's own socket. */
  nodeSocketDrops?: number | undefined;
  /** CPU seconds the node and the clients' process used until all registered. */
  cpuSeconds: CpuSnapshot;
  timeline: Array<{ ms: number; drops: number | undefined; nodeCpu: number | undefined }>;
  closed: number;
  /** How long the clients' close() took. */
  closeMs: number;
  /** From the clients' close() to the node no longer counting them. */
  freedMs?: number | undefined;
  nodeRss?: number | undefined;
}

const STORM_DEADLINE_MS = 60_000;
const FREE_LIMIT_MS = 40_000;

export async function stormRun(spec: NodeSpec, o: BenchOptions, profileDir?: string): Promise<StormResult> {
  const node = await startNode(spec);
  try {
    const swarm = await startSwarm(node, spec.tls.caPath, o.stormTunnels, STORM_DEADLINE_MS, profileDir && path.join(profileDir, 'storm-swarm'));
    try {
      const dropsBefore = udpReceiveBufferErrors();
      const cpuBefore = cpuSnapshot({ node: node.proc.child.pid!, clients: swarm.pid });
      // Every half second: the node's socket drops so far, and its CPU seconds (where the time goes).
      const timeline: Array<{ ms: number; drops: number | undefined; nodeCpu: number | undefined }> = [];
      const begun = Date.now();
      const sampler = setInterval(
        () => timeline.push({ ms: Date.now() - begun, drops: udpSocketDrops(node.quicPort), nodeCpu: cpuSeconds(node.proc.child.pid) }),
        500,
      );
      const dialed = await command<Dialed>(swarm.port, '/dial', STORM_DEADLINE_MS + 10_000).finally(() => clearInterval(sampler));
      const cpu = cpuSince(cpuBefore, cpuSnapshot({ node: node.proc.child.pid!, clients: swarm.pid }));
      const dropsAfter = udpReceiveBufferErrors();
      const nodeDrops = udpSocketDrops(node.quicPort);
      const nodeCount = await activeTunnels(node, GROUP);
      const nodeRss = rssBytes(node.proc.child.pid);
      // Watched while the clients close: their close() returns only after their own closing period.
      const closing = command<{ count: number; at: number; ms: number }>(swarm.port, `/close?n=${o.stormCloses}`, 30_000);
      const asked = Date.now();
      let freedAt: number | undefined;
      while (Date.now() - asked < FREE_LIMIT_MS) {
        if ((await activeTunnels(node, GROUP)) <= nodeCount - o.stormCloses) {
          freedAt = Date.now();
          break;
        }
        await sleep(10);
      }
      const closed = await closing;
      const freedMs = freedAt === undefined ? undefined : freedAt - closed.at;
      return {
        tunnels: o.stormTunnels,
        registered: dialed.registered,
        seconds: dialed.elapsedMs / 1000,
        retries: dialed.retries,
        tunnelsRetried: dialed.tunnelsRetried,
        gaveUp: o.stormTunnels - dialed.registered,
        errors: dialed.errors,
        nodeCount,
        udpReceiveBufferDrops: dropsBefore === undefined || dropsAfter === undefined ? undefined : dropsAfter - dropsBefore,
        nodeSocketDrops: nodeDrops,
        cpuSeconds: cpu,
        timeline,
        closed: closed.count,
        closeMs: closed.ms,
        freedMs,
        nodeRss,
      };
    } finally {
      await swarm.stop();
    }
  } finally {
    await node.proc.kill('SIGTERM');
  }
}
