import { describe, expect, it } from 'vitest';
import { redactUrl } from './redact.js';

describe('redactUrl', () => {
  it.each([
    ['nats://s3cr3tT0KEN@nats.internal:4222', 'nats://***@nats.internal:4222'],
    ['redis://:hunter2@cache:6379/0', 'redis://***@cache:6379/0'],
    ['rediss://admin:hunter2@cache:6380?namespace=blue', 'rediss://***@cache:6380?namespace=blue'],
    ['nats://user:p%40ss@[::1]:4222', 'nats://***@[::1]:4222'],
    ['redis://:p@ss@cache:6379', 'redis://***@cache:6379'],
    ['https://token@control.example/v1/groups', 'https://***@control.example/v1/groups'],
  ])('strips every credential from %s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted);
    expect(redactUrl(url)).not.toMatch(/s3cr3t|hunter2|p%40ss|p@ss|token@|admin/);
  });

  it.each(['memory', 'memory://cluster', 'redis://cache:6379', 'nats://127.0.0.1:4222', 'https://control.example/a@b', 'not a url'])(
    'leaves %s as it is',
    (url) => {
      expect(redactUrl(url)).toBe(url);
    },
  );
});
