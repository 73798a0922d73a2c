import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.js';
import { parseSize } from './size.js';

describe('parseSize', () => {
  it.each([
    ['0', 0],
    ['16384', 16_384],
    ['16KiB', 16_384],
    ['16kib', 16_384],
    ['1MiB', 1_048_576],
    ['1.5MiB', 1_572_864],
    ['64kB', 64_000],
    ['64KB', 64_000],
    ['1.1kB', 1_100],
    ['10MB', 10_000_000],
    ['2GiB', 2_147_483_648],
    ['512B', 512],
  ])('%s is %i bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(['', 'KiB', '-1', '1.5', '1.5B', '16 parsecs', '1e3', '0x10', '16KiBs', '1TiB'])('refuses %j', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });
});

describe('parseDuration, Go units below a millisecond', () => {
  it('reads ns, us and µs as fractions of a millisecond', () => {
    expect(parseDuration('1500us')).toBe(1.5);
    expect(parseDuration('250µs')).toBe(0.25);
    expect(parseDuration('1s500000000ns')).toBe(1_500);
  });
});
