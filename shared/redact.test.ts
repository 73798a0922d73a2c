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
    // Unescaped separators in a password make the URL unreadable; the secret must still go.
    ['redis://:s3cr3t/hunter2@cache:6379', 'redis://***@cache:6379'],
    ['nats://admin:p#ss?s3cr3t@nats:4222', 'nats://***@nats:4222'],
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

  it('drops the query and fragment when asked, where HTTP URLs carry tokens and signatures', () => {
    expect(redactUrl('https://files.example/groups.yml?X-Amz-Signature=s3cr3t#top', { query: true })).toBe('https://files.example/groups.yml');
    expect(redactUrl('https://admin:s3cr3t@auth.example/check?key=s3cr3t', { query: true })).toBe('https://***@auth.example/check');
    expect(redactUrl('redis://cache:6379?namespace=blue')).toBe('redis://cache:6379?namespace=blue');
  });
});
