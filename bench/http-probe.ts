import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ProcessHandle } from '../test/harness/processes.js';

const READY_MS = 20_000;

/** One GET; resolves with the status and body (never rejects: a refused connection is status 0). */
export function get(port: number, urlPath: string, host = '127.0.0.1'): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers: { host }, agent: false, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', () => resolve({ status: 0, body: Buffer.alloc(0) }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: Buffer.alloc(0) }));
  });
}

/**
 * Polls until something answers HTTP on `port` (any status), or `accept` says the answer will do.
 * Fails with the process's output when it exits first or nothing answers in time.
 */
export async function waitForHttp(
  port: number,
  proc: ProcessHandle,
  accept: (a: { status: number; body: Buffer }) => boolean = (a) => a.status > 0,
  urlPath = '/',
  host = '127.0.0.1',
): Promise<void> {
  const until = Date.now() + READY_MS;
  let last = 0;
  while (Date.now() < until) {
    if (!proc.alive) throw new Error(`${proc.name} exited before answering on port ${port}:\n${proc.output()}`);
    const answer = await get(port, urlPath, host);
    last = answer.status;
    if (accept(answer)) return;
    await sleep(50);
  }
  throw new Error(`${proc.name}: no acceptable answer on port ${port} within ${READY_MS / 1000} s (last status ${last}):\n${proc.output()}`);
}

/** POST to a control endpoint on loopback and parse its JSON answer. */
export function command<T>(port: number, urlPath: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) return reject(new Error(`${urlPath}: ${res.statusCode} ${text}`));
        resolve(JSON.parse(text) as T);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${urlPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
