// Targets (issue 10), ratios and the printed table, from the figures bench/scenarios.ts took.
import type { BenchOptions } from './options.js';
import type { BulkRow, LoadRow, MemoryResult, StormResult } from './scenarios.js';

export interface Results {
  load: LoadRow[];
  bulk: BulkRow[];
  memory?: MemoryResult | undefined;
  storm?: StormResult | undefined;
}

export interface Target {
  name: string;
  goal: string;
  value: string;
  pass: boolean;
}

const KB = 1024;
const MiB = 1024 * 1024;
const fixed = (n: number | undefined, digits = 1): string => (n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : '–');
const count = (n: number | undefined): string => (n !== undefined && Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const times = (n: number | undefined): string => (n !== undefined && Number.isFinite(n) ? `${n.toFixed(2)}×` : '–');
const ms = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '–' : n < 10 ? n.toFixed(2) : n.toFixed(1));

function loadOf(r: Results, setup: string, connections: number): LoadRow | undefined {
  return r.load.find((l) => l.setup === setup && l.connections === connections);
}
function bulkOf(r: Results, setup: string, kind: 'download' | 'upload'): BulkRow | undefined {
  return r.bulk.find((b) => b.setup === setup && b.kind === kind);
}
const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a === undefined || b === undefined ? undefined : a / b);

/** Node + client CPU per MB of one reverst transfer. */
function tunnelCpuPerMb(b: BulkRow | undefined): number | undefined {
  const { node, client } = b?.cpuMsPerMb ?? {};
  return node === undefined || client === undefined ? undefined : node + client;
}

export function targets(r: Results, o: BenchOptions): Target[] {
  const list: Target[] = [];
  const add = (name: string, goal: string, value: string, pass: boolean | undefined): void => {
    if (pass !== undefined) list.push({ name, goal, value, pass });
  };
  const check = (v: number | undefined, ok: (v: number) => boolean): boolean | undefined => (v === undefined || !Number.isFinite(v) ? undefined : ok(v));

  const c100 = loadOf(r, 'reverst', 100);
  const vsNode = ratio(c100?.requestsPerSecond, loadOf(r, 'node-proxy', 100)?.requestsPerSecond);
  const vsNginx = ratio(c100?.requestsPerSecond, loadOf(r, 'nginx-proxy', 100)?.requestsPerSecond);
  add(
    '1 KB c=100 ÷ Node one-hop proxy',
    '≥ 0.70×',
    times(vsNode),
    check(vsNode, (v) => v >= 0.7),
  );
  add(
    '1 KB c=100 ÷ nginx one-hop proxy',
    '≥ 0.35×',
    times(vsNginx),
    check(vsNginx, (v) => v >= 0.35),
  );
  add(
    '1 KB c=100 p99',
    '≤ 20 ms',
    `${ms(c100?.p99Ms)} ms`,
    check(c100?.p99Ms, (v) => v <= 20),
  );
  const c1 = loadOf(r, 'reverst', 1);
  const added = c1 && loadOf(r, 'direct', 1) ? c1.p50Ms - loadOf(r, 'direct', 1)!.p50Ms : undefined;
  add(
    '1 KB c=1 p50 added to direct',
    '≤ 0.30 ms',
    `${ms(added)} ms`,
    check(added, (v) => v <= 0.3),
  );
  for (const kind of ['download', 'upload'] as const) {
    const b = bulkOf(r, 'reverst', kind);
    const label = kind === 'download' ? '10 MB download' : '100 MB upload';
    add(
      label,
      '≥ 100 MB/s',
      `${fixed(b?.median)} MB/s`,
      check(b?.median, (v) => v >= 100),
    );
    const cpu = tunnelCpuPerMb(b);
    add(
      `${label}: node + client CPU per MB`,
      '≤ 12 ms',
      `${fixed(cpu)} ms`,
      check(cpu, (v) => v <= 12),
    );
  }
  const hop100 = ratio(loadOf(r, 'reverst-hop', 100)?.requestsPerSecond, c100?.requestsPerSecond);
  add(
    'cross-node ÷ one node, 1 KB c=100',
    '≥ 0.75×',
    times(hop100),
    check(hop100, (v) => v >= 0.75),
  );
  for (const kind of ['download', 'upload'] as const) {
    const hop = ratio(bulkOf(r, 'reverst-hop', kind)?.median, bulkOf(r, 'reverst', kind)?.median);
    add(
      `cross-node ÷ one node, ${kind}`,
      '≥ 0.75×',
      times(hop),
      check(hop, (v) => v >= 0.75),
    );
  }
  const errors = r.load.filter((l) => l.setup.startsWith('reverst')).reduce((n, l) => n + l.errors + l.non2xx, 0);
  const bulkFailures = r.bulk.filter((b) => b.setup.startsWith('reverst')).reduce((n, b) => n + b.failures, 0);
  if (r.load.length + r.bulk.length > 0)
    add('reverst: errors, timeouts, non-2xx, failed transfers', '0', String(errors + bulkFailures), errors + bulkFailures === 0);

  const m = r.memory;
  if (m) {
    add(
      'idle node RSS',
      '≤ 60 MB',
      `${fixed((m.nodeIdleRss ?? NaN) / MiB)} MiB`,
      check(m.nodeIdleRss, (v) => v <= 60 * MiB),
    );
    add(
      `node memory per idle tunnel (${count(m.idleTunnels)})`,
      '≤ 25 KB',
      `${fixed((m.nodeBytesPerTunnel ?? NaN) / KB)} KiB`,
      check(m.nodeBytesPerTunnel, (v) => v <= 25 * KB),
    );
  }
  add(
    'node RSS under 1 KB c=100',
    '≤ 120 MB',
    `${fixed((c100?.nodeRssMax ?? NaN) / MiB)} MiB`,
    check(c100?.nodeRssMax, (v) => v <= 120 * MiB),
  );
  const s = r.storm;
  if (s) {
    const allIn = s.registered === s.tunnels;
    add(`storm: ${count(s.tunnels)} tunnels registered`, 'all within 30 s', `${count(s.registered)} in ${fixed(s.seconds)} s`, allIn && s.seconds <= 30);
    add('storm: dials retried or given up', '0', `${count(s.retries)} retries, ${count(s.gaveUp)} gave up`, s.retries === 0 && s.gaveUp === 0);
    add(
      'storm: closed connection freed',
      '≤ 1 s',
      s.freedMs === undefined ? 'not within 40 s' : `${ms(s.freedMs)} ms`,
      s.freedMs !== undefined && s.freedMs <= 1000,
    );
  }
  void o;
  return list;
}

function grid(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  const line = (row: string[]): string =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export function targetTable(list: Target[]): string {
  return grid([['', 'target', 'measured', 'goal'], ...list.map((t) => [t.pass ? 'PASS' : 'MISS', t.name, t.value, t.goal])]);
}

/** Rows: setups; columns: scenarios. reverst's cells carry their ratio to the Node proxy. */
export function figureTable(r: Results, o: BenchOptions, setups: string[]): string {
  const header = ['setup', ...o.connections.map((c) => `1 KB c=${c} req/s (p50 / p99 ms)`), '10 MB down MB/s', '100 MB up MB/s'];
  const rows = [header];
  for (const setup of setups) {
    const row = [setup];
    for (const c of o.connections) {
      const l = loadOf(r, setup, c);
      const base = setup.startsWith('reverst') ? loadOf(r, 'node-proxy', c) : undefined;
      const rel = base && l ? ` ${times(l.requestsPerSecond / base.requestsPerSecond)}` : '';
      row.push(l ? `${count(l.requestsPerSecond)}${rel} (${ms(l.p50Ms)} / ${ms(l.p99Ms)})` : '');
    }
    for (const kind of ['download', 'upload'] as const) {
      const b = bulkOf(r, setup, kind);
      const base = setup.startsWith('reverst') ? bulkOf(r, 'node-proxy', kind) : undefined;
      const rel = base && b ? ` ${times(b.median / base.median)}` : '';
      row.push(b ? `${fixed(b.median)}${rel}` : '');
    }
    rows.push(row);
  }
  return grid(rows);
}

/** CPU milliseconds per request (c=100) and per MB, per process role. */
export function cpuTable(r: Results, setups: string[]): string {
  const rows = [['setup', 'process', 'ms CPU / request (c=100)', 'ms CPU / MB down', 'ms CPU / MB up']];
  for (const setup of setups) {
    const l = loadOf(r, setup, 100);
    const roles = Object.keys(l?.cpuMsPerRequest ?? bulkOf(r, setup, 'download')?.cpuMsPerMb ?? {});
    for (const role of roles) {
      rows.push([
        setup,
        role,
        fixed(l?.cpuMsPerRequest[role], 3),
        fixed(bulkOf(r, setup, 'download')?.cpuMsPerMb[role], 2),
        fixed(bulkOf(r, setup, 'upload')?.cpuMsPerMb[role], 2),
      ]);
    }
  }
  return grid(rows);
}

export function memoryLines(r: Results): string[] {
  const lines: string[] = [];
  const m = r.memory;
  if (m) {
    lines.push(
      `memory: idle node ${fixed((m.nodeIdleRss ?? NaN) / MiB)} MiB RSS; with ${count(m.registered)} idle tunnels ${fixed((m.nodeWithTunnelsRss ?? NaN) / MiB)} MiB ` +
        `(${fixed((m.nodeBytesPerTunnel ?? NaN) / KB)} KiB per tunnel on the node, ${fixed(m.clientBytesPerTunnel / KB)} KiB per tunnel in the client library)`,
    );
  }
  const c100 = loadOf(r, 'reverst', 100);
  if (c100?.nodeRssMax) lines.push(`memory: node RSS at most ${fixed(c100.nodeRssMax / MiB)} MiB during 1 KB c=100`);
  const s = r.storm;
  if (s) {
    const errors = Object.entries(s.errors)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .map(([e, n]) => `${n}× ${e}`);
    lines.push(
      `storm: ${count(s.tunnels)} tunnels dialled one node at once: ${count(s.registered)} registered in ${fixed(s.seconds)} s, ` +
        `${count(s.retries)} retries (${count(s.tunnelsRetried)} tunnels), ${count(s.gaveUp)} never registered; node counted ${count(s.nodeCount)}; ` +
        `${count(s.udpReceiveBufferDrops)} datagrams dropped by full socket buffers (${count(s.nodeSocketDrops)} at the node); ` +
        `CPU: node ${fixed(s.cpuSeconds.node)} s, clients ${fixed(s.cpuSeconds.clients)} s; node RSS ${fixed((s.nodeRss ?? NaN) / MiB)} MiB; ${s.closed} closed by their clients left the node's count in ${s.freedMs === undefined ? '> 40 s' : `${ms(s.freedMs)} ms`}`,
    );
    if (errors.length > 0) lines.push(`storm: retry causes: ${errors.join('; ')}`);
  }
  return lines;
}

/** reverst's figures against an earlier run's (its JSON): what changed between two commits, each measured with its same-run baselines. */
export function compareTable(now: Results, before: Results): string {
  const rows = [['measurement', 'before', 'now', 'now ÷ before']];
  const add = (name: string, b: number | undefined, n: number | undefined, format: (v: number | undefined) => string): void => {
    if (b === undefined && n === undefined) return;
    rows.push([name, format(b), format(n), times(ratio(n, b))]);
  };
  const rate = (v: number | undefined) => (v === undefined ? '–' : count(v));
  const msf = (v: number | undefined) => (v === undefined ? '–' : `${ms(v)} ms`);
  for (const setup of ['node-proxy', 'reverst', 'reverst-hop']) {
    for (const c of [1, 10, 100]) {
      const b = loadOf(before, setup, c);
      const n = loadOf(now, setup, c);
      add(`${setup} 1 KB c=${c} req/s`, b?.requestsPerSecond, n?.requestsPerSecond, rate);
      if (setup !== 'node-proxy') add(`${setup} 1 KB c=${c} p99`, b?.p99Ms, n?.p99Ms, msf);
    }
    for (const kind of ['download', 'upload'] as const) {
      add(`${setup} ${kind} MB/s`, bulkOf(before, setup, kind)?.median, bulkOf(now, setup, kind)?.median, (v) => fixed(v));
      if (setup === 'reverst')
        add(`${setup} ${kind} node + client ms CPU / MB`, tunnelCpuPerMb(bulkOf(before, setup, kind)), tunnelCpuPerMb(bulkOf(now, setup, kind)), (v) =>
          fixed(v),
        );
    }
  }
  const mib = (v: number | undefined) => (v === undefined ? '–' : `${fixed(v / MiB)} MiB`);
  const kib = (v: number | undefined) => (v === undefined ? '–' : `${fixed(v / KB)} KiB`);
  add('idle node RSS', before.memory?.nodeIdleRss, now.memory?.nodeIdleRss, mib);
  add('node memory per idle tunnel', before.memory?.nodeBytesPerTunnel, now.memory?.nodeBytesPerTunnel, kib);
  add('node RSS under 1 KB c=100', loadOf(before, 'reverst', 100)?.nodeRssMax, loadOf(now, 'reverst', 100)?.nodeRssMax, mib);
  add('storm: seconds until all registered', before.storm?.seconds, now.storm?.seconds, (v) => fixed(v));
  add('storm: retries', before.storm?.retries, now.storm?.retries, rate);
  add('storm: closed connection freed', before.storm?.freedMs, now.storm?.freedMs, msf);
  return grid(rows);
}

export function failureLines(r: Results): string[] {
  const lines: string[] = [];
  for (const l of r.load) {
    if (l.errors + l.non2xx > 0) lines.push(`${l.setup} c=${l.connections}: ${l.non2xx} non-2xx, ${l.errors} errors/timeouts`);
  }
  for (const b of r.bulk) if (b.failures > 0) lines.push(`${b.setup} ${b.kind}: ${b.failures} failed, first: ${b.firstError}`);
  return lines;
}
