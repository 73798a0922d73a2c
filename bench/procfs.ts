// CPU time and resident memory of other processes, read from /proc (Linux only).
import { readFileSync } from 'node:fs';

/** USER_HZ: 100 on every Linux architecture Node runs on. */
const TICKS_PER_SECOND = 100;

/** utime + stime of `pid` so far, in seconds; undefined off Linux or once the process is gone. */
export function cpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces and parentheses), from field 3 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Resident set size of `pid` in bytes (VmRSS); undefined off Linux or once the process is gone. */
export function rssBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** UDP datagrams dropped for want of receive-buffer space, machine-wide (undefined off Linux). */
export function udpReceiveBufferErrors(): number | undefined {
  try {
    const [names, values] = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('Udp:'))
      .map((line) => line.trim().split(/\s+/));
    const i = names?.indexOf('RcvbufErrors') ?? -1;
    return i > 0 && values ? Number(values[i]) : undefined;
  } catch {
    return undefined;
  }
}

/** Datagrams the kernel dropped on the UDP socket bound to 127.0.0.1:`port` (its own count, from /proc/net/udp). */
export function udpSocketDrops(port: number): number | undefined {
  try {
    const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
    const line = readFileSync('/proc/net/udp', 'utf8')
      .split('\n')
      .find((l) => l.trim().split(/\s+/)[1] === local);
    return line ? Number(line.trim().split(/\s+/).at(-1)) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds of several processes at one moment, by name. */
export type CpuSnapshot = Record<string, number | undefined>;

export function cpuSnapshot(pids: Record<string, number>): CpuSnapshot {
  return Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuSeconds(pid)]));
}

/** CPU seconds each process used between two snapshots (undefined where either is missing). */
export function cpuSince(before: CpuSnapshot, after: CpuSnapshot): CpuSnapshot {
  return Object.fromEntries(
    Object.keys(before).map((name) => {
      const a = before[name];
      const b = after[name];
      return [name, a === undefined || b === undefined ? undefined : b - a];
    }),
  );
}

/** Samples the RSS of `pid` every `everyMs` until stopped; returns the largest seen. */
export function sampleRss(pid: number, everyMs = 100): { stop(): number | undefined } {
  let max: number | undefined;
  const take = (): void => {
    const rss = rssBytes(pid);
    if (rss !== undefined && (max === undefined || rss > max)) max = rss;
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    stop() {
      clearInterval(timer);
      take();
      return max;
    },
  };
}
