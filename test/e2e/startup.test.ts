// What `reverst` says when it cannot start: one line on stderr naming what to change, exit
// status 2, nothing listening. Each case runs the real command.
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort, makeCa, makeServerCert, onCleanup, spawnNode, useCleanup, type KeyPair } from '../harness/index.js';
import { BASIC_GROUP_YAML, GROUP, testCerts, writeGroups } from './helpers.js';

useCleanup();

let server: KeyPair;
let other: KeyPair;
let groups: string;
beforeAll(async () => {
  ({ server } = await testCerts());
  other = await makeServerCert(await makeCa('another CA'), { names: ['other.example'] });
  groups = writeGroups(BASIC_GROUP_YAML);
});

/**
 * Runs `reverst` with the flags a node needs (overridable) and returns its exit status and
 * what it wrote to stderr besides its JSON log lines (a port is found taken only after the
 * groups loaded and were logged).
 */
async function refuse(flags: Record<string, string>): Promise<{ code: number | null; stderr: readonly string[] }> {
  const all: Record<string, string> = {
    '-n': GROUP,
    '-k': server.keyPath,
    '-c': server.certPath,
    '-g': groups,
    '-a': '127.0.0.1:0',
    '-s': '127.0.0.1:0',
    ...flags,
  };
  const node = spawnNode('cli.ts', Object.entries(all).flat());
  const { code } = await node.exited;
  return { code, stderr: node.stderr.filter((line) => !line.startsWith('{"time":')) };
}

function writeFile(name: string, text: string): string {
  const file = path.join(path.dirname(groups), name);
  writeFileSync(file, text);
  return file;
}

async function takenTcp(): Promise<number> {
  const taken = http.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  onCleanup(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  return (taken.address() as AddressInfo).port;
}

describe('reverst refuses to start with one line that says what to change', () => {
  it('when the key does not match the certificate', async () => {
    expect(await refuse({ '-k': other.keyPath })).toEqual({
      code: 2,
      stderr: [
        `reverst: -k/--private-key-path ${other.keyPath} does not match the certificate in -c/--certificate-path ${server.certPath}: ` +
          'every TLS handshake would fail; give the key the certificate was issued for',
      ],
    });
  });

  it('when the key file holds no PEM key', async () => {
    expect(await refuse({ '-k': server.certPath })).toEqual({
      code: 2,
      stderr: [`reverst: -k/--private-key-path ${server.certPath}: not a PEM private key (no "-----BEGIN PRIVATE KEY-----" line)`],
    });
  });

  it('when the certificate file holds no certificate', async () => {
    const notes = writeFile('notes.txt', 'not a certificate\n');
    expect(await refuse({ '-c': notes })).toEqual({
      code: 2,
      stderr: [`reverst: -c/--certificate-path ${notes}: not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)`],
    });
  });

  it('when a file cannot be read', async () => {
    expect(await refuse({ '-k': '/nonexistent/server.key' })).toEqual({
      code: 2,
      stderr: ['reverst: -k/--private-key-path: cannot read /nonexistent/server.key: ENOENT'],
    });
  });

  it('when an address is not one, before the groups load', async () => {
    // The groups file does not exist either: the address is checked first.
    expect(await refuse({ '-s': 'nonsense', '-g': '/nonexistent/groups.yml' })).toEqual({
      code: 2,
      stderr: ['reverst: -s/--http-address: expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "nonsense" (see reverst -h)'],
    });
  });

  it('when the tunnel port (UDP) is taken', async () => {
    const taken = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => taken.bind(0, '127.0.0.1', resolve));
    onCleanup(() => new Promise<void>((resolve) => taken.close(() => resolve())));
    const { port } = taken.address();
    expect(await refuse({ '-a': `127.0.0.1:${port}` })).toEqual({
      code: 2,
      stderr: [`reverst: -a/--tunnel-address: UDP 127.0.0.1:${port} is already in use: stop what holds it or pick another port (EADDRINUSE)`],
    });
  });

  it.each([
    ['-s', '-s/--http-address'],
    ['--management-address', '--management-address'],
  ])('when the %s port (TCP) is taken', async (flag, name) => {
    const port = await takenTcp();
    expect(await refuse({ [flag]: `127.0.0.1:${port}` })).toEqual({
      code: 2,
      stderr: [`reverst: ${name}: TCP 127.0.0.1:${port} is already in use: stop what holds it or pick another port (EADDRINUSE)`],
    });
  });

  it('when the internal hop port is taken', async () => {
    const port = await takenTcp();
    const secret = writeFile('secret.txt', 'a-cluster-secret\n');
    const result = await refuse({
      '--membership': `redis://127.0.0.1:${await freePort()}`,
      '--internal-address': `127.0.0.1:${port}`,
      '--cluster-secret-file': secret,
    });
    expect(result).toEqual({
      code: 2,
      stderr: [`reverst: --internal-address: TCP 127.0.0.1:${port} is already in use: stop what holds it or pick another port (EADDRINUSE)`],
    });
  });

  it('when an address is not on this machine', async () => {
    const { code, stderr } = await refuse({ '-s': '192.0.2.1:8181' });
    expect(code).toBe(2);
    expect(stderr).toEqual([
      'reverst: -s/--http-address: TCP 192.0.2.1:8181 is not an address of this machine: give one of its own addresses, or 0.0.0.0 for all (EADDRNOTAVAIL)',
    ]);
  });
});

describe('reverst starts', () => {
  it('on an empty groups file, with a warning', async () => {
    const empty = writeFile('empty.yml', '');
    const node = spawnNode('cli.ts', ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', empty, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0']);
    const warning = await node.waitForLine((line) => line.includes('"level":"warn"'));
    expect(JSON.parse(warning)).toMatchObject({
      level: 'warn',
      msg: 'the tunnel groups source defines no groups: every request is answered 404 and every registration "not found"',
      source: empty,
    });
    await node.waitForLine(/"msg":"node ready"/);
    expect((await node.kill('SIGTERM')).code).toBe(0);
  });

  it('and a SIGTERM that arrives while it starts drains it once started, instead of killing it', async () => {
    const node = spawnNode('cli.ts', ['-n', GROUP, '-k', server.keyPath, '-c', server.certPath, '-g', groups, '-a', '127.0.0.1:0', '-s', '127.0.0.1:0']);
    // Logged before the listeners open: the signal lands while the node is starting.
    await node.waitForLine(/"msg":"tunnel groups loaded"/);
    node.child.kill('SIGTERM');
    expect(await node.exited).toEqual({ code: 0, signal: null });
    expect(node.output()).toMatch(/"msg":"node stopped"/);
  });
});
