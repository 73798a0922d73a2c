const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a Go-style duration ("250ms", "5s", "1m30s", "1.5h") into milliseconds, so
 * values written for the seed mean the same here. Returns undefined if `text` is not one.
 */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  // Longer units first, so "ms" is not read as minutes then seconds.
  const part = /(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let matched = 0;
  while (part.lastIndex < text.length) {
    const match = part.exec(text);
    if (!match) return undefined;
    total += Number(match[1]) * UNIT_MS[match[2]!]!;
    matched++;
  }
  return matched > 0 ? total : undefined;
}
