import { describe, expect, it } from 'vitest';
import { eventually } from '../../test/contract/eventually.js';
import { PBKDF2_ITERATIONS, PasswordChecks, hashPassword, parsePasswordHash, type PasswordHash } from './password-hash.js';
import { heldDerivation } from '../../test/harness/held-derivation.js';

const salt = new Uint8Array(16).fill(7);
const parsed = (text: string): PasswordHash => {
  const hash = parsePasswordHash(text);
  if ('problem' in hash) throw new Error(hash.problem);
  return hash;
};

describe('hashPassword / parsePasswordHash', () => {
  it('gives the same PHC string for the same password and salt, and a different one otherwise', async () => {
    const a = await hashPassword('pass', salt);
    expect(a).toMatch(new RegExp(`^\\$pbkdf2-sha256\\$i=${PBKDF2_ITERATIONS}\\$[A-Za-z0-9+/]{22}\\$[A-Za-z0-9+/]{43}$`));
    expect(await hashPassword('pass', salt)).toBe(a);
    expect(await hashPassword('pass2', salt)).not.toBe(a);
    expect(await hashPassword('pass', new Uint8Array(16).fill(8))).not.toBe(a);
    expect(parsed(a)).toMatchObject({ iterations: PBKDF2_ITERATIONS, salt, text: a });
  });

  it('matches an independent PBKDF2 implementation (node:crypto)', async () => {
    const { pbkdf2Sync } = await import('node:crypto');
    const expected = pbkdf2Sync('pässword', Buffer.from(salt), 20_000, 32, 'sha256').toString('base64').replace(/=+$/, '');
    expect((await hashPassword('pässword', salt, 20_000)).split('$').at(-1)).toBe(expected);
  });

  it.each([
    ['plain text', 'pass', 'expected'],
    ['another algorithm', '$scrypt$ln=16$abc$def', 'expected'],
    ['too few iterations', '$pbkdf2-sha256$i=1000$AAAAAAAAAAA$' + 'A'.repeat(43), 'iterations'],
    ['too many iterations', '$pbkdf2-sha256$i=5000000$AAAAAAAAAAA$' + 'A'.repeat(43), 'iterations'],
    ['a short salt', '$pbkdf2-sha256$i=100000$AAAA$' + 'A'.repeat(43), 'salt'],
    ['a short hash', '$pbkdf2-sha256$i=100000$AAAAAAAAAAA$AAAA', 'hash'],
    ['not base64', '$pbkdf2-sha256$i=100000$AAAA*AAAAAA$' + 'A'.repeat(43), 'salt'],
  ])('refuses %s', (_, text, word) => {
    const result = parsePasswordHash(text);
    expect('problem' in result && result.problem).toMatch(word);
  });
});

describe('PasswordChecks', () => {
  it('tells a match from a mismatch, and remembers only matches', async () => {
    const checks = new PasswordChecks();
    const hash = parsed(await hashPassword('right', salt, 10_000));
    expect(await checks.verify(hash, 'wrong')).toBe('mismatch');
    expect(await checks.verify(hash, 'wrong')).toBe('mismatch');
    expect(checks.derivations).toBe(2);
    expect(await checks.verify(hash, 'right')).toBe('match');
    expect(await checks.verify(hash, 'right')).toBe('match');
    expect(checks.derivations).toBe(3);
  });

  it('does not reuse a remembered match once the hash changes', async () => {
    const checks = new PasswordChecks();
    const before = parsed(await hashPassword('right', salt, 10_000));
    const after = parsed(await hashPassword('new', salt, 10_000));
    expect(await checks.verify(before, 'right')).toBe('match');
    expect(await checks.verify(after, 'right')).toBe('mismatch');
    expect(checks.derivations).toBe(2);
  });

  it('derives once for identical checks in flight', async () => {
    const checks = new PasswordChecks();
    const hash = parsed(await hashPassword('right', salt, 10_000));
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => checks.verify(hash, i % 2 ? 'right' : 'wrong')));
    expect(results.filter((r) => r === 'match')).toHaveLength(10);
    expect(results.filter((r) => r === 'mismatch')).toHaveLength(10);
    expect(checks.derivations).toBe(2);
  });

  it('runs at most maxConcurrent at once and answers busy beyond the queue', async () => {
    const hold = heldDerivation();
    const checks = new PasswordChecks({ maxConcurrent: 1, maxQueued: 2, derive: hold.derive });
    const hash = parsed(await hashPassword('right', salt, 10_000));
    const results: string[] = [];
    const all = Array.from({ length: 5 }, (_, i) => checks.verify(hash, `guess-${i}`).then((r) => results.push(r)));
    // One derives (held), two wait, and the other two are refused at once.
    await eventually(() => expect([results, checks.pending, hold.started]).toEqual([['busy', 'busy'], 3, 1]), 5_000);
    hold.open();
    await Promise.all(all);
    expect(results.sort()).toEqual(['busy', 'busy', 'mismatch', 'mismatch', 'mismatch']);
    expect([checks.derivations, hold.started, checks.pending]).toEqual([3, 3, 0]);
    // Once the queue has drained, checks run again.
    expect(await checks.verify(hash, 'right')).toBe('match');
  });

  it('forgets the oldest match beyond its cache size', async () => {
    const checks = new PasswordChecks({ cacheSize: 2 });
    const hashes = await Promise.all(['a', 'b', 'c'].map(async (p) => parsed(await hashPassword(p, salt, 10_000))));
    for (const [i, p] of ['a', 'b', 'c'].entries()) expect(await checks.verify(hashes[i]!, p)).toBe('match');
    expect(checks.derivations).toBe(3);
    expect(await checks.verify(hashes[2]!, 'c')).toBe('match');
    expect(await checks.verify(hashes[1]!, 'b')).toBe('match');
    expect(checks.derivations).toBe(3);
    expect(await checks.verify(hashes[0]!, 'a')).toBe('match');
    expect(checks.derivations).toBe(4);
  });
});
