import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { basic, connect, type ConnectOptions, type Tunnel } from '../../client/index.js';
import { makeCa, makeServerCert, onCleanup, tempDir, type KeyPair } from '../harness/index.js';
import { startNode, type DataPlaneNode, type NodeOptions } from '../../data-plane/node.js';
import { createLogger, silentLogger, type Logger } from '../../shared/log.js';

export const GROUP = 'flipt.dev.local';

export const BASIC_GROUP_YAML = `groups:
  "${GROUP}":
    hosts:
    - "${GROUP}"
    authentication:
      basic:
        username: "user"
        password: "pass"
`;

export interface TestNode {
  node: DataPlaneNode;
  ca: KeyPair;
  server: KeyPair;
  groupsPath: string;
  /** `127.0.0.1:<port>` of the QUIC listener, as clients dial it. */
  address: string;
}

export async function testCerts(): Promise<{ ca: KeyPair; server: KeyPair }> {
  const ca = await makeCa();
  return { ca, server: await makeServerCert(ca, { names: [GROUP, 'localhost', '127.0.0.1'] }) };
}

/** `yaml` as groups.yml in `dir` (by default a new directory removed with the current cleanup scope). */
export function writeGroups(yaml: string, dir = tempDir('reverst-groups-')): string {
  const file = path.join(dir, 'groups.yml');
  writeFileSync(file, yaml);
  return file;
}

/** The flags of a node process on 127.0.0.1 with the test certificate, `groupsPath` and these ports. */
export function nodeArgs(o: { certs: { server: KeyPair }; groupsPath: string; quicPort: number; httpPort: number; managementPort: number }): string[] {
  const at = (port: number) => `127.0.0.1:${port}`;
  return [
    ...['-n', GROUP, '-k', o.certs.server.keyPath, '-c', o.certs.server.certPath, '-g', o.groupsPath],
    ...['-a', at(o.quicPort), '-s', at(o.httpPort), '--management-address', at(o.managementPort)],
  ];
}

/** A data-plane node in this process on free ports, stopped with the current cleanup scope. */
export async function startTestNode(options: Partial<NodeOptions> & { groupsYaml?: string } = {}): Promise<TestNode> {
  const { ca, server } = await testCerts();
  const groupsPath = typeof options.groups === 'string' ? options.groups : writeGroups(options.groupsYaml ?? BASIC_GROUP_YAML);
  const node = await startNode({
    tunnelAddress: '127.0.0.1:0',
    httpAddress: '127.0.0.1:0',
    serverName: GROUP,
    key: server.key,
    cert: server.cert,
    groups: groupsPath,
    watchGroups: false,
    maxIdleTimeoutMs: 60_000,
    keepAlivePeriodMs: 30_000,
    requestTimeoutMs: 30_000,
    maxHeaderSize: 16_384,
    logger: process.env.REVERST_TEST_LOG ? createLogger({ level: process.env.REVERST_TEST_LOG }) : silentLogger,
    ...options,
  });
  onCleanup(() => node.stop());
  return { node, ca, server, groupsPath, address: `127.0.0.1:${node.tunnelAddress.port}` };
}

/** Options for a client of `t`'s group with BASIC_GROUP_YAML's credentials, answering PONG unless `extra` says otherwise. */
export function clientOptions(t: TestNode, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return {
    addresses: [t.address],
    serverName: GROUP,
    ca: t.ca.cert,
    group: GROUP,
    auth: basic('user', 'pass'),
    handler: () => new Response('PONG'),
    ...extra,
  };
}

/** A client registered with clientOptions(t, extra), closed with the current cleanup scope. */
export async function connectClient(t: TestNode, extra: Partial<ConnectOptions> = {}): Promise<Tunnel> {
  const tunnel = await connect(clientOptions(t, extra));
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

export interface Visit {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One public HTTP request to a node, with the Host header that routes it. */
export function visit(
  port: number,
  urlPath: string,
  options: { host?: string; method?: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string; timeoutMs?: number } = {},
): Promise<Visit> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: urlPath, method: options.method ?? 'GET', agent, headers: { host: options.host ?? GROUP, ...options.headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.timeoutMs) req.setTimeout(options.timeoutMs, () => req.destroy(new Error('timeout')));
    req.end(options.body);
  });
}

export interface CapturedLogs {
  logger: Logger;
  /** Every line logged so far, parsed. */
  readonly lines: Array<Record<string, unknown>>;
  /** The first line (logged already or to come) whose `msg` matches; rejects after `timeoutMs`. */
  waitFor(msg: RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
}

/** A debug logger that keeps its lines, so a test can wait for what the node says instead of sleeping. */
export function captureLogs(): CapturedLogs {
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<(line: Record<string, unknown>) => void>();
  const logger = createLogger({
    level: 'debug',
    stream: {
      write: (text: string) => {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        for (const waiter of [...waiters]) waiter(line);
      },
    },
  });
  const waitFor = (msg: RegExp, timeoutMs = 10_000): Promise<Record<string, unknown>> => {
    const seen = lines.find((l) => msg.test(String(l.msg)));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = (line: Record<string, unknown>) => {
        if (!msg.test(String(line.msg))) return;
        waiters.delete(waiter);
        clearTimeout(timer);
        resolve(line);
      };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`no log line matching ${msg} within ${timeoutMs} ms; got:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      waiters.add(waiter);
    });
  };
  return { logger, lines, waitFor };
}
