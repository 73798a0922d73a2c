/**
 * Bounds on what peers can make a node write: values that came off the wire are
 * clipped, and warnings that anyone can trigger without credentials are
 * rate-limited, so a flood costs a few lines, not gigabytes of log.
 */
import type { LogFields, Logger } from './log.js';

/** Long enough to recognise a group name or a scheme, short enough that a flood of them stays small. */
export const DEFAULT_CLIP_LENGTH = 64;

/** `value` cut to `max` characters, saying how much was left out: a peer must not choose how much we log. */
export function clip(value: string, max = DEFAULT_CLIP_LENGTH): string {
  if (value.length <= max) return value;
  return `${value.slice(0, max)}… (${value.length - max} more characters)`;
}

/** Warnings let through per window before the rest are only counted. */
export const DEFAULT_LOG_BURST = 20;
export const DEFAULT_LOG_WINDOW_MS = 10_000;

export interface RateLimitOptions {
  /** Lines written per window; the rest of the window's lines are counted, not written. */
  burst?: number | undefined;
  windowMs?: number | undefined;
  /** The line that reports how many were dropped, once per window that dropped any. */
  summary?: string | undefined;
}

export interface RateLimitedLog {
  /** Writes a warning if this window's budget allows, otherwise counts it. */
  warn(msg: string, fields?: LogFields): void;
  /** Lines dropped since this log was made. */
  readonly dropped: number;
}

/**
 * Warnings through `logger`, at most `burst` per window. When a window dropped
 * lines, one summary line says how many, at the window's end (its timer never
 * keeps the process alive).
 */
export function rateLimited(logger: Logger, options: RateLimitOptions = {}): RateLimitedLog {
  const burst = options.burst ?? DEFAULT_LOG_BURST;
  const windowMs = options.windowMs ?? DEFAULT_LOG_WINDOW_MS;
  const summary = options.summary ?? 'similar warnings dropped by the log rate limit';
  let windowStart = Number.NEGATIVE_INFINITY;
  let written = 0;
  let droppedNow = 0;
  let droppedTotal = 0;
  let flush: NodeJS.Timeout | undefined;

  const report = (): void => {
    flush = undefined;
    if (droppedNow === 0) return;
    logger.warn(summary, { dropped: droppedNow, windowMs });
    droppedNow = 0;
  };

  return {
    warn(msg, fields) {
      const now = performance.now();
      if (now - windowStart >= windowMs) {
        if (flush) clearTimeout(flush);
        report();
        windowStart = now;
        written = 0;
      }
      if (written < burst) {
        written++;
        logger.warn(msg, fields);
        return;
      }
      droppedNow++;
      droppedTotal++;
      if (!flush) {
        flush = setTimeout(report, Math.max(0, windowStart + windowMs - now));
        flush.unref();
      }
    },
    get dropped() {
      return droppedTotal;
    },
  };
}
