import { describe, expect, it } from 'vitest';
import { parseGroups } from './groups.js';
import { hostFromHeader, hostPatternProblem, matchHost } from './hosts.js';

describe('hostPatternProblem', () => {
  it.each(['flipt.dev.local', 'localhost', '*.apps.example.dev', '*.dev', '10.0.0.1', 'my_service.internal', 'a'.repeat(63) + '.dev'])(
    'accepts %s',
    (pattern) => expect(hostPatternProblem(pattern)).toBeUndefined(),
  );

  it.each([
    ['', 'must not be empty'],
    ['*', 'a wildcard may only be the whole first label'],
    ['**.dev', 'a wildcard may only be the whole first label'],
    ['*.*.dev', 'a wildcard may only be the whole first label'],
    ['a..dev', 'label "" is not valid'],
    ['a.dev-', 'label "dev-" is not valid'],
    ['has space.dev', 'label "has space" is not valid'],
    ['a'.repeat(64) + '.dev', 'is not valid'],
    [`${'a.'.repeat(127)}ab`, 'at most 253 characters'],
    ['a.dev:443', 'must not include a port'],
  ])('rejects %j', (pattern, problem) => {
    expect(hostPatternProblem(pattern)).toContain(problem);
  });
});

describe('hostFromHeader', () => {
  it.each([
    ['Example.COM:8181', 'example.com'],
    ['example.com.', 'example.com'],
    ['[::1]:8080', '::1'],
    ['  spaced.dev ', 'spaced.dev'],
  ])('%j → %j', (header, host) => expect(hostFromHeader(header)).toBe(host));
});

describe('matchHost', () => {
  const config = parseGroups(
    [
      'groups:',
      '  exact: { hosts: [api.apps.example.dev, Flipt.Dev.Local] }',
      '  wild: { hosts: ["*.apps.example.dev"] }',
      '  top: { hosts: ["*.example.dev"] }',
    ].join('\n'),
    'g.yml',
  );

  it.each([
    ['flipt.dev.local', 'exact'],
    ['FLIPT.dev.local:8181', 'exact'],
    ['flipt.dev.local.', 'exact'],
    ['api.apps.example.dev', 'exact'],
    ['web.apps.example.dev', 'wild'],
    ['WEB.Apps.Example.Dev:443', 'wild'],
    ['apps.example.dev', 'top'],
    ['a.b.apps.example.dev', undefined],
    ['example.dev', undefined],
    ['unknown.dev', undefined],
    ['*.apps.example.dev', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('%j → %s', async (header, group) => {
    expect(matchHost(await config, header)).toBe(group);
  });

  it('sees the hosts of the config it is given', async () => {
    const other = await parseGroups('groups:\n  g: { hosts: [flipt.dev.local] }\n', 'g.yml');
    expect(matchHost(other, 'flipt.dev.local')).toBe('g');
    expect(matchHost(await config, 'flipt.dev.local')).toBe('exact');
  });
});
