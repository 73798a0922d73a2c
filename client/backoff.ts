// Reconnect pacing lives in shared/ (the node's control-plane source backs off the same way).
export { Backoff, type BackoffOptions } from '../shared/backoff.js';

/**
 * The addresses a tunnel dials, in order: it stays on one while it works and moves to
 * the next (wrapping around) after a failure or a drain.
 */
export class AddressRing<T> {
  readonly #items: readonly T[];
  #index: number;

  constructor(items: readonly T[], start = 0) {
    if (items.length === 0) throw new RangeError('AddressRing needs at least one address');
    this.#items = items;
    this.#index = start % items.length;
  }

  get current(): T {
    return this.#items[this.#index]!;
  }

  get size(): number {
    return this.#items.length;
  }

  advance(): T {
    this.#index = (this.#index + 1) % this.#items.length;
    return this.current;
  }
}
