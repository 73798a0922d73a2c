/**
 * Reconnect pacing: exponential growth with full jitter, so that when a node dies the
 * clients it held do not all come back at the same instant. Each delay is drawn
 * uniformly from [minDelayMs, cap] where cap = min(maxDelayMs, minDelayMs · 2^attempt);
 * the floor keeps a flapping server from turning the loop into a busy spin.
 */
export interface BackoffOptions {
  minDelayMs: number;
  maxDelayMs: number;
  /** Uniform in [0, 1); injectable for tests. */
  random?: () => number;
}

export class Backoff {
  readonly #min: number;
  readonly #max: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions) {
    this.#min = options.minDelayMs;
    this.#max = Math.max(options.maxDelayMs, options.minDelayMs);
    this.#random = options.random ?? Math.random;
  }

  /** Failures since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next try; each call counts one more failure. */
  next(): number {
    // Capping the exponent keeps 2^attempt finite however long a node stays down.
    const cap = Math.min(this.#max, this.#min * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(this.#min + this.#random() * (cap - this.#min));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
