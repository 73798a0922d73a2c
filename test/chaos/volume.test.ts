// Volume through a node process: large bodies each way arrive intact (sha256), and many
// requests leave the node's heap, measured after a full collection, where it was.
import { createHash } from 'node:crypto';
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { collect, onCleanup, randomStream, sha256, useCleanup } from '../harness/index.js';
import { basic, connect } from '../../client/index.js';
import { BASIC_GROUP_YAML, GROUP, testCerts, writeGroups } from '../e2e/helpers.js';
import { NodeProcess, load, megabytes, report, seconds, sized } from './helpers.js';

useCleanup();

/** A client in this process whose origin hashes uploads and streams downloads of a requested size. */
async function hashingClient(node: NodeProcess, ca: string) {
  const tunnel = await connect({
    addresses: [node.address],
    serverName: GROUP,
    ca,
    group: GROUP,
    auth: basic('user', 'pass'),
    handler: {
      listener: (req, res) => {
        const url = new URL(req.url ?? '/', 'http://origin');
        if (url.pathname === '/upload') {
          const hash = createHash('sha256');
          req.on('data', (chunk: Buffer) => hash.update(chunk));
          req.on('end', () => res.end(hash.digest('hex')));
          return;
        }
        if (url.pathname === '/download') {
          res.writeHead(200, { 'content-length': url.searchParams.get('bytes')! });
          void pipeline(randomStream(Number(url.searchParams.get('bytes')), url.searchParams.get('seed')!), res).catch(() => {});
          return;
        }
        res.end('PONG');
      },
    },
  });
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

function request(port: number, method: string, path: string, body?: NodeJS.ReadableStream): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: { host: GROUP } }, resolve);
    req.on('error', reject);
    if (body) body.pipe(req);
    else req.end();
  });
}

describe('volume', () => {
  it('carries large bodies each way intact', async () => {
    const certs = await testCerts();
    // Default flags: the request timeout counts from the last request byte, so an upload that
    // takes longer than it on a busy machine is not cut while it moves.
    const node = await NodeProcess.start({ certs, groupsPath: writeGroups(BASIC_GROUP_YAML) });
    await hashingClient(node, certs.ca.cert);
    const bytes = sized(64, 1024) * 1024 * 1024;

    const expectedUp = await sha256(randomStream(bytes, 'up'));
    let started = performance.now();
    const up = await request(node.httpPort, 'POST', '/upload', randomStream(bytes, 'up'));
    const gotUp = (await collect(up)).toString();
    const upSeconds = (performance.now() - started) / 1000;
    started = performance.now();
    const down = await request(node.httpPort, 'GET', `/download?bytes=${bytes}&seed=down`);
    const gotDown = await sha256(down);
    const downSeconds = (performance.now() - started) / 1000;
    const expectedDown = await sha256(randomStream(bytes, 'down'));
    const matched = (got: string, want: string) => (got === want ? 'sha256 matched' : 'sha256 DIFFERS');
    report(
      `${megabytes(bytes)} up in ${upSeconds.toFixed(1)} s (${megabytes(bytes / upSeconds)}/s, ${up.statusCode}, ${matched(gotUp, expectedUp)}), ` +
        `down in ${downSeconds.toFixed(1)} s (${megabytes(bytes / downSeconds)}/s, ${down.statusCode}, ${matched(gotDown, expectedDown)})`,
    );
    expect(up.statusCode).toBe(200);
    expect(down.statusCode).toBe(200);
    expect(gotUp).toBe(expectedUp);
    expect(gotDown).toBe(expectedDown);
  });
});

describe('many requests', () => {
  it("leave the node's heap after a full collection where it was", async () => {
    const certs = await testCerts();
    const node = await NodeProcess.start({ certs, groupsPath: writeGroups(BASIC_GROUP_YAML), gc: true });
    await hashingClient(node, certs.ca.cert);
    const run = async (count: number) => {
      const visitors = load(node.httpPort, 16, 0);
      while (visitors.answers.length < count) await new Promise((r) => setTimeout(r, 50));
      return visitors.stop();
    };
    await run(2_000); // warm-up: pools, JIT, buffers
    const before = await node.heapAfterGc();
    const count = sized(10_000, 100_000);
    const started = performance.now();
    const answers = await run(count);
    const elapsed = performance.now() - started;
    const after = await node.heapAfterGc();
    report(
      `${answers.length} requests in ${seconds(elapsed)}: ${answers.filter((a) => a.status !== 200).length} failed; node heap after GC ${megabytes(before)} → ${megabytes(after)}`,
    );
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    // Generous: a leak of a few hundred bytes per request shows at 10,000 requests, noise does not.
    expect(after - before).toBeLessThan(5e6);
  });
});
