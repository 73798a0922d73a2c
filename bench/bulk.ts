// Single large transfers, one at a time: curl when installed (a C client, so the client is never
// what limits a figure), else node:http in this process.
import { createReadStream, statSync } from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { spawnProcess } from '../test/harness/processes.js';

export interface TransferSpec {
  port: number;
  host: string;
  kind: 'download' | 'upload';
  path: string;
  /** Upload: the file sent as the body. */
  file?: string;
  /** Bytes the transfer must move (checked). */
  bytes: number;
  timeoutSeconds: number;
}

/** Seconds the transfer took, from the request to the last byte of the answer. */
export type Transfer = (spec: TransferSpec) => Promise<number>;

export function curlTransfer(curl: string): Transfer {
  return async (spec) => {
    const args = [
      '-sS',
      '-o',
      '/dev/null',
      '--max-time',
      String(spec.timeoutSeconds),
      '-H',
      `Host: ${spec.host}`,
      // No 100-continue round trip: every hop would have to answer it first.
      '-H',
      'Expect:',
      '-w',
      '%{http_code} %{size_download} %{size_upload} %{time_total}\n',
    ];
    if (spec.kind === 'upload') args.push('-T', spec.file!);
    args.push(`http://127.0.0.1:${spec.port}${spec.path}`);
    const proc = spawnProcess(curl, args, { name: `curl ${spec.kind}` });
    const exit = await proc.exited;
    const [status, down, up, seconds] = (proc.stdout.at(-1) ?? '').split(' ').map(Number);
    const moved = spec.kind === 'upload' ? up : down;
    if (exit.code !== 0 || status === undefined || status < 200 || status > 299 || moved !== spec.bytes) {
      throw new Error(`${spec.kind}: curl exited ${exit.code}, status ${status}, ${moved} of ${spec.bytes} bytes: ${proc.output().slice(0, 300)}`);
    }
    return seconds!;
  };
}

export const nodeTransfer: Transfer = (spec) =>
  new Promise((resolve, reject) => {
    const start = performance.now();
    const headers: http.OutgoingHttpHeaders = { host: spec.host };
    if (spec.kind === 'upload') headers['content-length'] = statSync(spec.file!).size;
    const req = http.request({ host: '127.0.0.1', port: spec.port, method: spec.kind === 'upload' ? 'PUT' : 'GET', path: spec.path, headers, agent: false });
    req.setTimeout(spec.timeoutSeconds * 1000, () => req.destroy(new Error(`no complete answer within ${spec.timeoutSeconds} s`)));
    req.on('error', reject);
    req.on('response', (res) => {
      let received = 0;
      res.on('data', (chunk: Buffer) => (received += chunk.length));
      res.on('error', reject);
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const ok = status >= 200 && status < 300 && (spec.kind === 'upload' || received === spec.bytes);
        if (ok) resolve((performance.now() - start) / 1000);
        else reject(new Error(`${spec.kind}: status ${status}, ${received} bytes`));
      });
    });
    if (spec.kind === 'upload') createReadStream(spec.file!).pipe(req);
    else req.end();
  });
