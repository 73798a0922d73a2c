import { createHash } from 'node:crypto';
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { collect, randomStream, sha256, useCleanup } from '../harness/index.js';
import { QuicServer, type QuicConnection, type QuicStream } from '../../shared/quic/index.js';
import { ALPN, dial, pki } from './helpers.js';

useCleanup();

const FIVE_MB = 5 << 20;

describe('node:http over QUIC streams', () => {
  it('serves a request with a 5 MB body each way, checksums equal', async () => {
    const p = await pki();
    const quic = await QuicServer.listen({ alpn: [ALPN], key: p.server.key, cert: p.server.cert });
    const received: string[] = [];
    const httpServer = http.createServer(async (req, res) => {
      received.push(await sha256(req));
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      randomStream(FIVE_MB, 'down').pipe(res);
    });
    quic.on('connection', (c: QuicConnection) => c.on('stream', (s: QuicStream) => httpServer.emit('connection', s)));
    const conn = await dial(p, quic.address().port);

    for (let i = 0; i < 3; i++) {
      const stream = await conn.openStream();
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request({ method: 'POST', path: `/upload/${i}`, createConnection: () => stream, headers: { host: 'test' } }, resolve);
        req.on('error', reject);
        randomStream(FIVE_MB, `up-${i}`).pipe(req);
      });
      expect(res.statusCode).toBe(200);
      const body = await collect(res);
      expect(body.length).toBe(FIVE_MB);
      expect(createHash('sha256').update(body).digest('hex')).toBe(await sha256(randomStream(FIVE_MB, 'down')));
      expect(received[i]).toBe(await sha256(randomStream(FIVE_MB, `up-${i}`)));
    }
    await quic.close();
  });
});
