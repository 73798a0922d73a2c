// Registration fuzzing against a node process while a real client serves visitors: every kind
// of malformed, unauthorised or unknown registration is refused with the code a client can act
// on, none disturbs the visitors, and a flood of unique long group names leaves /metrics, the
// log and the node's memory small. No credential ever reaches the log or /metrics.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startHttpServer, useCleanup } from '../harness/index.js';
import { ALPN, CloseCode, MAX_FRAME_SIZE, encodeFrame } from '../../shared/protocol.js';
import { connectQuic, type QuicStream } from '../../shared/quic/index.js';
import { BASIC_GROUP_YAML, GROUP, testCerts, writeGroups } from '../e2e/helpers.js';
import { NodeProcess, load, megabytes, report, sized, spawnExampleClient } from './helpers.js';

useCleanup();

const EXTERNAL_GROUP = 'external.example';
/** Appears in every credential the fuzzer sends: it must never show up in the log or /metrics. */
const CANARY = 'canary-7f3a91';
const basicAuth = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

function lengthPrefixed(body: Buffer): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(body.length);
  return Buffer.concat([prefix, body]);
}

/** A msgpack registration whose Version is an array nested `depth` levels deep. */
function deepVersionFrame(depth: number): Buffer {
  return lengthPrefixed(
    Buffer.concat([
      Buffer.from([0x83, 0xa7]),
      Buffer.from('Version'),
      Buffer.alloc(depth, 0x91),
      Buffer.from([0x01, 0xab]),
      Buffer.from('TunnelGroup'),
      Buffer.from([0xaf]),
      Buffer.from(GROUP),
      Buffer.from([0xa8]),
      Buffer.from('Metadata'),
      Buffer.from([0x80]),
    ]),
  );
}

const register = (group: string, authorization?: string) =>
  encodeFrame({ Version: 1, TunnelGroup: group, Metadata: authorization === undefined ? {} : { Authorization: authorization } });

interface FuzzCase {
  kind: string;
  /** What goes on the registration stream, which then ends. */
  bytes: () => Buffer;
  expect: { code: number; reason: string };
}

const BAD_REQUEST = { code: CloseCode.ClientError, reason: 'bad request' };
const UNAUTHORIZED = { code: CloseCode.ClientError, reason: 'unauthorized' };
const NOT_FOUND = { code: CloseCode.ClientError, reason: 'not found' };

const CASES: FuzzCase[] = [
  { kind: 'random bytes', bytes: () => randomBytes(200), expect: BAD_REQUEST },
  { kind: 'nothing at all', bytes: () => Buffer.alloc(0), expect: BAD_REQUEST },
  { kind: 'a truncated frame', bytes: () => register(GROUP).subarray(0, 12), expect: BAD_REQUEST },
  {
    kind: 'an oversized length prefix',
    bytes: () => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(MAX_FRAME_SIZE + 1);
      return b;
    },
    expect: BAD_REQUEST,
  },
  { kind: 'a prefix of 4 GiB', bytes: () => Buffer.from([0xff, 0xff, 0xff, 0xff]), expect: BAD_REQUEST },
  { kind: 'msgpack that is not a map', bytes: () => lengthPrefixed(Buffer.from([0x93, 0x01, 0x02, 0x03])), expect: BAD_REQUEST },
  { kind: 'invalid msgpack', bytes: () => lengthPrefixed(Buffer.from([0xc1, 0xc1, 0xc1])), expect: BAD_REQUEST },
  { kind: 'a map with trailing garbage', bytes: () => lengthPrefixed(Buffer.from([0x80, 0x01])), expect: BAD_REQUEST },
  { kind: 'a map of the wrong message', bytes: () => encodeFrame({ Type: 'drain', DeadlineMs: 1 }), expect: BAD_REQUEST },
  { kind: 'Version 99', bytes: () => encodeFrame({ Version: 99, TunnelGroup: GROUP, Metadata: {} }), expect: BAD_REQUEST },
  { kind: 'Version as a string', bytes: () => encodeFrame({ Version: '1', TunnelGroup: GROUP, Metadata: {} }), expect: BAD_REQUEST },
  { kind: 'a Version nested 20,000 deep', bytes: () => deepVersionFrame(20_000), expect: BAD_REQUEST },
  { kind: 'a Version nested 60,000 deep', bytes: () => deepVersionFrame(60_000), expect: BAD_REQUEST },
  { kind: 'an empty TunnelGroup', bytes: () => register(''), expect: BAD_REQUEST },
  { kind: 'a TunnelGroup that is a number', bytes: () => encodeFrame({ Version: 1, TunnelGroup: 7, Metadata: {} }), expect: BAD_REQUEST },
  { kind: 'Metadata that is a list', bytes: () => encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: ['a'] }), expect: BAD_REQUEST },
  {
    kind: 'an Authorization that is a number',
    bytes: () => encodeFrame({ Version: 1, TunnelGroup: GROUP, Metadata: { Authorization: 5 } }),
    expect: BAD_REQUEST,
  },
  { kind: 'an Authorization with CR/LF (basic group)', bytes: () => register(GROUP, `Basic ${CANARY}\r\nX-Injected: 1`), expect: BAD_REQUEST },
  { kind: 'an Authorization with CR/LF (external group)', bytes: () => register(EXTERNAL_GROUP, `Bearer ${CANARY}\r\nX-Injected: 1`), expect: BAD_REQUEST },
  { kind: 'an Authorization with NUL (external group)', bytes: () => register(EXTERNAL_GROUP, `Bearer ${CANARY}\u0000`), expect: BAD_REQUEST },
  { kind: 'a group nobody configured', bytes: () => register('nobody.example', basicAuth('user', 'pass')), expect: NOT_FOUND },
  { kind: 'a wrong password', bytes: () => register(GROUP, basicAuth('user', CANARY)), expect: UNAUTHORIZED },
  { kind: 'no Authorization', bytes: () => register(GROUP), expect: UNAUTHORIZED },
  { kind: 'a scheme the group does not take', bytes: () => register(GROUP, `Bearer ${CANARY}`), expect: UNAUTHORIZED },
  { kind: 'a 60 KB scheme', bytes: () => register(GROUP, `${'S'.repeat(60_000)} ${CANARY}`), expect: UNAUTHORIZED },
  { kind: 'basic credentials that are not base64', bytes: () => register(GROUP, `Basic ${CANARY}!!`), expect: UNAUTHORIZED },
  { kind: 'basic credentials without a colon', bytes: () => register(GROUP, `Basic ${Buffer.from(CANARY).toString('base64')}`), expect: UNAUTHORIZED },
];

/** One raw registration attempt: dial, send `bytes` on the first stream and end it, wait for the node's close. */
async function attempt(port: number, ca: string, bytes: Buffer): Promise<{ code: number; reason: string; byPeer: boolean }> {
  const conn = await connectQuic({ alpn: [ALPN], host: '127.0.0.1', port, serverName: GROUP, ca, connectTimeoutMs: 20_000 });
  const stream: QuicStream = await conn.openStream();
  stream.on('error', () => {});
  stream.end(bytes);
  const info = await conn.closed;
  return { code: info.code, reason: info.reason, byPeer: info.byPeer };
}

/** Runs `task` for 0..count-1, `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

describe('registration fuzzing', () => {
  it('refuses every kind with the right code, floods of unique names leave the node small, and visitors are served throughout', async () => {
    const certs = await testCerts();
    const auth = await startHttpServer((_req, res) => res.writeHead(200).end());
    const groupsPath = writeGroups(
      `${BASIC_GROUP_YAML}  "${EXTERNAL_GROUP}":\n    hosts: ["${EXTERNAL_GROUP}"]\n    authentication:\n      external: { endpoint: "${auth.url}/auth", scheme: "Bearer" }\n`,
    );
    const node = await NodeProcess.start({ certs, groupsPath, args: ['-l', 'info'] });
    spawnExampleClient(node.address, certs.ca);
    await expect.poll(() => node.tunnels(), { timeout: 60_000 }).toBe(1);
    const ca = certs.ca.cert;

    const visitors = load(node.httpPort, 2, 20);
    const rssBefore = await node.rss();
    const logBefore = node.logBytes();

    // Every kind, several times over.
    const rounds = sized(3, 20);
    const outcomes = new Map<string, string[]>();
    for (let round = 0; round < rounds; round++) {
      await pool(CASES.length, 8, async (i) => {
        const c = CASES[i]!;
        const got = await attempt(node.quicPort, ca, c.bytes());
        const seen = `0x${got.code.toString(16)} ${got.reason}${got.byPeer ? '' : ' (not from the node)'}`;
        outcomes.set(c.kind, [...(outcomes.get(c.kind) ?? []), seen]);
      });
    }
    for (const c of CASES) {
      expect({ kind: c.kind, seen: [...new Set(outcomes.get(c.kind))] }).toEqual({
        kind: c.kind,
        seen: [`0x${c.expect.code.toString(16)} ${c.expect.reason}`],
      });
    }

    // A flood of registrations for unique, long group names nobody configured.
    const flood = sized(800, 3_000);
    const started = performance.now();
    await pool(flood, 16, async (i) => {
      const got = await attempt(node.quicPort, ca, register(`${i}-${randomBytes(8).toString('hex')}-${'g'.repeat(60_000)}`, basicAuth('user', 'pass')));
      expect(got).toEqual({ ...NOT_FOUND, byPeer: true });
    });
    const floodSeconds = (performance.now() - started) / 1000;

    const answers = await visitors.stop();
    // The log says how many refusals it left out, once the rate limit's window ends.
    const summary = await node.proc.waitForLine(/registration failures not logged \(rate limit\)/, 20_000).catch(() => undefined);
    const metrics = await node.metrics();
    const rssAfter = await node.rss();
    const logGrowth = node.logBytes() - logBefore;
    const log = node.proc.stderr.join('\n');
    const heap = /^reverst_nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics)?.[1];
    report(
      `registration fuzzing: ${CASES.length} kinds × ${rounds} refused as expected; ${flood} registrations with unique 60 KB group names in ${floodSeconds.toFixed(1)} s; ` +
        `visitors ${answers.filter((a) => a.status === 200).length}/${answers.length} served; /metrics ${megabytes(metrics.length)}; ` +
        `log grew ${megabytes(logGrowth)}; RSS ${megabytes(rssBefore)} → ${megabytes(rssAfter)}, heap used ${megabytes(Number(heap))}`,
    );

    // Visitors never noticed.
    expect(answers.length).toBeGreaterThan(10);
    expect(answers.filter((a) => a.status !== 200 || a.body !== 'PONG')).toEqual([]);
    // One series for every name nobody configured; nothing of the names or credentials in /metrics.
    expect(metrics.length).toBeLessThan(100_000);
    expect(metrics).toContain('reverst_tunnel_group_registrations_total{group="(unknown)",result="not_found"}');
    expect(metrics).not.toContain('ggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg');
    expect(metrics).not.toContain(CANARY);
    // The log: bounded, every line short, no credential, and it says how many lines it left out.
    expect(logGrowth).toBeLessThan(1_000_000);
    expect(Math.max(...node.proc.stderr.map((line) => line.length))).toBeLessThan(2_000);
    expect(log).not.toContain(CANARY);
    expect(JSON.parse(summary?.input ?? '{}').dropped).toBeGreaterThan(0);
    // The names came and went: memory is not held by them (generous: RSS moves with GC and allocator).
    expect(rssAfter - rssBefore).toBeLessThan(150e6);
  });
});
