import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { findBinary } from './binaries.js';

/** A private key and its certificate, as PEM text and as files (for processes that take paths). */
export interface KeyPair {
  key: string;
  cert: string;
  keyPath: string;
  certPath: string;
}

export interface ServerCertOptions {
  /** DNS names and IP literals for subjectAltName; the first one is also the subject CN. */
  names: string[];
}

export const DEFAULT_SERVER_NAMES = ['localhost', 'flipt.dev.local', '127.0.0.1'];

// Long enough for any test run, short enough that a leaked key is worthless.
const DAYS = '30';

// quiche verifies with BoringSSL: ECDSA P-256 keys, SHA-256 signatures and X.509 v3 extensions
// that mark the CA as a CA and the leaf as a TLS server. `req -newkey` writes unencrypted PKCS#8.
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256'];

const CA_EXTENSIONS = ['basicConstraints = critical, CA:TRUE, pathlen:0', 'keyUsage = critical, keyCertSign, cRLSign', 'subjectKeyIdentifier = hash'];

function leafExtensions(names: string[], selfSigned: boolean): string[] {
  const san = names.map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(', ');
  return [
    // BoringSSL only accepts a self-signed certificate as its own trust anchor when it may sign
    // certificates (CA:TRUE with keyCertSign); a CA:FALSE one fails with unknown_ca (quiche 304).
    ...(selfSigned
      ? ['basicConstraints = critical, CA:TRUE', 'keyUsage = critical, digitalSignature, keyCertSign']
      : ['basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature', 'authorityKeyIdentifier = keyid:always']),
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${san}`,
    'subjectKeyIdentifier = hash',
  ];
}

// One directory and one cache per process: a test file asking for the same certificate many
// times pays for openssl once.
const cache = new Map<string, Promise<KeyPair>>();
let dir: string | undefined;
let counter = 0;

/** A self-signed certificate authority (cached by name). */
export function makeCa(name = 'reverst test CA'): Promise<KeyPair> {
  checkValue(name, /^[\w .-]+$/, 'CA name');
  return cached(`ca:${name}`, () => selfSigned('ca', name, CA_EXTENSIONS));
}

/** A server certificate for `names`, signed by `ca` (cached by CA and names). */
export function makeServerCert(ca: KeyPair, options: ServerCertOptions = { names: DEFAULT_SERVER_NAMES }): Promise<KeyPair> {
  const names = checkNames(options.names);
  return cached(`leaf:${ca.certPath}:${names.join(',')}`, async () => {
    const out = files('server');
    const csr = `${out.certPath}.csr`;
    await writeFile(out.config, opensslConfig(names[0]!, leafExtensions(names, false)));
    await openssl(['req', '-new', ...NEW_KEY, '-config', out.config, '-keyout', out.keyPath, '-out', csr]);
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.certPath,
      '-CAkey',
      ca.keyPath,
      '-set_serial',
      `0x${randomBytes(16).toString('hex')}`,
      '-sha256',
      '-days',
      DAYS,
      '-extfile',
      out.config,
      '-extensions',
      'ext',
      '-out',
      out.certPath,
    ]);
    return load(out);
  });
}

/** A self-signed server certificate for `names` (it is its own trust anchor; cached by names). */
export function makeSelfSigned(names: string[] = DEFAULT_SERVER_NAMES): Promise<KeyPair> {
  checkNames(names);
  return cached(`self:${names.join(',')}`, () => selfSigned('self', names[0]!, leafExtensions(names, true)));
}

async function selfSigned(stem: string, commonName: string, extensions: string[]): Promise<KeyPair> {
  const out = files(stem);
  await writeFile(out.config, opensslConfig(commonName, extensions));
  await openssl(['req', '-x509', ...NEW_KEY, '-days', DAYS, '-config', out.config, '-keyout', out.keyPath, '-out', out.certPath]);
  return load(out);
}

function opensslConfig(commonName: string, extensions: string[]): string {
  // A complete config of our own, so the system openssl.cnf cannot add or duplicate extensions.
  return ['[req]', 'prompt = no', 'distinguished_name = dn', 'x509_extensions = ext', '[dn]', `CN = ${commonName}`, '[ext]', ...extensions, ''].join('\n');
}

function cached(key: string, make: () => Promise<KeyPair>): Promise<KeyPair> {
  let pair = cache.get(key);
  if (!pair) {
    pair = make();
    cache.set(key, pair);
    // A failure should not be remembered: the next call tries again and reports its own error.
    pair.catch(() => cache.delete(key));
  }
  return pair;
}

const DIR_PREFIX = 'reverst-certs-';

function files(stem: string) {
  if (!dir) {
    removeStaleDirs();
    dir = mkdtempSync(path.join(os.tmpdir(), `${DIR_PREFIX}${process.pid}-`));
    const created = dir;
    process.once('exit', () => rmSync(created, { recursive: true, force: true }));
  }
  const base = path.join(dir, `${stem}-${++counter}`);
  return { keyPath: `${base}.key`, certPath: `${base}.crt`, config: `${base}.cnf` };
}

// vitest ends its workers with SIGTERM, so their 'exit' handlers never run: remove the
// directories of processes that are gone instead.
function removeStaleDirs(): void {
  for (const name of readdirSync(os.tmpdir())) {
    const pid = name.startsWith(DIR_PREFIX) ? Number.parseInt(name.slice(DIR_PREFIX.length), 10) : NaN;
    if (Number.isInteger(pid) && !isAlive(pid)) rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

async function load(out: { keyPath: string; certPath: string }): Promise<KeyPair> {
  const [key, cert] = await Promise.all([readFile(out.keyPath, 'utf8'), readFile(out.certPath, 'utf8')]);
  return { key, cert, keyPath: out.keyPath, certPath: out.certPath };
}

async function openssl(args: string[]): Promise<void> {
  try {
    await promisify(execFile)(findBinary('openssl'), args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

function checkNames(names: string[]): string[] {
  if (names.length === 0) throw new Error('a server certificate needs at least one name');
  for (const name of names) checkValue(name, /^[\w.*:-]+$/, 'certificate name');
  return names;
}

// Values go into an openssl config file, where `$`, `,` and newlines have meaning.
function checkValue(value: string, allowed: RegExp, what: string): void {
  if (!allowed.test(value)) throw new Error(`unsupported ${what} ${JSON.stringify(value)}: use letters, digits and . - * :`);
}
