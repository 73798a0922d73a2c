// The processes each setup runs, started once for the run. Every setup answers the origin's paths
// (bench/nginx.ts ORIGIN_PATHS) on its own port; the load generator and curl talk only to that port.
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../test/harness/ports.js';
import { spawnNode, type ProcessHandle } from '../test/harness/processes.js';
import { startRedis } from '../test/harness/redis.js';
import { get } from './http-probe.js';
import { nginxOriginConfig, nginxProxyConfig, ORIGIN_PATHS, startNginx } from './nginx.js';
import type { SetupName } from './options.js';
import { clusterSecret, profileArgs, startClient, startNode, type Tls } from './reverst.js';

export const GROUP = 'bench.local';
export const SMALL_BYTES = 1024;
export const LARGE_BYTES = 10_000_000;
export const UPLOAD_BYTES = 100_000_000;

export interface Tools {
  nginx?: string | undefined;
  wrk?: string | undefined;
  curl?: string | undefined;
  redis?: string | undefined;
}

export interface Setup {
  name: SetupName;
  /** Where visitors connect. */
  port: number;
  /** The processes doing the work, by role (CPU and memory are read for each). */
  pids: Record<string, number>;
  /** reverst processes, stopped with SIGTERM at the end so their CPU profiles get written. */
  reverst: ProcessHandle[];
}

export interface Site {
  dir: string;
  smallFile: string;
  largeFile: string;
  uploadFile: string;
}

/** The files the origin serves and the body uploads send, in `dir` (on tmpfs where there is one). */
export function makeSite(dir: string): Site {
  mkdirSync(path.join(dir, 'www', 'upload'), { recursive: true });
  const fill = (file: string, bytes: number, byte: number): string => {
    const block = Buffer.alloc(1 << 20, byte);
    const fd = openSync(file, 'w');
    for (let left = bytes; left > 0; left -= block.length) writeSync(fd, block, 0, Math.min(left, block.length));
    closeSync(fd);
    return file;
  };
  return {
    dir,
    smallFile: fill(path.join(dir, 'www', 'small'), SMALL_BYTES, 0x61),
    largeFile: fill(path.join(dir, 'www', 'large'), LARGE_BYTES, 0x5a),
    uploadFile: fill(path.join(dir, 'upload.bin'), UPLOAD_BYTES, 0xa5),
  };
}

async function childPort(proc: ProcessHandle): Promise<{ port: number; pid: number }> {
  return JSON.parse(await proc.waitForLine((l) => l.startsWith('{"port":'), 20_000)) as { port: number; pid: number };
}

export async function startOrigin(tools: Tools, site: Site): Promise<{ port: number; pid: number; kind: 'nginx' | 'node' }> {
  if (tools.nginx) {
    const port = await freePort('tcp');
    const proc = await startNginx(tools.nginx, site.dir, 'origin', nginxOriginConfig(site.dir, port, { root: path.join(site.dir, 'www'), ...site }), port);
    return { port, pid: proc.child.pid!, kind: 'nginx' };
  }
  const proc = spawnNode(new URL('./node-origin.ts', import.meta.url).pathname, [], { name: 'node origin' });
  return { ...(await childPort(proc)), kind: 'node' };
}

export interface StartContext {
  tools: Tools;
  site: Site;
  origin: { port: number; pid: number };
  tls: Tls;
  groupsPath: string;
  profileDir?: string | undefined;
  /** Why a setup could not run, for the report. */
  skipped: string[];
}

/** Polls until a request through the setup gets the origin's 1 KB answer (a new tunnel's route may take a moment to spread). */
async function ready(setup: Setup): Promise<Setup> {
  const until = Date.now() + 20_000;
  for (;;) {
    const a = await get(setup.port, ORIGIN_PATHS.small, GROUP);
    if (a.status === 200 && a.body.length === SMALL_BYTES) return setup;
    if (Date.now() > until)
      throw new Error(`${setup.name}: GET ${ORIGIN_PATHS.small} answered ${a.status} (${a.body.length} bytes): ${a.body.toString().slice(0, 200)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startSetup(name: SetupName, ctx: StartContext): Promise<Setup | undefined> {
  const { origin, tls, groupsPath } = ctx;
  const base = { serverName: GROUP, groupsPath, tls };
  const prof = (role: string) => profileArgs(ctx.profileDir, `${name}-${role}`);
  switch (name) {
    case 'direct':
      return ready({ name, port: origin.port, pids: { origin: origin.pid }, reverst: [] });
    case 'nginx-proxy': {
      if (!ctx.tools.nginx) return void ctx.skipped.push('nginx-proxy: nginx is not installed (apt-get install nginx-light)');
      const port = await freePort('tcp');
      const proc = await startNginx(ctx.tools.nginx, ctx.site.dir, 'proxy', nginxProxyConfig(ctx.site.dir, port, origin.port), port);
      return ready({ name, port, pids: { proxy: proc.child.pid!, origin: origin.pid }, reverst: [] });
    }
    case 'node-proxy': {
      const proc = spawnNode(new URL('./node-proxy.ts', import.meta.url).pathname, [String(origin.port)], { name: 'node proxy' });
      const { port, pid } = await childPort(proc);
      return ready({ name, port, pids: { proxy: pid, origin: origin.pid }, reverst: [] });
    }
    case 'reverst': {
      const node = await startNode({ ...base, name: 'one', nodeArgs: prof('node') });
      const client = await startClient({ ...base, name: 'one', group: GROUP, originPort: origin.port, node, nodeArgs: prof('client') });
      return ready({
        name,
        port: node.httpPort,
        pids: { node: node.proc.child.pid!, client: client.child.pid!, origin: origin.pid },
        reverst: [client, node.proc],
      });
    }
    case 'reverst-hop': {
      if (!ctx.tools.redis) return void ctx.skipped.push('reverst-hop: redis-server is not installed (apt-get install redis-server)');
      const redis = await startRedis();
      const cluster = { membership: redis.url, secret: clusterSecret() };
      const holder = await startNode({ ...base, name: 'hop-holder', cluster, nodeArgs: prof('holder') });
      const entry = await startNode({ ...base, name: 'hop-entry', cluster, nodeArgs: prof('entry') });
      const client = await startClient({ ...base, name: 'hop', group: GROUP, originPort: origin.port, node: holder, nodeArgs: prof('client') });
      return ready({
        name,
        port: entry.httpPort,
        pids: { entry: entry.proc.child.pid!, node: holder.proc.child.pid!, client: client.child.pid!, origin: origin.pid },
        reverst: [client, entry.proc, holder.proc],
      });
    }
  }
}
