/**
 * Checks of TLS material before anything listens or dials. quiche accepts a key that does
 * not match its certificate, or a file that is no certificate at all, and only every
 * handshake then fails; these checks say so at start, naming the file.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { ReverstError } from './errors.js';

/** PEM bytes and how to name them in a message (`-k/--private-key-path server.key`). */
export interface PemSource {
  pem: string | Buffer;
  name: string;
}

const invalid = (message: string, cause?: unknown) => new ReverstError('ERR_INVALID_OPTION', message, { cause });

const text = (pem: string | Buffer): string => (typeof pem === 'string' ? pem : pem.toString('latin1'));

/** The private key in `source`; throws a one-line error naming it if it holds none. */
export function readPrivateKey(source: PemSource): KeyObject {
  const pem = text(source.pem);
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(pem)) throw invalid(`${source.name}: the private key is encrypted; give an unencrypted PEM key`);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw invalid(`${source.name}: not a PEM private key (no "-----BEGIN PRIVATE KEY-----" line)`);
  }
  try {
    return createPrivateKey(source.pem);
  } catch (err) {
    throw invalid(`${source.name}: unreadable PEM private key (${(err as Error).message})`, err);
  }
}

/** The certificates in `source`, leaf first; throws a one-line error naming it if it holds none. */
export function readCertificates(source: PemSource): X509Certificate[] {
  const blocks = text(source.pem).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  if (!blocks) throw invalid(`${source.name}: not a PEM certificate (no "-----BEGIN CERTIFICATE-----" line)`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw invalid(`${source.name}: certificate ${i + 1} is unreadable (${(err as Error).message})`, err);
    }
  });
}

/** Throws a one-line error unless `key` is the private key of the first certificate in `cert`. */
export function checkKeyPair(key: PemSource, cert: PemSource): void {
  const privateKey = readPrivateKey(key);
  const [leaf] = readCertificates(cert);
  if (!leaf!.checkPrivateKey(privateKey)) {
    throw invalid(`${key.name} does not match the certificate in ${cert.name}: every TLS handshake would fail; give the key the certificate was issued for`);
  }
}

/** The names a certificate is valid for: its subjectAltName entries, else its subject CN. */
export function certificateNames(cert: X509Certificate): string[] {
  const alt = (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .map((entry) => /^(?:DNS|IP Address):(.+)$/.exec(entry)?.[1])
    .filter((name): name is string => name !== undefined);
  if (alt.length > 0) return alt;
  const cn = /(?:^|\n)CN=(.+)/.exec(cert.subject)?.[1];
  return cn ? [cn] : [];
}
