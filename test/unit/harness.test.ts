import dgram from 'node:dgram';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it, vi, type MockInstance } from 'vitest';
import {
  collect,
  findBinary,
  freePort,
  freePorts,
  makeCa,
  makeSelfSigned,
  makeServerCert,
  onCleanup,
  randomStream,
  sha256,
  spawnNode,
  spawnProcess,
  startHttpServer,
  startLossyRelay,
  startNats,
  startRedis,
  tcpAnswers,
  tempDir,
  useCleanup,
  type KeyPair,
  type ProcessHandle,
} from '../harness/index.js';

useCleanup();

describe('cleanup registry', () => {
  const log: string[] = [];
  beforeAll(() => {
    onCleanup(() => log.push('suite'));
  });

  let consoleError: MockInstance<typeof console.error>;

  it('runs what a test registered after it, newest first, past a failing cleanup', () => {
    consoleError = vi.spyOn(console, 'error').mockImplementation(() => {});
    onCleanup(() => log.push('first'));
    onCleanup(() => {
      throw new Error('expected failure');
    });
    onCleanup(() => log.push('last'));
  });

  it('keeps what beforeAll registered until the scope ends', () => {
    expect(log).toEqual(['last', 'first']);
    expect(consoleError).toHaveBeenCalledWith('[harness] cleanup failed:', new Error('expected failure'));
    consoleError.mockRestore();
  });
});

describe('temporary directories', () => {
  let made: string;
  it('are made fresh, with the prefix asked for', () => {
    made = tempDir('reverst-harness-temp-');
    writeFileSync(path.join(made, 'file'), 'x');
    expect(path.basename(made)).toMatch(/^reverst-harness-temp-/);
    expect(readFileSync(path.join(made, 'file'), 'utf8')).toBe('x');
  });

  it('are removed with what is in them when the test that made them ends', () => {
    expect(existsSync(made)).toBe(false);
  });
});

describe('binaries', () => {
  it('name the Debian package to install when missing', () => {
    expect(() => findBinary('no-such-server', 'no-such-package')).toThrow(
      'no-such-server not found: install the Debian package no-such-package (apt-get install -y no-such-package)',
    );
  });
});

describe('ports', () => {
  it('never hands out the same port twice', async () => {
    const tcp = await freePorts(5);
    const udp = await freePorts(3, 'udp');
    expect(new Set(tcp).size).toBe(5);
    expect(new Set(udp).size).toBe(3);
    const server = net.createServer().listen(await freePort(), '127.0.0.1');
    await once(server, 'listening');
    server.close();
  });

  it('come from below the ephemeral range, where no socket bound to port 0 can take them first', async () => {
    const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    for (const port of [...(await freePorts(20)), ...(await freePorts(20, 'udp'))]) expect(port).toBeLessThan(low!);
  });
});

describe('certificates', () => {
  let ca: KeyPair;
  let leaf: KeyPair;
  beforeAll(async () => {
    ca = await makeCa();
    leaf = await makeServerCert(ca);
  });

  it('are cached per process', async () => {
    expect(await makeCa()).toBe(ca);
    expect(await makeServerCert(ca)).toBe(leaf);
  });

  it('are P-256 X.509 v3 with CA and server-auth extensions', () => {
    const caCert = new X509Certificate(ca.cert);
    const leafCert = new X509Certificate(leaf.cert);
    expect(caCert.ca).toBe(true);
    expect(leafCert.ca).toBe(false);
    expect(leafCert.checkIssued(caCert)).toBe(true);
    expect(leafCert.verify(caCert.publicKey)).toBe(true);
    expect(leafCert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(leafCert.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // extendedKeyUsage serverAuth
    expect(leafCert.subjectAltName).toBe('DNS:localhost, DNS:flipt.dev.local, IP Address:127.0.0.1');
    expect(Date.parse(leafCert.validFrom)).toBeLessThanOrEqual(Date.now());
    expect(() => tls.createSecureContext({ key: leaf.key, cert: leaf.cert, ca: ca.cert })).not.toThrow();
  });

  it('complete a TLS 1.3 handshake for each name when the client trusts the CA', async () => {
    const port = await tlsServer(leaf);
    await expect(handshake(port, { ca: ca.cert, servername: 'flipt.dev.local' })).resolves.toBe('TLSv1.3');
    await expect(handshake(port, { ca: ca.cert, servername: 'localhost' })).resolves.toBe('TLSv1.3');
    await expect(handshake(port, { ca: ca.cert })).resolves.toBe('TLSv1.3'); // checked against IP:127.0.0.1
  });

  it('fail the handshake without the CA or for another name', async () => {
    const port = await tlsServer(leaf);
    await expect(handshake(port, { servername: 'flipt.dev.local' })).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    const otherCa = await makeCa('another CA');
    await expect(handshake(port, { ca: otherCa.cert, servername: 'flipt.dev.local' })).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    await expect(handshake(port, { ca: ca.cert, servername: 'evil.example' })).rejects.toMatchObject({
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });

  it('self-signed ones are their own trust anchor', async () => {
    const self = await makeSelfSigned(['flipt.dev.local']);
    const port = await tlsServer(self);
    await expect(handshake(port, { ca: self.cert, servername: 'flipt.dev.local' })).resolves.toBe('TLSv1.3');
    await expect(handshake(port, { servername: 'flipt.dev.local' })).rejects.toMatchObject({
      code: 'DEPTH_ZERO_SELF_SIGNED_CERT',
    });
  });
});

describe('processes', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('reverst-harness-test-');
    const script = [
      'const port: number = Number(process.argv[2]);',
      "console.error('warming up');",
      // The handler goes in before the line the test waits for, so the signal cannot arrive first.
      "process.on('SIGTERM', () => { console.log('draining'); process.exit(3); });",
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the child's source, with its own template literal
      'console.log(`listening on ${port}`);',
      'setInterval(() => {}, 1000);',
    ].join('\n');
    writeFileSync(path.join(dir, 'server.ts'), script);
    writeFileSync(path.join(dir, 'crash.ts'), "const code: number = 7;\nconsole.error('boom');\nprocess.exit(code);\n");
  });

  it('runs TypeScript, matches output lines and forwards signals', async () => {
    const proc = spawnNode(path.join(dir, 'server.ts'), ['4242']);
    const match = await proc.waitForLine(/listening on (\d+)/);
    expect(match[1]).toBe('4242');
    await expect(proc.waitForLine((line) => line === 'warming up')).resolves.toBe('warming up');
    expect(proc.alive).toBe(true);
    await expect(proc.kill()).resolves.toEqual({ code: 3, signal: null });
    expect(proc.stdout).toEqual(['listening on 4242', 'draining']);
    expect(proc.output()).toContain('[stderr] warming up');
  });

  it('rejects a wait when the process exits first, with its output', async () => {
    const proc = spawnNode('crash.ts', [], { cwd: dir });
    await expect(proc.waitForLine(/never/)).rejects.toThrow(/crash\.ts exited \(code 7[\s\S]*boom/);
  });

  it('reports a command that cannot start', async () => {
    const proc = spawnProcess('/nonexistent/server');
    await expect(proc.waitForLine(/ready/)).rejects.toThrow(/server failed to start: .*ENOENT/);
    await expect(proc.exited).resolves.toEqual({ code: null, signal: null });
  });

  let leftRunning: ProcessHandle;
  it('leaves a process running to the cleanup', async () => {
    leftRunning = spawnNode(path.join(dir, 'server.ts'), ['1']);
    await leftRunning.waitForLine(/listening/);
  });

  it('which SIGKILLed it after the test', async () => {
    expect(leftRunning.alive).toBe(false);
    await expect(leftRunning.exited).resolves.toEqual({ code: null, signal: 'SIGKILL' });
  });
});

describe('redis launcher', () => {
  it('answers PING, and comes back on the same port after a kill', async () => {
    const redis = await startRedis();
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await ping(redis.port)).toBe(true);
    await redis.kill();
    expect(redis.process.alive).toBe(false);
    expect(await ping(redis.port)).toBe(false);
    await redis.restart();
    expect(await ping(redis.port)).toBe(true);
    await redis.stop();
  });
});

describe('nats launcher', () => {
  it('greets with INFO and runs JetStream', async () => {
    const nats = await startNats();
    expect(nats.url).toBe(`nats://127.0.0.1:${nats.port}`);
    const info = await firstLine(nats.port);
    expect(info).toMatch(/^INFO /);
    expect(JSON.parse(info.slice('INFO '.length))).toMatchObject({ jetstream: true, port: nats.port });
  });
});

describe('lossy relay', () => {
  it('drops about the configured fraction each way and forwards the rest unchanged', async () => {
    const count = 2000;
    const target = await udpSocket();
    const received = new Map<number, Buffer>();
    target.on('message', (msg, from) => {
      received.set(msg.readUInt32BE(0), msg);
      target.send(msg, from.port, from.address); // echo through the relay
    });
    const relay = await startLossyRelay({ target: udpTarget(target), dropRate: 0.5, seed: 42 });

    const client = await udpSocket();
    let echoed = 0;
    client.on('message', () => echoed++);
    const { toTarget, toClient } = relay.stats;
    for (let i = 0; i < count; i++) {
      client.send(datagram(i), relay.port, relay.host);
      // A small window in flight, so that no socket buffer overflows: only the relay drops.
      if (i % 25 === 24) await until(() => toTarget.forwarded + toTarget.dropped === i + 1);
    }
    const settled = () => received.size === toTarget.forwarded && toClient.forwarded + toClient.dropped === received.size && echoed === toClient.forwarded;
    await until(settled);
    await sleep(50);
    expect(settled()).toBe(true); // and nothing extra arrived late

    // Binomial(2000, 0.5) has a standard deviation of ~22; the band is generous on purpose.
    expect(toTarget.forwarded + toTarget.dropped).toBe(count);
    expect(toTarget.dropped).toBeGreaterThan(850);
    expect(toTarget.dropped).toBeLessThan(1150);
    for (const [i, msg] of received) expect(msg.equals(datagram(i))).toBe(true);
    expect(toClient.dropped / received.size).toBeGreaterThan(0.4);
    expect(toClient.dropped / received.size).toBeLessThan(0.6);
  });

  it('drops the same datagrams for the same seed', async () => {
    const runs = [];
    for (let run = 0; run < 2; run++) {
      const target = await udpSocket();
      const seen: number[] = [];
      target.on('message', (msg) => seen.push(msg.readUInt32BE(0)));
      const relay = await startLossyRelay({ target: udpTarget(target), dropRate: 0.3, seed: 7 });
      const { toTarget } = relay.stats;
      const client = await udpSocket();
      for (let i = 0; i < 100; i++) client.send(datagram(i), relay.port, relay.host);
      await until(() => toTarget.forwarded + toTarget.dropped === 100 && seen.length === toTarget.forwarded);
      runs.push(seen.sort((a, b) => a - b));
    }
    expect(runs[0]).toEqual(runs[1]);
  });
});

describe('http helpers', () => {
  it('serve a deterministic random body that hashes the same however it is chunked', async () => {
    const size = 3 * 1024 * 1024 + 17;
    const origin = await startHttpServer((_req, res) => {
      res.setHeader('content-length', size);
      randomStream(size, 'body').pipe(res);
    });
    const res = await fetch(origin.url);
    const body = await collect(res.body as AsyncIterable<Uint8Array>);
    expect(body.length).toBe(size);
    expect(await sha256(body)).toBe(await sha256(randomStream(size, 'body', 1000)));
    expect(await sha256(randomStream(size, 'other'))).not.toBe(await sha256(body));
    await origin.close(); // must not wait for fetch's idle keep-alive connection
  });
});

async function tlsServer(pair: KeyPair): Promise<number> {
  const server = tls.createServer({ minVersion: 'TLSv1.3' }, (socket) => socket.end());
  server.setSecureContext({ key: pair.key, cert: pair.cert });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => new Promise((resolve) => server.close(resolve)));
  return (server.address() as net.AddressInfo).port;
}

function handshake(port: number, options: tls.ConnectionOptions): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ...options }, () => {
      resolve(socket.getProtocol());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

function ping(port: number): Promise<boolean> {
  return tcpAnswers(port, (received) => received === '+PONG\r\n', 'PING\r\n');
}

function firstLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      const end = received.indexOf('\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(received.slice(0, end));
      }
    });
    socket.once('error', reject);
  });
}

async function udpSocket(): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  onCleanup(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return socket;
}

function udpTarget(socket: dgram.Socket) {
  return { host: '127.0.0.1', port: socket.address().port };
}

function datagram(i: number): Buffer {
  const msg = Buffer.alloc(200, i % 251);
  msg.writeUInt32BE(i, 0);
  return msg;
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(1);
  }
}
