import { writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { eventually } from '../test/contract/eventually.js';
import { onCleanup, spawnNode, useCleanup, tempDir } from '../test/harness/index.js';
import { silentLogger } from '../shared/log.js';
import { parseControlPlaneFlags } from './flags.js';
import { startControlPlane } from './node.js';

useCleanup();

const TOKEN = 'node-entry-token';

function groupsFile(text = 'groups:\n  a:\n    hosts: [a.test]\n'): string {
  const file = path.join(tempDir('reverst-cp-node-'), 'groups.yml');
  writeFileSync(file, text);
  return file;
}

/** One GET on its own keep-alive connection, so what the server does to the connection shows. */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; connection: string | undefined }> {
  return new Promise((resolve, reject) => {
    const agent = new http.Agent({ keepAlive: true });
    onCleanup(() => agent.destroy());
    http
      .get(url, { headers, agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }));
      })
      .on('error', reject);
  });
}

describe('the Node entry', () => {
  it('drains: waiting long-polls get 304 at once with Connection: close, /readyz turns 503, then it stops', async () => {
    const server = await startControlPlane({ groups: groupsFile(), watchGroups: false, listen: '127.0.0.1:0', apiToken: TOKEN, logger: silentLogger });
    onCleanup(() => server.stop());
    const etag = server.groups.current!.etag;
    const waiting = Array.from({ length: 5 }, () => get(`${server.url}/v1/groups?wait=60s`, { authorization: `Bearer ${TOKEN}`, 'if-none-match': etag }));
    await eventually(() => expect(server.groups.waiting).toBe(5), 10_000);
    const started = Date.now();
    const drained = server.drain();
    expect(await Promise.all(waiting)).toEqual(Array.from({ length: 5 }, () => ({ status: 304, connection: 'close' })));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(server.groups.readiness()).toEqual({ ready: false, detail: 'shutting down' });
    await drained;
    await server.closed;
  });

  it('refuses a bad groups file at start, naming file, line, column and field', async () => {
    const file = groupsFile('groups:\n  a:\n    hosts: a.test\n');
    await expect(startControlPlane({ groups: file, watchGroups: false, listen: '127.0.0.1:0', apiToken: TOKEN, logger: silentLogger })).rejects.toThrow(
      `${file}:3:12: groups."a".hosts: expected a list of hosts, got a string`,
    );
  });

  it('names --listen when its address is taken', async () => {
    const first = await startControlPlane({ groups: groupsFile(), watchGroups: false, listen: '127.0.0.1:0', apiToken: TOKEN, logger: silentLogger });
    onCleanup(() => first.stop());
    await expect(
      startControlPlane({ groups: groupsFile(), watchGroups: false, listen: `127.0.0.1:${first.address.port}`, apiToken: TOKEN, logger: silentLogger }),
    ).rejects.toThrow(`--listen: TCP 127.0.0.1:${first.address.port} is already in use: stop what holds it or pick another port (EADDRINUSE)`);
  });
});

describe('reverst control-plane flags', () => {
  it('reads flags, then REVERST_* variables, then defaults', () => {
    expect(parseControlPlaneFlags(['-g', 'g.yml', '-w', '--api-token-file', 't'], { REVERST_LISTEN: '127.0.0.1:9000' })).toEqual({
      log: 'info',
      positionals: [],
      tunnelGroups: 'g.yml',
      watchGroups: true,
      listen: '127.0.0.1:9000',
      apiTokenFile: 't',
      apiToken: undefined,
      maxWaitMs: 60_000,
      help: false,
    });
    expect(parseControlPlaneFlags([], { REVERST_API_TOKEN: 'x', REVERST_MAX_WAIT: '20s' })).toMatchObject({ apiToken: 'x', maxWaitMs: 20_000 });
  });

  it.each([
    [[], 'missing required flag: --api-token-file (or REVERST_API_TOKEN_FILE, or --api-token): nodes present this token to read the tunnel groups'],
    [['--api-token', 'a', '--api-token-file', 'f'], '--api-token and --api-token-file conflict: give the token one way (see reverst control-plane -h)'],
    [['--api-token', 'a', '--max-wait', 'soon'], '--max-wait: "soon" is not a duration (e.g. 30s, 1m0s, 250ms)'],
    [['--api-token', 'a', '--port', '1'], 'unknown flag --port (see reverst control-plane -h)'],
  ])('refuses %j in one line', (argv, message) => {
    expect(() => parseControlPlaneFlags(argv, {})).toThrow(message);
  });

  it('exits with status 2 and one line when the token file cannot be read', async () => {
    const proc = spawnNode('cli.ts', ['control-plane', '-g', groupsFile(), '--api-token-file', '/nonexistent/token', '--listen', '127.0.0.1:0']);
    expect(await proc.exited).toEqual({ code: 2, signal: null });
    expect(proc.stderr).toEqual(['reverst: --api-token-file: cannot read /nonexistent/token: ENOENT']);
  });
});
