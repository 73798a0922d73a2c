import type { GroupsConfig, GroupsSource } from '../../shared/config/index.js';

export type SourceEvent = { config: GroupsConfig; error?: undefined } | { error: Error; config?: undefined };

export interface SourceEvents {
  /** The next event (a new config or an error), waiting up to `timeoutMs` for it. */
  next(timeoutMs?: number): Promise<SourceEvent>;
  /** The next new config; errors before it are collected and returned with it. */
  nextConfig(timeoutMs?: number): Promise<{ config: GroupsConfig; errors: Error[] }>;
  /** The next error; a config before it fails the wait (it would mean a bad update was applied). */
  nextError(timeoutMs?: number): Promise<Error>;
  /** Events not taken yet. */
  readonly pending: readonly SourceEvent[];
}

/** Calls `source.watch()` and queues what it reports, so a test can wait for each event in turn. */
export function watchEvents(source: GroupsSource): SourceEvents {
  const queue: SourceEvent[] = [];
  let wake: (() => void) | undefined;
  const push = (event: SourceEvent) => {
    queue.push(event);
    wake?.();
  };
  source.watch(
    (config) => push({ config }),
    (error) => push({ error }),
  );
  const next = async (timeoutMs = 15_000): Promise<SourceEvent> => {
    const deadline = Date.now() + timeoutMs;
    while (queue.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${source.name}: no watch event within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
    return queue.shift()!;
  };
  return {
    next,
    async nextConfig(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      const errors: Error[] = [];
      for (;;) {
        const event = await next(Math.max(1, deadline - Date.now()));
        if (event.config) return { config: event.config, errors };
        errors.push(event.error);
      }
    },
    async nextError(timeoutMs = 15_000) {
      const event = await next(timeoutMs);
      if (!event.error) throw new Error(`${source.name}: expected an error, got a new config with groups ${[...event.config.groups.keys()].join(', ')}`);
      return event.error;
    },
    get pending() {
      return queue;
    },
  };
}
