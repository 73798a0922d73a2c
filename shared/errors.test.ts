import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ConfigError, ERROR_CODES, NotFoundError, ReverstError, ServerError, ServerNameError, UnauthorizedError, BadRequestError } from './errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Every library module: what the package ships (tests, benches and scripts aside). */
function libraryModules(): string[] {
  return ['shared', 'client', 'data-plane', 'control-plane'].flatMap((dir) => {
    let entries: string[];
    try {
      entries = readdirSync(path.join(root, dir), { recursive: true, encoding: 'utf8' });
    } catch {
      return []; // a plane not in this build
    }
    return entries.filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !f.endsWith('.d.ts')).map((f) => path.join(root, dir, f));
  });
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** The error classes the modules export, found by walking their exports. */
async function exportedErrorClasses(): Promise<Map<string, ErrorClass>> {
  const found = new Map<string, ErrorClass>();
  for (const file of libraryModules()) {
    const module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
    for (const value of Object.values(module)) {
      if (typeof value === 'function' && (value === Error || value.prototype instanceof Error)) found.set(value.name, value as ErrorClass);
    }
  }
  return found;
}

/**
 * How to make one of each, to check what an instance carries. A class found above without an
 * entry here fails the test: add one. Abstract bases are checked through their subclasses.
 */
const SAMPLES: Record<string, (() => Error) | 'abstract'> = {
  ReverstError: () => new ReverstError('ERR_INVALID_OPTION', 'bad option'),
  ConfigError: () => new ConfigError([{ source: 'groups.yml', line: 1, column: 1, message: 'x' }]),
  RegistrationError: 'abstract',
  UnauthorizedError: () => new UnauthorizedError(),
  NotFoundError: () => new NotFoundError(),
  BadRequestError: () => new BadRequestError(),
  ServerError: () => new ServerError(),
  ServerNameError: () => new ServerNameError('wrong.example', ['right.example']),
};

describe('every error class', async () => {
  const classes = await exportedErrorClasses();
  const quic = await import('./quic/index.js');
  const tunnels = await import('../data-plane/tunnels.js');
  const hop = await import('../data-plane/hop.js');
  const { ProxyError } = await import('../data-plane/proxy-errors.js');
  const { LengthMismatchError } = await import('../data-plane/visitors.js');
  const config = await import('./config/index.js');
  const k8s = await import('./config/k8s-ref.js');
  Object.assign(SAMPLES, {
    KubernetesError: () => new k8s.KubernetesError('ERR_K8S_NOT_FOUND', 'k8s://secret/ns/name/key: Secret "name" not found in namespace "ns"'),
    ControlPlaneError: () => new config.ControlPlaneError('ERR_CONTROL_PLANE_UNREACHABLE', 'control plane http://cp/v1/groups unreachable'),
    ProxyError: () => ProxyError.noTunnel('g'),
    HopRefusedError: () => new hop.HopRefusedError('node-1', 'wrong cluster secret'),
    HopNoTunnelError: () => new hop.HopNoTunnelError('node-1'),
    LengthMismatchError: () => new LengthMismatchError('the response body ended 3 bytes short of its Content-Length'),
    TunnelSilentError: () => new tunnels.TunnelSilentError('node-1'),
    ProtocolError: () => new (classes.get('ProtocolError') as new (code: 'ERR_PROTOCOL_TIMEOUT', message: string) => Error)('ERR_PROTOCOL_TIMEOUT', 'slow'),
    QuicError: () => new quic.QuicError('ERR_QUIC_PROTOCOL', 'broken'),
    QuicConnectTimeoutError: () => new quic.QuicConnectTimeoutError('127.0.0.1:7171', 1_000),
    QuicConnectionRefusedError: () => new quic.QuicConnectionRefusedError('127.0.0.1:7171'),
    QuicTlsError: () => new quic.QuicTlsError(42, false),
    QuicIdleTimeoutError: () => new quic.QuicIdleTimeoutError(1_000),
    QuicPeerUnresponsiveError: () => new quic.QuicPeerUnresponsiveError(1_000),
    QuicClosedError: () => new quic.QuicClosedError({ byPeer: true, app: true, code: 1, reason: 'bye' }),
    QuicStreamResetError: () => new quic.QuicStreamResetError(4, 0x10c),
  });

  it('finds the classes by walking the modules’ exports', () => {
    // A sanity floor, so a broken walk cannot pass by finding nothing.
    expect([...classes.keys()]).toEqual(expect.arrayContaining(['ReverstError', 'ConfigError', 'QuicError', 'QuicTlsError', 'ServerNameError']));
  });

  it.each([...classes.keys()].sort())('%s is a ReverstError with a documented code and its own name', (name) => {
    const Class = classes.get(name)!;
    expect(Class === ReverstError || Class.prototype instanceof ReverstError, `${name} must extend ReverstError`).toBe(true);
    const sample = SAMPLES[name];
    expect(sample, `add a sample for ${name} to SAMPLES in shared/errors.test.ts`).toBeDefined();
    if (sample === 'abstract') return;
    const error = sample!() as ReverstError;
    expect(error).toBeInstanceOf(Class);
    expect(error.name).toBe(name);
    expect(ERROR_CODES[error.code], `${name}'s code ${error.code} must be documented in ERROR_CODES`).toEqual(expect.any(String));
    expect(error.message).not.toBe('');
  });
});

describe('errors', () => {
  it('keeps cause and status', () => {
    const cause = new Error('root');
    const error = new ReverstError('ERR_SERVER', 'wrapped', { status: 503, cause });
    expect(error.cause).toBe(cause);
    expect(error.status).toBe(503);
    expect('cause' in new ReverstError('ERR_SERVER', 'no cause')).toBe(false);
  });

  it('registration errors say whether a retry can help', () => {
    expect([new UnauthorizedError(), new BadRequestError(), new NotFoundError(), new ServerNameError('a', [])].map((e) => e.retryable)).toEqual([
      false,
      false,
      false,
      false,
    ]);
    expect(new ServerError().retryable).toBe(true);
    expect(new UnauthorizedError().status).toBe(401);
  });

  it('a wrong server name says which name was asked for and which the certificate holds', () => {
    expect(new ServerNameError('wrong.example', ['flipt.dev.local', '127.0.0.1']).message).toBe(
      'the node\'s certificate is not valid for the server name "wrong.example": it holds flipt.dev.local, 127.0.0.1',
    );
  });

  it('ConfigError formats every issue with source:line:column: field: message', () => {
    const error = new ConfigError([
      { source: 'groups.yml', line: 7, column: 9, field: 'groups."flipt".authentication.basic.password', message: 'required' },
      { source: 'groups.yml', message: 'second' },
    ]);
    expect(error.message).toBe('groups.yml:7:9: groups."flipt".authentication.basic.password: required\ngroups.yml: second');
    expect(error).toMatchObject({ source: 'groups.yml', line: 7, column: 9, field: 'groups."flipt".authentication.basic.password' });
    expect(error.issues).toHaveLength(2);
    expect(error.code).toBe('ERR_CONFIG_INVALID');
  });

  it('ConfigError refuses to be built without an issue', () => {
    expect(() => new ConfigError([])).toThrow(RangeError);
  });
});
