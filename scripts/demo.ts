// npm run demo: a standalone node plus the example PONG service, on the example's
// config and certificate, then one request through the tunnel. Ctrl-C stops both.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';

const children: ChildProcess[] = [];
const start = (name: string, args: string[]): ChildProcess => {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  child.once('exit', (code, signal) => {
    if (!stopping) {
      process.stderr.write(`demo: ${name} exited (${signal ?? code}); stopping\n`);
      stop(1);
    }
  });
  children.push(child);
  return child;
};
let stopping = false;
const stop = (code: number): void => {
  stopping = true;
  for (const c of children) c.kill('SIGTERM');
  setTimeout(() => process.exit(code), 1_000).unref();
};
process.once('SIGINT', () => stop(0));
process.once('SIGTERM', () => stop(0));

const get = (): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: 8181, path: '/foo', headers: { host: 'flipt.dev.local' } }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });

start('reverst', [
  'bin/reverst.js',
  '--standalone',
  '-l',
  'info',
  '-n',
  'flipt.dev.local',
  '-g',
  'examples/simple/group.yml',
  '-k',
  'examples/simple/server.key',
  '-c',
  'examples/simple/server.crt',
]);
await waitFor(async () => (await get().catch(() => ({ status: 0 }))).status === 503, 'the node to listen');
start('example', ['--import', 'tsx', 'examples/simple/main.ts', '--username', 'user', '--password', 'pass']);
await waitFor(async () => (await get().catch(() => ({ status: 0 }))).status === 200, 'the example to register');

const res = await get();
process.stdout.write(`\ndemo: curl -H 'Host: flipt.dev.local' 127.0.0.1:8181/foo  →  ${res.status} ${res.body}\n`);
process.stdout.write('demo: the node and the example keep running; try the curl yourself. Ctrl-C stops both.\n\n');

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) {
      process.stderr.write(`demo: gave up waiting for ${what}\n`);
      stop(1);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}
