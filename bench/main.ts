// `npm run bench`: reverst as a user runs it (a node and `reverst http`, each a process, from the
// compiled dist/) against a direct origin, an nginx one-hop proxy and a plain Node one-hop proxy
// (node:http + undici Pool), all in the same run, with wrk (or autocannon) and curl in processes of
// their own. Prints the targets of issue 10 with ratios first, then the figures, and writes them
// as JSON to bench-results/bench-<time>.json. Targets are informative: the exit code is non-zero
// only when the run itself failed. See `npm run bench -- --help`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBinary } from '../test/harness/binaries.js';
import { makeCa, makeServerCert } from '../test/harness/certs.js';
import { onCleanup, runCleanups } from '../test/harness/cleanup.js';
import { curlTransfer, nodeTransfer } from './bulk.js';
import { autocannonGenerator, wrkGenerator } from './load.js';
import { parseBenchOptions, SETUPS, USAGE, type BenchOptions } from './options.js';
import { compareTable, cpuTable, failureLines, figureTable, memoryLines, targets, targetTable, type Results } from './report.js';
import { profileArgs, ROOT, type Tls } from './reverst.js';
import { bulkRun, loadRun, memoryRun, stormRun } from './scenarios.js';
import { GROUP, makeSite, startOrigin, startSetup, type Setup, type Tools } from './setups.js';

const RESULTS_DIR = path.join(ROOT, 'bench-results');
/** After the run, anything still holding the event loop is a leak: report it and exit anyway. */
const EXIT_GRACE_MS = 5_000;

function tool(name: string): string | undefined {
  try {
    return findBinary(name);
  } catch {
    return undefined;
  }
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

/** Where the origin's files go: tmpfs when there is one, so uploads measure the network path, not a disk. */
function scratchDir(): string {
  const base = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const dir = mkdtempSync(path.join(base, 'reverst-bench-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function say(text: string): void {
  process.stderr.write(`${text}\n`);
}

async function stopReverst(setups: Setup[]): Promise<void> {
  // SIGTERM, so that --cpu-prof writes its profile; the harness's SIGKILL cleanup follows anyway.
  await Promise.all(
    setups.flatMap((s) =>
      s.reverst.map(async (p) => {
        const timer = setTimeout(() => void p.kill('SIGKILL'), 10_000);
        await p.kill('SIGTERM');
        clearTimeout(timer);
      }),
    ),
  );
}

async function run(o: BenchOptions): Promise<void> {
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const tools: Tools = { nginx: tool('nginx'), wrk: tool('wrk'), curl: tool('curl'), redis: tool('redis-server') };
  const notes: string[] = [];
  if (!tools.nginx) notes.push('nginx not installed: the origin is node:http (bench/node-origin.ts) and there is no nginx proxy row');
  if (!tools.wrk) notes.push('wrk not installed: autocannon generates the load (its own CPU use caps high figures)');
  if (!tools.curl) notes.push('curl not installed: transfers run on node:http in the orchestrating process');
  const generate = tools.wrk ? wrkGenerator(tools.wrk) : autocannonGenerator;
  const transfer = tools.curl ? curlTransfer(tools.curl) : nodeTransfer;
  say(
    `reverst benchmark${o.quick ? ' (quick)' : ''}: load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  for (const n of notes) say(`  note: ${n}`);

  if (!existsSync(path.join(ROOT, 'dist', 'cli.js'))) throw new Error('dist/ is missing: run npm run build first (npm run bench does)');
  const dir = scratchDir();
  const ca = await makeCa('reverst bench CA');
  const leaf = await makeServerCert(ca, { names: [GROUP, 'localhost', '127.0.0.1'] });
  const tls: Tls = { keyPath: leaf.keyPath, certPath: leaf.certPath, caPath: ca.certPath };
  const groupsPath = path.join(dir, 'groups.yml');
  writeFileSync(groupsPath, `groups:\n  "${GROUP}":\n    hosts:\n    - "${GROUP}"\n`);
  const profileDir = o.profile ? path.join(RESULTS_DIR, `profiles-${stamp}`) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });

  const results: Results = { load: [], bulk: [] };
  const skipped: string[] = [];
  const setups: Setup[] = [];
  const wantsTraffic = o.scenarios.has('load') || o.scenarios.has('bulk');
  try {
    if (wantsTraffic) {
      const site = makeSite(dir);
      const origin = await startOrigin(tools, site);
      say(`  origin: ${origin.kind} on ${origin.port}`);
      for (const name of SETUPS) {
        if (!o.setups.has(name)) continue;
        const setup = await startSetup(name, { tools, site, origin, tls, groupsPath, profileDir, skipped });
        if (setup) setups.push(setup);
      }
      for (const s of skipped) say(`  skipped: ${s}`);
      if (o.scenarios.has('load')) {
        // Setups alternate within each concurrency, so a change in the machine's load touches all alike.
        for (const c of o.connections) {
          for (const setup of setups) {
            say(`  1 KB, c=${c}, ${setup.name}`);
            results.load.push(await loadRun(setup, c, o, generate));
          }
        }
      }
      if (o.scenarios.has('bulk')) {
        for (const kind of ['download', 'upload'] as const) {
          for (const setup of setups) {
            say(`  ${kind}, ${setup.name}`);
            results.bulk.push(await bulkRun(setup, kind, o, transfer, site));
          }
        }
      }
      await stopReverst(setups);
    }
    const fresh = { serverName: GROUP, groupsPath, tls };
    if (o.scenarios.has('memory')) {
      say(`  memory: idle node, then ${o.idleTunnels} idle tunnels`);
      results.memory = await memoryRun({ ...fresh, name: 'idle', nodeArgs: profileArgs(profileDir, 'idle-node') }, o, profileDir);
    }
    if (o.scenarios.has('storm')) {
      say(`  storm: ${o.stormTunnels} tunnels dialling one node at once`);
      results.storm = await stormRun({ ...fresh, name: 'storm', nodeArgs: profileArgs(profileDir, 'storm-node') }, o, profileDir);
    }
  } finally {
    await stopReverst(setups);
  }

  const list = targets(results, o);
  const names = setups.map((s) => s.name);
  const failures = failureLines(results);
  const text = [
    targetTable(list),
    '',
    ...(results.load.length + results.bulk.length > 0
      ? [
          figureTable(results, o, names),
          '  req/s count 2xx answers; reverst rows show their ratio to node-proxy after the figure.',
          `  ${tools.wrk ? 'wrk -t1' : 'autocannon'}: ${o.warmupSeconds} s untimed, then ${o.loadSeconds} s measured; transfers: ${tools.curl ? 'curl' : 'node:http'}, one at a time, the median of ${o.bulkRuns.download.repetitions} downloads and ${o.bulkRuns.upload.repetitions} uploads after untimed ones.`,
          '',
          cpuTable(results, names),
          '',
        ]
      : []),
    ...memoryLines(results),
    ...(o.compare ? ['', `against ${o.compare}:`, compareTable(results, (JSON.parse(readFileSync(o.compare, 'utf8')) as { results: Results }).results)] : []),
    ...(failures.length > 0 ? ['', 'failures:', ...failures.map((f) => `  ${f}`)] : []),
    ...(notes.length + skipped.length > 0 ? ['', ...notes.map((n) => `note: ${n}`), ...skipped.map((s) => `skipped: ${s}`)] : []),
  ].join('\n');
  console.log(`\n${text}\n`);

  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `bench-${stamp}.json`);
  const report = {
    startedAt: started.toISOString(),
    seconds: (Date.now() - started.getTime()) / 1000,
    environment: { node: process.version, cpus: os.cpus().length, loadAverageAfter: os.loadavg(), commit: gitCommit() },
    tools: { origin: tools.nginx ? 'nginx' : 'node', loadGenerator: tools.wrk ? 'wrk' : 'autocannon', transfers: tools.curl ? 'curl' : 'node:http' },
    notes,
    skipped,
    options: { ...o, scenarios: [...o.scenarios], setups: [...o.setups] },
    targets: list,
    results,
    ...(profileDir ? { profiles: profileDir } : {}),
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`written to ${path.relative(process.cwd(), file)}${profileDir ? `; CPU profiles in ${path.relative(process.cwd(), profileDir)}` : ''}`);
}

try {
  const options = parseBenchOptions(process.argv.slice(2));
  if (options === 'help') process.stdout.write(USAGE);
  else await run(options);
} catch (err) {
  console.error('benchmark failed:', err);
  process.exitCode = 1;
} finally {
  await runCleanups();
  setTimeout(() => {
    const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles().map((h) => h.constructor.name);
    console.error(`benchmark: still running ${EXIT_GRACE_MS / 1000} s after cleanup (a handle leaked: ${handles.join(', ')}); exiting`);
    process.exit(1);
  }, EXIT_GRACE_MS).unref();
}
