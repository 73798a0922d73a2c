// The far side of the transport benchmark, in its own process so that each
// side has a core. Speaks one tiny protocol over QUIC streams and TLS sockets:
//   'U'            read until end, answer the byte count (8 bytes, big-endian)
//   'D' <u64 n>    send n bytes, then end
//   'E' <payload>  (QUIC) answer the payload, then end
//   TLS only: 'R' then repeated <u32 len><payload> echoed back, for round trips on a persistent socket
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { QuicServer } from '../shared/quic/index.js';

const [keyPath, certPath] = process.argv.slice(2);
const key = readFileSync(keyPath!);
const cert = readFileSync(certPath!);
const block = Buffer.alloc(64 << 10, 0x5a);

function serve(s: Duplex): void {
  s.once('readable', function first() {
    const head: Buffer | null = s.read(1);
    if (head === null) return void s.once('readable', first);
    const op = String.fromCharCode(head[0]!);
    if (op === 'U') {
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.on('end', () => {
        const out = Buffer.alloc(8);
        out.writeBigUInt64BE(BigInt(n));
        s.end(out);
      });
    } else if (op === 'D') {
      const readLen = (): void => {
        const b: Buffer | null = s.read(8);
        if (b === null) return void s.once('readable', readLen);
        let left = Number(b.readBigUInt64BE());
        s.resume();
        const pump = (): void => {
          while (left > 0) {
            const n = Math.min(left, block.length);
            left -= n;
            if (!s.write(n === block.length ? block : block.subarray(0, n))) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      };
      readLen();
    } else if (op === 'E') {
      s.pipe(s);
    } else if (op === 'R') {
      let pending: Buffer = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        pending = pending.length ? Buffer.concat([pending, d]) : d;
        while (pending.length >= 4) {
          const len = pending.readUInt32BE(0);
          if (pending.length < 4 + len) break;
          s.write(pending.subarray(0, 4 + len));
          pending = pending.subarray(4 + len);
        }
      });
    } else s.destroy();
  });
  s.on('error', () => {});
}

const quic = await QuicServer.listen({ alpn: ['bench'], key, cert });
quic.on('connection', (conn) => conn.on('stream', serve));
// Half-open like a QUIC stream: a client that ends its side ('U', 'D') must still get the answer.
// No Nagle delay, so one small frame per round trip goes out at once, as a QUIC packet would.
const tlsServer = tls.createServer({ key, cert, allowHalfOpen: true, noDelay: true }, serve);
await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
const tlsPort = (tlsServer.address() as { port: number }).port;
process.stdout.write(JSON.stringify({ quicPort: quic.address().port, tlsPort }) + '\n');
process.on('SIGTERM', () => process.exit(0));
