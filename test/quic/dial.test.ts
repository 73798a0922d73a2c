import { describe, expect, it } from 'vitest';
import { makeCa, makeServerCert, useCleanup } from '../harness/index.js';
import { QuicTlsError, connectQuic } from '../../shared/quic/index.js';
import { ALPN, echoServer, pki, roundTrip } from './helpers.js';

useCleanup();

describe('QUIC dialling', () => {
  it('keeps the settings of every dial apart when it reuses TLS configurations', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const other = await makeServerCert(await makeCa('another CA'));
    const dial = (ca: string) => connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: server.address().port, serverName: 'localhost', ca });
    for (let i = 0; i < 3; i++) {
      const good = await dial(p.ca.cert);
      expect((await roundTrip(await good.openStream(), 'hi')).toString()).toBe('hi');
      await good.close();
      // Same options but another CA (this one trusts only the other CA's chain): refused every time.
      await expect(dial(other.cert)).rejects.toBeInstanceOf(QuicTlsError);
    }
  });

  it('dials many connections at once without giving up on any', async () => {
    const p = await pki();
    const server = await echoServer(p);
    const conns = await Promise.all(
      Array.from({ length: 300 }, () => connectQuic({ alpn: [ALPN], host: '127.0.0.1', port: server.address().port, serverName: 'localhost', ca: p.ca.cert })),
    );
    const replies = await Promise.all(conns.map(async (c, i) => (await roundTrip(await c.openStream(), `#${i}`)).toString()));
    expect(replies).toEqual(conns.map((_, i) => `#${i}`));
    await Promise.all(conns.map((c) => c.close()));
  });
});
