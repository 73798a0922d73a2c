import { describe, expect, it } from 'vitest';
import { AddressRing, Backoff } from './backoff.js';

describe('Backoff', () => {
  it('grows the cap exponentially from minDelayMs up to maxDelayMs', () => {
    const top = new Backoff({ minDelayMs: 100, maxDelayMs: 1_000, random: () => 0.999_999 });
    expect(Array.from({ length: 7 }, () => top.next())).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('never goes below the floor (full jitter above minDelayMs)', () => {
    const bottom = new Backoff({ minDelayMs: 100, maxDelayMs: 1_000, random: () => 0 });
    expect(Array.from({ length: 5 }, () => bottom.next())).toEqual([100, 100, 100, 100, 100]);
  });

  it('spreads delays uniformly between the floor and the cap', () => {
    const samples = Array.from({ length: 2_000 }, () => {
      const backoff = new Backoff({ minDelayMs: 100, maxDelayMs: 30_000 });
      for (let i = 0; i < 4; i++) backoff.next();
      return backoff.next(); // fifth attempt: cap 1600
    });
    expect(Math.min(...samples)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...samples)).toBeLessThanOrEqual(1_600);
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    expect(mean).toBeGreaterThan(800);
    expect(mean).toBeLessThan(900);
    // Not bunched: every tenth of the range gets some.
    const deciles = new Set(samples.map((s) => Math.min(9, Math.floor(((s - 100) / 1_500) * 10))));
    expect(deciles.size).toBe(10);
  });

  it('counts attempts and starts again after reset', () => {
    const backoff = new Backoff({ minDelayMs: 50, maxDelayMs: 10_000, random: () => 0.999_999 });
    backoff.next();
    backoff.next();
    expect(backoff.attempt).toBe(2);
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(50);
  });

  it('stays finite after very many failures', () => {
    const backoff = new Backoff({ minDelayMs: 100, maxDelayMs: 30_000, random: () => 0.5 });
    for (let i = 0; i < 5_000; i++) backoff.next();
    expect(backoff.next()).toBe(15_050);
  });
});

describe('AddressRing', () => {
  it('moves through the addresses in order and wraps around', () => {
    const ring = new AddressRing(['a', 'b', 'c']);
    expect([ring.current, ring.advance(), ring.advance(), ring.advance(), ring.advance()]).toEqual(['a', 'b', 'c', 'a', 'b']);
  });

  it('stays on the current address until told to move', () => {
    const ring = new AddressRing(['a', 'b']);
    ring.advance();
    expect([ring.current, ring.current]).toEqual(['b', 'b']);
  });

  it('can start anywhere, so parallel connections begin on different nodes', () => {
    expect(new AddressRing(['a', 'b', 'c'], 1).current).toBe('b');
    expect(new AddressRing(['a', 'b', 'c'], 4).current).toBe('b');
  });

  it('refuses an empty list', () => {
    expect(() => new AddressRing([])).toThrow(RangeError);
  });
});
