import { describe, expect, it } from 'vitest';
import type { QuicConnection } from '../shared/quic/index.js';
import { TunnelRegistry, type Tunnel } from './tunnels.js';

/** A registered tunnel as the picker sees it: its group, its load and whether its connection is closing. */
function tunnel(id: string, inFlight = 0): Tunnel & { connection: { isClosing: boolean } } {
  const connection = { isClosing: false, closed: new Promise(() => {}) } as unknown as QuicConnection;
  return { id, group: 'g', connection, control: undefined as never, inFlight };
}

function registry(policy: 'round-robin' | 'least-inflight', ...tunnels: Tunnel[]): TunnelRegistry {
  const r = new TunnelRegistry(() => policy);
  for (const t of tunnels) r.add(t);
  return r;
}

const picks = (r: TunnelRegistry, n: number, exclude?: ReadonlySet<Tunnel>) => Array.from({ length: n }, () => r.pick('g', exclude)?.id);

describe('least-in-flight picking', () => {
  it('picks the tunnel serving the fewest requests', () => {
    const [a, b, c] = [tunnel('a', 3), tunnel('b', 1), tunnel('c', 2)];
    const r = registry('least-inflight', a, b, c);
    expect(r.pick('g')?.id).toBe('b');
    b.inFlight = 5;
    expect(r.pick('g')?.id).toBe('c');
    c.inFlight = 9;
    expect(r.pick('g')?.id).toBe('a');
  });

  it('takes tied tunnels in turn, so equal load spreads', () => {
    const r = registry('least-inflight', tunnel('a'), tunnel('b'), tunnel('c'));
    expect(picks(r, 6)).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('follows the load as the proxy counts it: a request in flight moves the next one elsewhere', () => {
    const tunnels = [tunnel('a'), tunnel('b')];
    const r = registry('least-inflight', ...tunnels);
    const served: string[] = [];
    for (let i = 0; i < 4; i++) {
      const t = r.pick('g')!;
      t.inFlight++; // as the proxy does while a request runs
      served.push(t.id);
    }
    expect(served.sort()).toEqual(['a', 'a', 'b', 'b']);
    tunnels[0]!.inFlight = 0; // a's requests finished
    expect(r.pick('g')?.id).toBe('a');
  });

  it('skips tunnels already tried and connections that are closing', () => {
    const [a, b, c] = [tunnel('a', 0), tunnel('b', 1), tunnel('c', 2)];
    const r = registry('least-inflight', a, b, c);
    expect(r.pick('g', new Set([a]))?.id).toBe('b');
    b.connection.isClosing = true;
    expect(r.pick('g', new Set([a]))?.id).toBe('c');
    expect(r.pick('g', new Set([a, c]))).toBeUndefined();
  });

  it('applies a policy changed by a reload to the tunnels already registered', () => {
    const r = registry('round-robin', tunnel('a', 5), tunnel('b', 0));
    expect(picks(r, 2)).toEqual(['a', 'b']);
    r.setPolicies(() => 'least-inflight');
    expect(picks(r, 3)).toEqual(['b', 'b', 'b']);
  });
});

describe('round-robin picking', () => {
  it('takes every tunnel in turn, whatever its load, and keeps the turn when one leaves', () => {
    const [a, b, c] = [tunnel('a', 9), tunnel('b'), tunnel('c')];
    const r = registry('round-robin', a, b, c);
    expect(picks(r, 4)).toEqual(['a', 'b', 'c', 'a']);
    r.remove(b);
    expect(picks(r, 3)).toEqual(['c', 'a', 'c']);
    expect(r.count('g')).toBe(2);
  });
});
