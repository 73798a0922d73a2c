// `reverst http` against a real data-plane node, forwarding to a real origin. Flag parsing,
// usage and other cases that need no node are in client/http-command.test.ts.
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnNode, startHttpServer, useCleanup, type KeyPair } from '../harness/index.js';
import { runHttpCommand } from '../../client/http-command.js';
import { GROUP, startTestNode, testCerts, visit } from './helpers.js';

useCleanup();

let ca: KeyPair;
beforeAll(async () => {
  ({ ca } = await testCerts());
});

function io() {
  const out: string[] = [];
  const stop = new AbortController();
  return { out, stop, io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: () => true }, signal: stop.signal } };
}

describe('running reverst http against a node', () => {
  it('forwards requests from the tunnel to the origin and prints one line when ready', async () => {
    const origin = await startHttpServer((req, res) => res.end(`origin saw ${req.method} ${req.url} for ${req.headers.host}`));
    const t = await startTestNode({ nodeId: 'n1' });
    const { out, stop, io: streams } = io();
    const env = { REVERST_CA: ca.certPath, REVERST_SERVER_NAME: 'localhost', REVERST_USERNAME: 'user', REVERST_PASSWORD: 'pass' };
    const running = runHttpCommand([String(origin.port), '--group', GROUP, '--address', t.address], env, streams);
    try {
      await expect.poll(() => out.length, { timeout: 10_000 }).toBe(1);
      expect(out[0]).toBe(`forwarding ${GROUP} → http://localhost:${origin.port}/ via n1 (${t.address})\n`);
      const res = await visit(t.node.httpAddress.port, '/hello?x=1');
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe(`origin saw GET /hello?x=1 for localhost:${origin.port}`);
    } finally {
      stop.abort();
      await running;
    }
    // Stopped: the node no longer holds its tunnel.
    await expect.poll(() => t.node.registry.all()).toEqual([]);
  });

  it('fails with one line when the node refuses the credentials', async () => {
    const t = await startTestNode();
    const { out, io: streams } = io();
    const env = { REVERST_CA: ca.certPath, REVERST_SERVER_NAME: 'localhost', REVERST_USERNAME: 'user', REVERST_PASSWORD: 'wrong' };
    await expect(runHttpCommand(['3000', '--group', GROUP, '--address', t.address], env, streams)).rejects.toThrow(
      /^registration failed: unauthorized \(check --username\/--password or --token\)$/,
    );
    expect(out).toEqual([]);
  });
});

/** Runs a command to its end; its exit status and what it printed besides JSON log lines. */
async function run(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stderr: string[] }> {
  const proc = spawnNode(script, args, { env });
  const { code } = await proc.exited;
  return { code, stderr: proc.stderr.filter((line) => !line.startsWith('{"time":')) };
}

describe('a tunnel that can never succeed stops with one line', () => {
  it('reverst http: a server name the certificate does not carry, naming the names it holds', async () => {
    const t = await startTestNode();
    const args = ['http', '3000', '--group', GROUP, '--address', t.address, '--ca', ca.certPath, '--server-name', 'wrong.example'];
    expect(await run('cli.ts', args, { REVERST_USERNAME: 'user', REVERST_PASSWORD: 'pass' })).toEqual({
      code: 2,
      stderr: [
        `reverst: the node's certificate is not valid for the server name "wrong.example": it holds ${GROUP}, localhost, 127.0.0.1 (check --server-name)`,
      ],
    });
  });

  it('reverst http: a group the node does not know', async () => {
    const t = await startTestNode();
    const args = ['http', '3000', '--group', 'nobody', '--address', t.address, '--ca', ca.certPath, '--server-name', GROUP];
    expect(await run('cli.ts', args)).toEqual({
      code: 2,
      stderr: ['reverst: registration failed: not found (check --group, or give --retry-not-found to wait for it)'],
    });
  });

  it('the example service: the same two, one line each', async () => {
    const t = await startTestNode();
    const common = ['--address', t.address, '--ca', ca.certPath, '--username', 'user', '--password', 'pass'];
    expect(await run('examples/simple/main.ts', [...common, '--server-name', 'wrong.example'])).toEqual({
      code: 1,
      stderr: [`the node's certificate is not valid for the server name "wrong.example": it holds ${GROUP}, localhost, 127.0.0.1 (check --server-name)`],
    });
    expect(await run('examples/simple/main.ts', [...common, '--group', 'nobody'])).toEqual({
      code: 1,
      stderr: ['registration failed: not found (check --group)'],
    });
  });
});
