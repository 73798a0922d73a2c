// Peers that hold connections open without finishing anything, beside a legitimate visitor:
// slowloris visitors (a header line now and then, never the end of the head) get 408 once the
// head timeout passes; QUIC connections that never register are closed as "registration timed
// out". Neither holds up the visitor.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { onCleanup, useCleanup } from '../harness/index.js';
import { ALPN, CloseCode } from '../../shared/protocol.js';
import { connectQuic, type QuicCloseInfo } from '../../shared/quic/index.js';
import { GROUP, connectClient, startTestNode } from '../e2e/helpers.js';
import { load, report, seconds, sized, sleep } from './helpers.js';

useCleanup();

const HEADERS_TIMEOUT_MS = 2_000;
const REGISTRATION_TIMEOUT_MS = 2_000;

/** A visitor who sends a request head one header line at a time, forever; resolves with what the node answered and when. */
function slowloris(port: number): Promise<{ answer: string; after: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    let drip: NodeJS.Timeout | undefined;
    socket.on('connect', () => {
      socket.write(`GET / HTTP/1.1\r\nHost: ${GROUP}\r\n`);
      let n = 0;
      drip = setInterval(() => socket.write(`X-Drip-${n++}: a\r\n`), 300);
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (answer += d));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(drip);
      resolve({ answer, after: performance.now() - started });
    });
    onCleanup(() => socket.destroy());
  });
}

describe('slow and silent peers beside a visitor', () => {
  it('answers slowloris with 408 and closes never-registering QUIC connections, serving the visitor throughout', async () => {
    const t = await startTestNode({ headersTimeoutMs: HEADERS_TIMEOUT_MS, registrationTimeoutMs: REGISTRATION_TIMEOUT_MS });
    await connectClient(t);
    const visitors = load(t.node.httpAddress.port, 2, 20);

    const count = sized(100, 500);
    const lorises = Array.from({ length: count }, () => slowloris(t.node.httpAddress.port));
    const silent: Promise<QuicCloseInfo>[] = [];
    for (let i = 0; i < count; i++) {
      const conn = await connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: t.node.tunnelAddress.port, serverName: GROUP, ca: t.ca.cert });
      onCleanup(() => conn.close());
      silent.push(conn.closed);
    }
    const [cut, closed] = await Promise.all([Promise.all(lorises), Promise.all(silent)]);
    await sleep(200);
    const answers = await visitors.stop();

    const statuses = new Map<string, number>();
    for (const { answer } of cut) {
      const status = answer.split('\r\n')[0] || '(nothing)';
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    report(
      `${count} slowloris visitors cut after ${seconds(Math.min(...cut.map((c) => c.after)))}–${seconds(Math.max(...cut.map((c) => c.after)))} (${[...statuses].map(([s, n]) => `${n}× ${s}`).join(', ')}); ` +
        `${count} never-registering QUIC connections closed; visitor ${answers.filter((a) => a.status === 200).length}/${answers.length} served`,
    );
    expect([...statuses]).toEqual([['HTTP/1.1 408 Request Timeout', count]]);
    for (const info of closed) expect(info).toMatchObject({ byPeer: true, code: CloseCode.ServerError, reason: 'registration timed out' });
    expect(answers.length).toBeGreaterThan(10);
    expect(answers.filter((a) => a.status !== 200 || a.body !== 'PONG')).toEqual([]);
  });
});
