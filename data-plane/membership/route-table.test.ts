import { describe, expect, it } from 'vitest';
import { RELEASE_MEMORY_MS, RouteTable } from './route-table.js';
import type { NodeRecord } from './store.js';

const record = (address: string, ...groups: string[]): NodeRecord => ({ address, groups });
const ids = (table: RouteTable, group: string) =>
  table
    .nodesFor(group)
    .map((n) => n.id)
    .sort();

describe('RouteTable', () => {
  it('indexes nodes by group and reports only real changes', () => {
    const table = new RouteTable();
    expect(table.apply('a', record('a:1', 'x', 'y'))).toBe(true);
    expect(table.apply('b', record('b:1', 'x'))).toBe(true);
    expect(ids(table, 'x')).toEqual(['a', 'b']);
    expect(ids(table, 'y')).toEqual(['a']);

    expect(table.apply('a', record('a:1', 'y', 'x'))).toBe(false); // same set, other order
    expect(table.apply('a', record('a:2', 'y'))).toBe(true);
    expect(ids(table, 'x')).toEqual(['b']);
    expect(table.nodesFor('y')).toEqual([{ id: 'a', address: 'a:2' }]);

    expect(table.apply('b', undefined)).toBe(true);
    expect(table.apply('b', undefined)).toBe(false);
    expect(table.nodesFor('x')).toEqual([]);
    expect(table.size).toBe(1);
  });

  it('replace() makes the table match a listing', () => {
    const table = new RouteTable();
    table.apply('gone', record('g:1', 'x'));
    table.apply('kept', record('k:1', 'x'));
    table.beginListing();
    expect(
      table.replace(
        new Map([
          ['kept', record('k:1', 'x')],
          ['new', record('n:1', 'x')],
        ]),
      ),
    ).toBe(true);
    expect(ids(table, 'x')).toEqual(['kept', 'new']);
    table.beginListing();
    expect(
      table.replace(
        new Map([
          ['kept', record('k:1', 'x')],
          ['new', record('n:1', 'x')],
        ]),
      ),
    ).toBe(false);
  });

  it('replace() keeps what events wrote while the listing was read: they may be newer', () => {
    const table = new RouteTable();
    table.apply('a', record('a:1', 'x'));
    table.beginListing();
    table.apply('a', record('a:1', 'x', 'y')); // a changed after the listing read it
    table.apply('b', record('b:1', 'x')); // b joined after the listing
    table.apply('c', undefined); // c left after the listing saw it
    table.replace(
      new Map([
        ['a', record('a:1', 'x')],
        ['c', record('c:1', 'x')],
      ]),
    );
    expect(ids(table, 'y')).toEqual(['a']);
    expect(ids(table, 'x')).toEqual(['a', 'b']);

    // The next listing is authoritative again.
    table.beginListing();
    table.replace(new Map([['a', record('a:1', 'x')]]));
    expect(ids(table, 'x')).toEqual(['a']);
    expect(table.nodesFor('y')).toEqual([]);
  });

  it('releasedAt() says when a group lost its last holder, until a holder appears again', () => {
    let now = 1_000;
    const table = new RouteTable(() => now);
    expect(table.releasedAt('x')).toBeUndefined(); // never held
    table.apply('a', record('a:1', 'x'));
    table.apply('b', record('b:1', 'x', 'y'));
    expect(table.releasedAt('x')).toBeUndefined();

    now = 2_000;
    table.apply('a', undefined); // b still holds x
    expect(table.releasedAt('x')).toBeUndefined();
    now = 3_000;
    table.apply('b', record('b:1', 'y')); // the last holder of x lets go: a tunnel moving to another node
    expect(table.releasedAt('x')).toBe(3_000);
    expect(table.releasedAt('y')).toBeUndefined();

    now = 3_050;
    table.apply('c', record('c:1', 'x')); // its new holder
    expect(table.releasedAt('x')).toBeUndefined();

    // A listing that drops the last holder is a release too.
    now = 4_000;
    table.beginListing();
    table.replace(new Map([['b', record('b:1', 'y')]]));
    expect(table.releasedAt('x')).toBe(4_000);
    // An update of a holder that keeps the group is none.
    table.apply('b', record('b:2', 'y'));
    expect(table.releasedAt('y')).toBeUndefined();

    now = 4_000 + RELEASE_MEMORY_MS + 1;
    expect(table.releasedAt('x')).toBeUndefined(); // long gone, not moving
  });

  it('keeps releases in order as groups come and go, and changes only the groups a node gained or dropped', () => {
    let now = 0;
    const table = new RouteTable(() => now);
    table.apply('a', record('a:1', 'x', 'y', 'z'));
    now = 1_000;
    table.apply('a', record('a:1', 'y', 'z')); // x released at 1 s
    now = 2_000;
    table.apply('a', record('a:1', 'x', 'z')); // x back, y released at 2 s
    now = 3_000;
    table.apply('a', record('a:1', 'z')); // x released again, at 3 s: after y
    expect(table.releasedAt('x')).toBe(3_000);
    expect(table.releasedAt('y')).toBe(2_000);
    expect(table.releasedAt('z')).toBeUndefined();
    // A node that moves keeps its groups, under its new address.
    table.apply('a', record('a:2', 'z'));
    expect(table.nodesFor('z')).toEqual([{ id: 'a', address: 'a:2' }]);
    expect(table.releasedAt('z')).toBeUndefined();
    // y's release is forgotten first, then x's; a later release is remembered on its own clock.
    now = 2_000 + RELEASE_MEMORY_MS + 1;
    table.apply('b', record('b:1', 'w'));
    table.apply('b', record('b:1'));
    expect(table.releasedAt('y')).toBeUndefined();
    expect(table.releasedAt('x')).toBe(3_000);
    expect(table.releasedAt('w')).toBe(now);
  });
});
