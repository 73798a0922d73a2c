import { describe, expect, it } from 'vitest';
import { registerGroupsSource } from '../shared/config/index.js';
import { parseNodeFlags, usage } from './flags.js';

const required = ['-n', 'tunnel.example', '-k', 'server.key', '-c', 'server.crt'];

const flags = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
  const parsed = parseNodeFlags(argv, env);
  if (parsed.help) throw new Error('unexpected help');
  return parsed;
};

describe('reverst flags', () => {
  it("keep the seed's names and defaults", () => {
    expect(flags(required)).toMatchObject({
      log: 'info',
      tunnelAddress: '127.0.0.1:7171',
      httpAddress: '0.0.0.0:8181',
      tunnelGroups: 'groups.yml',
      watchGroups: false,
      managementAddress: undefined,
      maxIdleTimeoutMs: 60_000,
      keepAlivePeriodMs: 30_000,
      maxHeaderSize: 16_384,
      maxBodySize: 0,
      membership: 'memory',
      membershipNamespace: undefined,
    });
  });

  it('check addresses before anything starts, and write them canonically', () => {
    expect(flags([...required, '-s', ':8080', '-a', '[::1]:0', '--management-address', 'localhost:9090'])).toMatchObject({
      httpAddress: '0.0.0.0:8080',
      tunnelAddress: '[::1]:0',
      managementAddress: 'localhost:9090',
    });
    expect(() => flags([...required, '-s', 'nonsense'])).toThrow(
      '-s/--http-address: expected HOST:PORT such as 127.0.0.1:7171 or [::1]:7171, got "nonsense" (see reverst -h)',
    );
    expect(() => flags([...required, '--internal-address', '::1:9001'])).toThrow(/--internal-address: put an IPv6 address in brackets, e.g. \[::1\]:9001/);
    // Published for other nodes to dial: they would hop to themselves.
    expect(() => flags([...required, '--internal-address', '0.0.0.0:9001'])).toThrow(
      /--internal-address: "0.0.0.0:9001" is not an address another machine can dial/,
    );
    expect(() => flags(required, { REVERST_TUNNEL_ADDRESS: '127.0.0.1:70000' })).toThrow(/REVERST_TUNNEL_ADDRESS: port 70000 is out of range 0-65535/);
  });

  it('take sizes with units and booleans as the environment spells them', () => {
    expect(flags([...required, '--max-header-size', '32KiB', '--max-body-size', '10MB']).maxHeaderSize).toBe(32_768);
    expect(flags([...required, '--max-body-size', '10MB']).maxBodySize).toBe(10_000_000);
    expect(flags(required, { REVERST_WATCH_GROUPS: 'yes' }).watchGroups).toBe(true);
    expect(() => flags(required, { REVERST_WATCH_GROUPS: 'sometimes' })).toThrow(/^REVERST_WATCH_GROUPS: expected true or false/);
  });

  it('refuse combinations that cannot work', () => {
    expect(() => flags([...required, '--standalone', '--membership', 'redis://r:6379'])).toThrow(
      /^--standalone and --membership conflict: a standalone node keeps membership in memory/,
    );
    expect(() => flags([...required, '--cluster-secret', 's', '--cluster-secret-file', 'f'])).toThrow(/--cluster-secret and --cluster-secret-file conflict/);
    expect(() => flags([...required, '--membership-namespace', 'a:b'])).toThrow(/--membership-namespace: membership namespace "a:b" may only contain/);
    expect(() => flags([...required, '--keep-alive-period', '2m'])).toThrow(/--keep-alive-period must be shorter than --max-idle-timeout/);
    expect(() => flags([...required, '-g', 'groups.yml', '--groups-cache', 'cache.json'])).toThrow(
      '--groups-cache is for a control plane source (-g http(s)://…/v1/groups) only, not for "groups.yml" (see reverst -h)',
    );
    expect(() => flags([...required, '--control-plane-token-file', 't', '--groups-cache', 'c'])).toThrow(
      /^--control-plane-token-file and --groups-cache are for a control plane source/,
    );
    expect(flags([...required, '-g', 'https://cp/v1/groups', '--control-plane-token-file', 't', '--groups-cache', 'c']).groupsCache).toBe('c');
  });
});

describe('--unresponsive-timeout', () => {
  it('defaults to 5s, reads REVERST_UNRESPONSIVE_TIMEOUT, and lets the flag win', () => {
    expect(flags(required).unresponsiveTimeoutMs).toBe(5_000);
    expect(flags(required, { REVERST_UNRESPONSIVE_TIMEOUT: '2s' }).unresponsiveTimeoutMs).toBe(2_000);
    expect(flags([...required, '--unresponsive-timeout', '3s'], { REVERST_UNRESPONSIVE_TIMEOUT: '2s' }).unresponsiveTimeoutMs).toBe(3_000);
  });

  it('takes 0 to turn it off and refuses values that would drop healthy tunnels', () => {
    expect(flags([...required, '--unresponsive-timeout', '0s']).unresponsiveTimeoutMs).toBe(0);
    expect(() => flags([...required, '--unresponsive-timeout', '500ms'])).toThrow(/--unresponsive-timeout below 1s/);
    expect(() => flags([...required, '--unresponsive-timeout', 'soon'])).toThrow(/"soon" is not a duration/);
  });
});

describe('reverst -h', () => {
  it('offers only the groups sources this build has', () => {
    const line = () =>
      usage()
        .split('\n')
        .find((l) => l.includes('--tunnel-groups'));
    expect(line()).toMatch(/tunnel groups source: a file path or file:\/\/…, k8s:\/\/…, http:\/\/…, https:\/\/… \(default: groups\.yml\)$/);
    // A source that registers shows up without touching the table.
    registerGroupsSource('test-only', () => {
      throw new Error('not used');
    });
    expect(line()).toContain('https://…, test-only://…');
  });
});
