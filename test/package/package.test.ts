// The package as users get it: `npm pack`, installed into a fresh project, used from plain
// `node` (no tsx) and compiled against with a strict tsconfig. Nothing here reads the sources.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import { beforeAll, describe, expect, it } from 'vitest';
import { makeCa, makeServerCert, onCleanup, spawnProcess, useCleanup } from '../harness/index.js';

useCleanup();

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GROUP = 'flipt.dev.local';

let tarball: string;
let files: string[];
let app: string;

beforeAll(async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reverst-package-'));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  // `npm pack` runs `prepare`, which builds dist/ as `npm install` of the repo does.
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: repo, maxBuffer: 16 << 20 });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = path.join(dir, packed!.filename);
  files = packed!.files.map((f) => f.path);

  app = path.join(dir, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  // The registry is reachable and the npm cache warm: this takes seconds.
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, '@types/node@20'], { cwd: app, maxBuffer: 16 << 20 });
});

/**
 * Compiles `source` as `<name>.ts` in the installed app with the strictest settings a user may
 * have (the ones our own tsconfig uses); resolves with tsc's output, empty when it passes.
 */
async function compileStrict(name: string, source: string): Promise<{ ok: boolean; output: string }> {
  writeFileSync(path.join(app, `${name}.ts`), source);
  writeFileSync(
    path.join(app, `tsconfig.${name}.json`),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noUncheckedIndexedAccess: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: false,
        noEmit: true,
        types: ['node'],
      },
      files: [`${name}.ts`],
    }),
  );
  const tsc = path.join(repo, 'node_modules/.bin/tsc');
  return run(tsc, ['-p', `tsconfig.${name}.json`], { cwd: app }).then(
    () => ({ ok: true, output: '' }),
    (err: { stdout?: string; stderr?: string }) => ({ ok: false, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
  );
}

describe('the packed tarball', () => {
  it('ships the compiled library, its types and the command, and nothing else', () => {
    expect(files).toEqual(
      expect.arrayContaining(['package.json', 'README.md', 'bin/reverst.js', 'dist/cli.js', 'dist/client/index.js', 'dist/client/index.d.ts']),
    );
    const unwanted = files.filter((f) => /(^|\/)(test|tests|bench|examples|scripts|\.ci)\/|\.test\.|\.(ts|key|pem|crt)$/.test(f) && !f.endsWith('.d.ts'));
    expect(unwanted).toEqual([]);
  });

  it('ships every file the README links to, so its links work where npm shows it', () => {
    const readme = readFileSync(path.join(repo, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\(([^)#:]+)(#[^)]*)?\)/g)].map((m) => m[1]!);
    expect(linked).toContain('docs/PROTOCOL.md');
    expect(linked.filter((f) => !files.includes(f))).toEqual([]);
  });

  it('passes publint', async () => {
    const data = readFileSync(tarball);
    const result = await publint({
      pack: { tarball: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) },
      level: 'suggestion',
      strict: true,
    });
    expect(result.messages.map((m) => `${m.type}: ${formatMessage(m, result.pkg)}`)).toEqual([]);
  });

  it('serves a request from plain node through a node started from the packed bin', async () => {
    const ca = await makeCa('package test CA');
    const server = await makeServerCert(ca, { names: [GROUP, '127.0.0.1'] });
    const groups = path.join(app, 'groups.yml');
    writeFileSync(groups, `groups:\n  "${GROUP}":\n    hosts: ["${GROUP}"]\n    authentication:\n      basic: { username: "user", password: "pass" }\n`);
    // Plain node: nothing may load TypeScript.
    const env = { NODE_OPTIONS: '' };
    const bin = path.join(app, 'node_modules/reverst/bin/reverst.js');
    const args = ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', groups, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0'];
    const node = spawnProcess(process.execPath, [bin, ...args], { cwd: app, env, name: 'packed reverst' });
    const [, quic, httpPort] = await node.waitForLine(/"tunnelAddress":"127\.0\.0\.1:(\d+)","httpAddress":"127\.0\.0\.1:(\d+)"/);

    writeFileSync(
      path.join(app, 'serve.mjs'),
      `import http from 'node:http';
import { readFileSync } from 'node:fs';
import { basic, connect } from 'reverst/client';
const [address, port, caPath] = process.argv.slice(2);
const tunnel = await connect({
  addresses: [address],
  serverName: '${GROUP}',
  ca: readFileSync(caPath),
  group: '${GROUP}',
  auth: basic('user', 'pass'),
  handler: (request) => new Response('PONG from plain node: ' + new URL(request.url).pathname),
});
const answer = await new Promise((resolve, reject) => {
  http
    .get({ host: '127.0.0.1', port: Number(port), path: '/packed', headers: { host: '${GROUP}' } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve(res.statusCode + ' ' + body));
    })
    .on('error', reject);
});
console.log(answer);
await tunnel.close();
`,
    );
    const client = spawnProcess(process.execPath, ['serve.mjs', `127.0.0.1:${quic}`, httpPort!, ca.certPath], { cwd: app, env, name: 'serve.mjs' });
    const { code } = await client.exited;
    expect({ code, stdout: client.stdout }).toEqual({ code: 0, stdout: ['200 PONG from plain node: /packed'] });
    expect((await node.kill('SIGTERM')).code).toBe(0);
  });

  it("compiles a user's file against the packed types with a strict tsconfig, dependencies' types included", async () => {
    const result = await compileStrict(
      'user',
      `import { basic, bearer, connect, NotFoundError, ServerNameError, type ConnectOptions, type ReconnectingEvent, type Tunnel } from 'reverst/client';
import { connect as fromRoot } from 'reverst';

const options: ConnectOptions = {
  addresses: ['127.0.0.1:7171', '[::1]:7171'],
  serverName: 'tunnel.example',
  group: 'g',
  auth: process.env.TOKEN ? bearer(process.env.TOKEN) : basic('user', 'pass'),
  handler: (request: Request) => new Response(new URL(request.url).pathname),
  retryNotFound: true,
};
const tunnel: Tunnel = await (fromRoot === connect ? connect : fromRoot)(options);
tunnel.on('reconnecting', (event: ReconnectingEvent) => console.log(event.attempt, event.address, event.error.message));
const stopped = await tunnel.closed;
if (stopped instanceof ServerNameError) console.log(stopped.serverName, stopped.certificateNames[0]?.length);
if (stopped instanceof NotFoundError) console.log(stopped.code, stopped.retryable);
// @ts-expect-error the types are real: a string is no boolean (an untyped package would leave this directive unused)
const wrong: ConnectOptions = { ...options, retryNotFound: 'yes' };
console.log(wrong);
`,
    );
    expect(result).toEqual({ ok: true, output: '' });
  });
});

describe('the packed control plane', () => {
  it('runs from plain node: `reverst control-plane` from the packed bin, and reverst/control-plane in a program, answering alike', async () => {
    const yaml = `groups:\n  "${GROUP}":\n    hosts: ["${GROUP}"]\n    authentication:\n      basic: { username: "user", password: "pass" }\n`;
    const groups = path.join(app, 'cp-groups.yml');
    const token = path.join(app, 'cp-token');
    writeFileSync(groups, yaml);
    writeFileSync(token, 'package-token\n');
    const env = { NODE_OPTIONS: '' };
    const bin = path.join(app, 'node_modules/reverst/bin/reverst.js');
    const cp = spawnProcess(process.execPath, [bin, 'control-plane', '-g', groups, '--listen', '127.0.0.1:0', '--api-token-file', token], {
      cwd: app,
      env,
      name: 'packed control plane',
    });
    const [, url] = await cp.waitForLine(/"control plane ready".*"url":"([^"]+)"/);
    writeFileSync(
      path.join(app, 'cp.mjs'),
      `import { controlPlaneFromEnv } from 'reverst/control-plane';
const [url, yaml] = process.argv.slice(2);
const headers = { authorization: 'Bearer package-token' };
const app = controlPlaneFromEnv({ REVERST_GROUPS_YAML: yaml, REVERST_API_TOKEN: 'package-token' });
const mine = await app.request('/v1/groups', { headers });
const theirs = await fetch(url + '/v1/groups', { headers });
console.log(mine.status, theirs.status, mine.headers.get('etag') === theirs.headers.get('etag'));
`,
    );
    const program = spawnProcess(process.execPath, ['cp.mjs', url!, yaml], { cwd: app, env, name: 'cp.mjs' });
    expect({ exit: (await program.exited).code, stdout: program.stdout }).toEqual({ exit: 0, stdout: ['200 200 true'] });
    expect((await cp.kill('SIGTERM')).code).toBe(0);
  });

  it("compiles a user's control plane against the packed types with a strict tsconfig", async () => {
    const result = await compileStrict(
      'cp-user',
      `import { controlPlaneFromEnv, createControlPlane, PublishedGroups, parseGroups, type ServerlessEnv } from 'reverst/control-plane';

const groups = new PublishedGroups({ saltKey: 'token' });
await groups.publish(await parseGroups('groups: {}', 'inline'), 'inline');
const app = createControlPlane({ groups, apiToken: 'token', maxWaitMs: 20_000 });
const res: Response = await app.request('/healthz');
console.log(res.status, groups.current?.etag);
export default { fetch: (request: Request, env: ServerlessEnv) => controlPlaneFromEnv(env).fetch(request) };
// @ts-expect-error the types are real: a token is a string
createControlPlane({ groups, apiToken: 42 });
`,
    );
    expect(result).toEqual({ ok: true, output: '' });
  });
});
