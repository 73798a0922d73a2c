import { describe, expect, it } from 'vitest';
import { BadRequestError, ConfigError, ERROR_CODES, NotFoundError, ProtocolError, ReverstError, ServerError, UnauthorizedError } from './errors.js';

describe('errors', () => {
  const samples: ReverstError[] = [
    new ReverstError('ERR_INVALID_OPTION', 'bad option'),
    new ConfigError([{ source: 'groups.yml', line: 1, column: 1, message: 'x' }]),
    new ProtocolError('ERR_PROTOCOL_TIMEOUT', 'slow'),
    new UnauthorizedError(),
    new NotFoundError(),
    new BadRequestError(),
    new ServerError(),
  ];

  it.each(samples.map((e) => [e.name, e] as const))('%s uses a documented code and its own name', (name, error) => {
    expect(ERROR_CODES[error.code]).toEqual(expect.any(String));
    expect(error).toBeInstanceOf(ReverstError);
    expect(error).toBeInstanceOf(Error);
    expect(error.constructor.name).toBe(name);
  });

  it('keeps cause and status', () => {
    const cause = new Error('root');
    const error = new ReverstError('ERR_SERVER', 'wrapped', { status: 503, cause });
    expect(error.cause).toBe(cause);
    expect(error.status).toBe(503);
    expect('cause' in new ReverstError('ERR_SERVER', 'no cause')).toBe(false);
  });

  it('registration errors say whether a retry can help', () => {
    expect([new UnauthorizedError(), new BadRequestError()].map((e) => e.retryable)).toEqual([false, false]);
    expect([new NotFoundError(), new ServerError()].map((e) => e.retryable)).toEqual([true, true]);
    expect(new UnauthorizedError().status).toBe(401);
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
