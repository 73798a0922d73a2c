import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { encodeRequestHead, splitHead } from '../shared/heads.js';
import { WireReader, shortString } from './hop-wire.js';

/** `bytes` cut at the given points (sorted, deduplicated, inside the buffer). */
function cut(bytes: Buffer, at: number[]): Buffer[] {
  const points = [...new Set(at.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(from, p));
    from = p;
  }
  return out;
}

describe('WireReader', () => {
  it('reads the same fields however the bytes are cut, and views it handed out stay intact', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }),
        fc.array(fc.string({ maxLength: 40 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        (group, values, at) => {
          const headers = values.flatMap((v, i) => [`x-h${i}`, v.replace(/[^\x20-\x7e]/g, '')]);
          const head = encodeRequestHead({ method: 'POST', target: '/p', authority: 'a.example', headers, body: true, upgrade: false });
          const tail = Buffer.from('body bytes');
          const wire = Buffer.concat([shortString(group), head, tail]);
          const reader = new WireReader();
          let gotGroup: string | undefined;
          let gotHead: Buffer | undefined;
          for (const piece of cut(wire, at)) {
            reader.push(Buffer.from(piece)); // a copy, as a socket hands over fresh buffers
            if (gotGroup === undefined) {
              const start = reader.checkpoint();
              gotGroup = reader.takeString();
              if (gotGroup === undefined) {
                reader.rollback(start);
                continue;
              }
            }
            gotHead ??= reader.takeHead((b) => splitHead(b));
          }
          expect(gotGroup).toBe(group);
          expect(gotHead?.equals(head)).toBe(true);
          expect(reader.drain().equals(tail)).toBe(true);
          expect(reader.buffered).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('gathers a field that arrives one byte at a time in a few growing buffers, not one copy per piece', () => {
    const value = 'v'.repeat(20_000);
    const wire = Buffer.concat([shortString(value.slice(0, 4096)), shortString(value.slice(4096, 8192))]);
    const reader = new WireReader();
    const allocations = vi.spyOn(Buffer, 'allocUnsafe');
    try {
      for (let i = 0; i < wire.length; i++) reader.push(wire.subarray(i, i + 1));
      // Doubling from 4 KB to hold 8 KB: a handful of buffers; a concat per piece would make thousands.
      expect(allocations.mock.calls.length).toBeLessThanOrEqual(4);
    } finally {
      allocations.mockRestore();
    }
    expect(reader.takeString()).toBe(value.slice(0, 4096));
    expect(reader.takeString()).toBe(value.slice(4096, 8192));
    expect(reader.buffered).toBe(0);
  });
});
