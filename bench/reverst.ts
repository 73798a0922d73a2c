// reverst as a user runs it, from the compiled dist/: `reverst [--standalone|cluster flags]` for a
// node and `reverst http <origin>` for a tunnel client, each a process of its own.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/harness/ports.js';
import { spawnProcess, type ProcessHandle } from '../test/harness/processes.js';
import { get, waitForHttp } from './http-probe.js';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'reverst.js');

export interface Tls {
  keyPath: string;
  certPath: string;
  caPath: string;
}

export interface ReverstNode {
  proc: ProcessHandle;
  httpPort: number;
  quicPort: number;
  managementPort: number;
}

export interface NodeSpec {
  name: string;
  serverName: string;
  groupsPath: string;
  tls: Tls;
  /** Cluster membership (redis://…); standalone when absent. */
  cluster?: { membership: string; secret: string };
  /** Node options before the script (e.g. --cpu-prof). */
  nodeArgs?: string[];
}

/** Options for node processes that write a CPU profile on exit into `dir`. */
export function profileArgs(dir: string | undefined, name: string): string[] {
  return dir ? ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-name', `${name}.cpuprofile`] : [];
}

export async function startNode(spec: NodeSpec): Promise<ReverstNode> {
  const [httpPort, quicPort, managementPort] = [await freePort('tcp'), await freePort('udp'), await freePort('tcp')];
  const args = [
    ...(spec.cluster
      ? [
          '--membership',
          spec.cluster.membership,
          '--node-id',
          spec.name,
          '--internal-address',
          `127.0.0.1:${await freePort('tcp')}`,
          '--cluster-secret',
          spec.cluster.secret,
        ]
      : ['--standalone']),
    ...['-a', `127.0.0.1:${quicPort}`, '-s', `127.0.0.1:${httpPort}`, '--management-address', `127.0.0.1:${managementPort}`],
    ...['-n', spec.serverName, '-g', spec.groupsPath, '-k', spec.tls.keyPath, '-c', spec.tls.certPath],
    // Stopping the bench's nodes need not wait for anything.
    ...['--drain-timeout', '1s'],
  ];
  const proc = spawnProcess(process.execPath, [...(spec.nodeArgs ?? []), BIN, ...args], { name: `reverst ${spec.name}` });
  await waitForHttp(httpPort, proc);
  return { proc, httpPort, quicPort, managementPort };
}

export interface ClientSpec {
  name: string;
  originPort: number;
  node: ReverstNode;
  serverName: string;
  group: string;
  tls: Tls;
  nodeArgs?: string[];
}

export async function startClient(spec: ClientSpec): Promise<ProcessHandle> {
  const args = [
    'http',
    `http://127.0.0.1:${spec.originPort}`,
    ...['--address', `127.0.0.1:${spec.node.quicPort}`, '--server-name', spec.serverName, '--ca', spec.tls.caPath, '--group', spec.group],
  ];
  const proc = spawnProcess(process.execPath, [...(spec.nodeArgs ?? []), BIN, ...args], { name: `reverst http (${spec.name})` });
  await proc.waitForLine(/^forwarding /, 20_000);
  return proc;
}

export function clusterSecret(): string {
  return randomBytes(32).toString('hex');
}

/** Active tunnels of `group` on a node, from its /metrics. */
export async function activeTunnels(node: ReverstNode, group: string): Promise<number> {
  const text = (await get(node.managementPort, '/metrics')).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`reverst_tunnel_group_active_conn{group="${group}"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
