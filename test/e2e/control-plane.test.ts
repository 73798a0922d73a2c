/**
 * Nodes following a real control plane (`reverst control-plane` as a process, killed and
 * restarted like one): changes reach them at once, an outage keeps them serving, a restart
 * catches them up, and a cache lets a node start while the control plane is down.
 */
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NotFoundError, type Tunnel, UnauthorizedError, basic, bearer, connect, type Auth, type ReconnectingEvent } from '../../client/index.js';
import { createLogger, type Logger } from '../../shared/log.js';
import { eventually } from '../contract/eventually.js';
import { freePort, onCleanup, spawnNode, useCleanup, type ProcessHandle, tempDir } from '../harness/index.js';
import { startTestNode, testCerts, visit, type TestNode } from './helpers.js';

useCleanup();

const TOKEN = 'cp-api-token';
/** Generous: a change is published and long-polled in milliseconds; a loaded 2-core machine may take far longer. */
const CHANGE_DEADLINE_MS = 10_000;
/** The node's retry backoff after an outage (≤ 10 s) plus the control plane's start. */
const CATCH_UP_DEADLINE_MS = 25_000;

const group = (name: string, auth: string) => `  "${name}":\n    hosts: ["${name}"]\n    authentication:\n${auth}`;
const basicAuth = (password: string) => `      basic: { username: "user", password: "${password}" }\n`;
const bearerAuth = (token: string) => `      bearer: { token: "${token}" }\n`;
const yaml = (...groups: string[]) => `groups:\n${groups.join('')}`;

/** A control plane process on a fixed port (so a restart is found where it was), watching its file. */
class ControlPlaneProcess {
  proc: ProcessHandle | undefined;
  readonly dir = tempDir('reverst-cp-e2e-');
  readonly file = path.join(this.dir, 'groups.yml');
  readonly tokenFile = path.join(this.dir, 'token');

  constructor(
    readonly port: number,
    config: string,
  ) {
    writeFileSync(this.file, config);
    writeFileSync(this.tokenFile, `${TOKEN}\n`);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/groups`;
  }

  async start(): Promise<void> {
    this.proc = spawnNode('cli.ts', ['control-plane', '-g', this.file, '-w', '--listen', `127.0.0.1:${this.port}`, '--api-token-file', this.tokenFile], {
      name: 'control-plane',
    });
    await this.proc.waitForLine(/"control plane ready"/, 20_000);
  }

  /** Replaces the file atomically, and waits until the control plane has published it. */
  async write(config: string): Promise<void> {
    const seen = this.proc?.output().split('"tunnel groups changed"').length ?? 0;
    writeFileSync(`${this.file}.tmp`, config);
    renameSync(`${this.file}.tmp`, this.file);
    if (this.proc?.alive) await eventually(() => expect(this.proc!.output().split('"tunnel groups changed"').length).toBeGreaterThan(seen), CHANGE_DEADLINE_MS);
  }

  async kill(): Promise<void> {
    await this.proc?.kill('SIGKILL');
  }
}

async function controlPlane(config: string): Promise<ControlPlaneProcess> {
  const cp = new ControlPlaneProcess(await freePort(), config);
  await cp.start();
  return cp;
}

/** Log lines a node wrote, parsed, for checks on what it said. */
function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, logger: createLogger({ level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } }) };
}

async function followingNode(cp: ControlPlaneProcess, extra: Parameters<typeof startTestNode>[0] = {}): Promise<TestNode> {
  return startTestNode({ groups: cp.url, watchGroups: true, controlPlaneToken: TOKEN, managementAddress: '127.0.0.1:0', ...extra });
}

async function register(t: TestNode, name: string, auth: Auth): Promise<{ tunnel: Tunnel; retries: ReconnectingEvent[] }> {
  const tunnel = await connect({
    addresses: [t.address],
    serverName: 'flipt.dev.local',
    ca: t.ca.cert,
    group: name,
    auth,
    handler: () => new Response(`hello from ${name}`),
    minDelayMs: 50,
    maxDelayMs: 200,
  });
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  const retries: ReconnectingEvent[] = [];
  tunnel.on('reconnecting', (event) => retries.push(event));
  return { tunnel, retries };
}

async function readyz(t: TestNode): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${t.node.managementAddress!.port}/readyz`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const status = async (t: TestNode, host: string) => (await visit(t.node.httpAddress.port, '/', { host })).status;

describe('a node following a control plane', () => {
  it('routes a group as soon as it is added, closes the tunnels of a removed group, and those a new password refuses', async () => {
    const cp = await controlPlane(yaml(group('a.test', basicAuth('pass'))));
    const t = await followingNode(cp);
    const a = await register(t, 'a.test', basic('user', 'pass'));
    expect((await visit(t.node.httpAddress.port, '/', { host: 'a.test' })).body.toString()).toBe('hello from a.test');
    expect(await status(t, 'b.test')).toBe(404);

    // Added: known to the node (503 until a tunnel registers) within moments, through the long-poll.
    const added = Date.now();
    await cp.write(yaml(group('a.test', basicAuth('pass')), group('b.test', bearerAuth('b-token'))));
    await eventually(async () => expect(await status(t, 'b.test')).toBe(503), CHANGE_DEADLINE_MS);
    expect(Date.now() - added).toBeLessThan(CHANGE_DEADLINE_MS);
    const b = await register(t, 'b.test', bearer('b-token'));
    expect((await visit(t.node.httpAddress.port, '/', { host: 'b.test' })).body.toString()).toBe('hello from b.test');

    // Removed: its tunnel is closed with "not found" and the host is unknown again.
    await cp.write(yaml(group('a.test', basicAuth('pass'))));
    expect(await b.tunnel.closed).toBeInstanceOf(NotFoundError);
    expect(await status(t, 'b.test')).toBe(404);

    // A new password: the tunnel that registered with the old one is closed as unauthorized.
    await cp.write(yaml(group('a.test', basicAuth('new-pass'))));
    expect(await a.tunnel.closed).toBeInstanceOf(UnauthorizedError);
    expect(await status(t, 'a.test')).toBe(503);
    await register(t, 'a.test', basic('user', 'new-pass'));
    expect(await status(t, 'a.test')).toBe(200);
  });

  it('keeps serving while the control plane is down, says so, and catches up when it is back', async () => {
    const cp = await controlPlane(yaml(group('a.test', basicAuth('pass'))));
    const { logger, lines } = capturingLogger();
    const t = await followingNode(cp, { logger });
    await register(t, 'a.test', basic('user', 'pass'));
    expect((await readyz(t)).body.groupsSource).toBe(`following ${cp.url}`);

    await cp.kill();
    await eventually(async () => {
      const r = await readyz(t);
      expect(r.status).toBe(200);
      expect(r.body.groupsSource).toMatch(new RegExp(`^keeping the last config; control plane unreachable since \\S+: control plane ${cp.url} unreachable: `));
    }, CHANGE_DEADLINE_MS);
    expect(await status(t, 'a.test')).toBe(200);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'error',
        msg: 'tunnel groups reload failed; keeping the last good config',
        error: expect.stringContaining('unreachable'),
      }),
    );

    // Changed while it was down; the node sees it once the control plane is back.
    writeFileSync(cp.file, yaml(group('a.test', basicAuth('pass')), group('c.test', bearerAuth('c-token'))));
    await cp.start();
    await eventually(async () => expect(await status(t, 'c.test')).toBe(503), CATCH_UP_DEADLINE_MS);
    expect(await status(t, 'a.test')).toBe(200);
    expect((await readyz(t)).body.groupsSource).toBe(`following ${cp.url}`);
    expect(lines).toContainEqual(expect.objectContaining({ level: 'info', msg: 'control plane reachable again' }));
  });

  it('with --groups-cache, starts from the last config while the control plane is down, then follows it again', async () => {
    const cache = path.join(tempDir('reverst-cache-'), 'nested', 'groups-cache.json');
    const cp = await controlPlane(yaml(group('a.test', basicAuth('pass'))));
    const first = await followingNode(cp, { groupsCache: cache });
    await first.node.stop();
    await cp.kill();

    const { logger, lines } = capturingLogger();
    const t = await followingNode(cp, { groupsCache: cache, logger });
    expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: 'control plane unreachable: starting from the cached tunnel groups', cache }));
    const r = await readyz(t);
    expect(r.status).toBe(200);
    expect(r.body.groupsSource).toMatch(new RegExp(`^from the cache ${cache.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(saved `));
    // The cached password hash checks a registration like the live config would.
    await expect(register(t, 'a.test', basic('user', 'wrong'))).rejects.toBeInstanceOf(UnauthorizedError);
    await register(t, 'a.test', basic('user', 'pass'));
    expect(await status(t, 'a.test')).toBe(200);

    await cp.start();
    await eventually(async () => expect((await readyz(t)).body.groupsSource).toBe(`following ${cp.url}`), CATCH_UP_DEADLINE_MS);
  });

  it('starts without any config when the control plane was never reached, is not ready and says why, then serves once it answers', async () => {
    const cp = new ControlPlaneProcess(await freePort(), yaml(group('a.test', basicAuth('pass'))));
    const t = await followingNode(cp);
    const r = await readyz(t);
    expect(r.status).toBe(503);
    expect(r.body).toMatchObject({ ready: false, status: 'waiting for tunnel groups' });
    expect(r.body.groupsSource).toMatch(
      new RegExp(`^no tunnel groups yet: control plane unreachable since \\S+: control plane ${cp.url} unreachable: connect ECONNREFUSED`),
    );
    expect(await status(t, 'a.test')).toBe(404);

    await cp.start();
    await eventually(async () => expect((await readyz(t)).status).toBe(200), CATCH_UP_DEADLINE_MS);
    await register(t, 'a.test', basic('user', 'pass'));
    expect(await status(t, 'a.test')).toBe(200);
  });

  it('refuses to start, in one line, without -w and without a cache while the control plane is down, and with a wrong token', async () => {
    const down = new ControlPlaneProcess(await freePort(), yaml());
    await expect(startTestNode({ groups: down.url, controlPlaneToken: TOKEN })).rejects.toThrow(
      new RegExp(
        `^control plane ${down.url} unreachable: connect ECONNREFUSED 127\\.0\\.0\\.1:\\d+ \\(give --groups-cache FILE to start from the last config next time\\); with -w the node would start and wait for it$`,
      ),
    );
    const cp = await controlPlane(yaml());
    await expect(startTestNode({ groups: cp.url, watchGroups: true, controlPlaneToken: 'wrong' })).rejects.toThrow(
      `control plane ${cp.url} refused this node (401): check --control-plane-token-file against its API token`,
    );
    await expect(startTestNode({ groups: cp.url, watchGroups: true })).rejects.toThrow(
      `control plane ${cp.url} refused this node (401): give --control-plane-token-file`,
    );
  });

  it('lets the control plane decide registrations of groups whose external endpoint is its /v1/auth/external', async () => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}/v1/auth/external`;
    const central = `      external:\n        endpoint: "${endpoint}"\n        accept:\n          tokens: ["central-token"]\n`;
    const cp = new ControlPlaneProcess(port, yaml(group('central.test', central)));
    await cp.start();
    const t = await followingNode(cp);
    await expect(register(t, 'central.test', bearer('other-token'))).rejects.toBeInstanceOf(UnauthorizedError);
    await register(t, 'central.test', bearer('central-token'));
    expect(await status(t, 'central.test')).toBe(200);
  });
});

describe('reverst control-plane and reverst, as processes', () => {
  it('serve a tunnel end to end from the control plane config', async () => {
    const cp = await controlPlane(yaml(group('flipt.dev.local', basicAuth('pass'))));
    const { ca, server } = await testCerts();
    // Ports picked by the node itself (read back from its "node ready" line): no race with other processes.
    const node = spawnNode('cli.ts', ['-n', 'flipt.dev.local', '-k', server.keyPath, '-c', server.certPath, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0'], {
      env: { REVERST_TUNNEL_GROUPS: cp.url, REVERST_WATCH_GROUPS: 'true', REVERST_CONTROL_PLANE_TOKEN_FILE: cp.tokenFile },
      name: 'node',
    });
    const [, quicPort, httpPort] = await node.waitForLine(/"node ready".*"tunnelAddress":"127\.0\.0\.1:(\d+)","httpAddress":"127\.0\.0\.1:(\d+)"/, 20_000);
    const example = spawnNode('examples/simple/main.ts', [
      '--address',
      `127.0.0.1:${quicPort}`,
      '--ca',
      ca.certPath,
      '--username',
      'user',
      '--password',
      'pass',
    ]);
    await example.waitForLine(/tunnel ready/, 20_000);
    const res = await visit(Number(httpPort), '/foo');
    expect([res.status, res.body.toString()]).toEqual([200, 'PONG']);
  });
});
