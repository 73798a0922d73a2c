import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { makeCa, makeServerCert } from '../test/harness/index.js';
import { certificateNames, checkKeyPair, readCertificates } from './pem.js';

const pair = async (names = ['tunnel.example', '127.0.0.1']) => makeServerCert(await makeCa(), { names });

describe('checkKeyPair', () => {
  it('accepts a key with its certificate, the chain after the leaf included', async () => {
    const ca = await makeCa();
    const server = await makeServerCert(ca, { names: ['tunnel.example'] });
    expect(() => checkKeyPair({ pem: server.key, name: 'k' }, { pem: `${server.cert}\n${ca.cert}`, name: 'c' })).not.toThrow();
    expect(readCertificates({ pem: `${server.cert}\n${ca.cert}`, name: 'c' })).toHaveLength(2);
  });

  it('refuses a key that is not the certificate’s, naming both files', async () => {
    const a = await pair(['a.example']);
    const b = await pair(['b.example']);
    expect(() => checkKeyPair({ pem: b.key, name: 'b.key' }, { pem: a.cert, name: 'a.crt' })).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_OPTION',
        message: 'b.key does not match the certificate in a.crt: every TLS handshake would fail; give the key the certificate was issued for',
      }),
    );
  });

  it.each([
    [
      'a certificate given as the key',
      (p: { key: string; cert: string }) => [p.cert, p.cert],
      'k.pem: not a PEM private key (no "-----BEGIN PRIVATE KEY-----" line)',
    ],
    [
      'a key given as the certificate',
      (p: { key: string; cert: string }) => [p.key, p.key],
      'c.pem: not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)',
    ],
    ['an empty key', (p: { key: string; cert: string }) => ['', p.cert], 'k.pem: not a PEM private key (no "-----BEGIN PRIVATE KEY-----" line)'],
    [
      'a damaged key',
      (p: { key: string; cert: string }) => [p.key.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!'), p.cert],
      /^k\.pem: unreadable PEM private key \(/,
    ],
    [
      'an encrypted key',
      (p: { key: string; cert: string }) => ['-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n', p.cert],
      'k.pem: the private key is encrypted; give an unencrypted PEM key',
    ],
    [
      'a damaged certificate',
      (p: { key: string; cert: string }) => [p.key, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
      /^c\.pem: certificate 1 is unreadable \(/,
    ],
  ])('refuses %s with one line naming the file', async (_, swap, message) => {
    const [key, cert] = swap(await pair());
    let error: Error | undefined;
    try {
      checkKeyPair({ pem: key!, name: 'k.pem' }, { pem: cert!, name: 'c.pem' });
    } catch (err) {
      error = err as Error;
    }
    expect(error).toMatchObject({ code: 'ERR_INVALID_OPTION' });
    expect(error!.message).toMatch(message);
    expect(error!.message).not.toContain('\n');
  });
});

describe('certificateNames', () => {
  it('lists DNS names and IP addresses from subjectAltName', async () => {
    const { cert } = await pair(['tunnel.example', 'other.example', '127.0.0.1']);
    expect(certificateNames(new X509Certificate(cert))).toEqual(['tunnel.example', 'other.example', '127.0.0.1']);
  });
});
