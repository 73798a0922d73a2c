import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ReverstError } from './errors.js';
import { ADVERTISED, LISTEN, formatHostPort, normalizeHostPort, parseHostPort } from './address.js';

describe('parseHostPort', () => {
  it.each([
    ['127.0.0.1:7171', { host: '127.0.0.1', port: 7171 }],
    ['localhost:1', { host: 'localhost', port: 1 }],
    ['[::1]:7171', { host: '::1', port: 7171 }],
    ['[fe80::1%eth0]:65535', { host: 'fe80::1%eth0', port: 65535 }],
    ['  node-a.internal:9001 ', { host: 'node-a.internal', port: 9001 }],
  ])('reads %j', (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });

  it('lets a listener leave out the host and take port 0', () => {
    expect(parseHostPort(':8181', LISTEN)).toEqual({ host: '0.0.0.0', port: 8181 });
    expect(parseHostPort('127.0.0.1:0', LISTEN)).toEqual({ host: '127.0.0.1', port: 0 });
    expect(parseHostPort('[::]:0', LISTEN)).toEqual({ host: '::', port: 0 });
  });

  it.each([
    ['nonsense', 'expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "nonsense"'],
    ['host:', 'expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "host:"'],
    ['host:http', 'expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "host:http"'],
    ['host:0', 'port 0 is out of range 1-65535 in "host:0"'],
    ['host:65536', 'port 65536 is out of range 1-65535 in "host:65536"'],
    [':8181', 'missing host (expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got ":8181")'],
    ['::1:7171', 'put an IPv6 address in brackets, e.g. [::1]:7171 (expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "::1:7171")'],
    ['[nope]:1', '"[nope]" is not a bracketed IPv6 address (expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "[nope]:1")'],
    ['user@host:1', 'expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "user@host:1"'],
    ['http://host:1', 'give the address without a scheme (expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "http://host:1")'],
  ])('refuses %j: %s', (text, message) => {
    expect(() => parseHostPort(text)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION', message }));
  });

  it('refuses port 0 for an address to dial even where a listener would take it', () => {
    expect(() => parseHostPort('127.0.0.1:0')).toThrow(/out of range 1-65535/);
    expect(() => parseHostPort('127.0.0.1:65536', LISTEN)).toThrow(/out of range 0-65535/);
  });

  it('refuses "any address" where others dial what is given, and takes a port the system picks', () => {
    for (const text of ['0.0.0.0:9000', '[::]:9000', '[0:0::0]:9000', ':9000']) expect(() => parseHostPort(text, ADVERTISED)).toThrow(ReverstError);
    expect(() => parseHostPort('0.0.0.0:9000', ADVERTISED)).toThrow(
      `"0.0.0.0:9000" is not an address another machine can dial: give this machine's own address (its IP or host name)`,
    );
    expect(parseHostPort('10.1.2.3:0', ADVERTISED)).toEqual({ host: '10.1.2.3', port: 0 });
    expect(parseHostPort('[fd00::1]:9000', ADVERTISED)).toEqual({ host: 'fd00::1', port: 9000 });
  });
});

describe('formatHostPort', () => {
  it('puts IPv6 hosts in brackets so the text is valid in a URL', () => {
    expect(formatHostPort({ host: '::1', port: 9001 })).toBe('[::1]:9001');
    expect(new URL(`http://${formatHostPort({ host: '::1', port: 9001 })}/x`).port).toBe('9001');
    expect(formatHostPort({ host: '10.0.0.1', port: 80 })).toBe('10.0.0.1:80');
    expect(normalizeHostPort(':8181', LISTEN)).toBe('0.0.0.0:8181');
  });

  it('is the inverse of parseHostPort', () => {
    const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain());
    fc.assert(
      fc.property(host, fc.integer({ min: 1, max: 65535 }), (h, port) => {
        const parsed = parseHostPort(formatHostPort({ host: h, port }));
        expect(parsed).toEqual({ host: h, port });
      }),
    );
  });
});
