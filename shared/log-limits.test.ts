import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { createLogger } from './log.js';
import { clip, rateLimited } from './log-limits.js';

function capture() {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', stream: { write: (line) => lines.push(line) } });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, records };
}

describe('clip', () => {
  it('keeps short values and cuts long ones, saying how much was left out', () => {
    expect(clip('flipt.dev.local')).toBe('flipt.dev.local');
    expect(clip('x'.repeat(64))).toBe('x'.repeat(64));
    expect(clip('x'.repeat(60_000))).toBe(`${'x'.repeat(64)}… (59936 more characters)`);
    expect(clip('abcdef', 3)).toBe('abc… (3 more characters)');
  });
});

describe('rateLimited', () => {
  it('writes the burst, counts the rest, and reports the count once at the end of the window', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    onTestFinished(() => void vi.useRealTimers());
    const { logger, records } = capture();
    const log = rateLimited(logger, { burst: 3, windowMs: 200, summary: 'dropped some' });
    for (let i = 0; i < 1_000; i++) log.warn('registration failed', { i });
    expect(records().map((r) => r.i)).toEqual([0, 1, 2]);
    expect(log.dropped).toBe(997);
    vi.advanceTimersByTime(199);
    expect(records()).toHaveLength(3);
    vi.advanceTimersByTime(1);
    expect(records()).toHaveLength(4);
    expect(records()[3]).toMatchObject({ level: 'warn', msg: 'dropped some', dropped: 997, windowMs: 200 });
    // A new window gets a new burst; a window that dropped nothing adds no summary.
    log.warn('again', { i: 'next' });
    expect(records().at(-1)).toMatchObject({ msg: 'again', i: 'next' });
    vi.advanceTimersByTime(1_000);
    expect(records()).toHaveLength(5);
  });

  it('with a zero-length window, never drops', () => {
    const { logger, records } = capture();
    const log = rateLimited(logger, { burst: 1, windowMs: 0 });
    for (let i = 0; i < 5; i++) log.warn('w', { i });
    expect(records()).toHaveLength(5);
    expect(log.dropped).toBe(0);
  });
});
