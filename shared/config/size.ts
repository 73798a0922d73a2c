// Decimal units are powers of 1000 and binary ones powers of 1024, as their names say.
const UNIT_BYTES: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** The accepted forms, for error messages. */
export const SIZE_EXAMPLES = '16384, 16KiB, 1MiB or 64kB';

/**
 * Parses a byte count with an optional unit ("16384", "16KiB", "1.5MiB", "64kB"; units are
 * case-insensitive). Returns undefined if `text` is not a whole number of bytes.
 */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = UNIT_BYTES[match[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(match[1]) * unit;
  const whole = Math.round(bytes);
  // 1.1kB is 1100 bytes, whatever binary floating point makes of 1.1 * 1000; 1.5 bytes is not a size.
  if (Math.abs(bytes - whole) > 1e-6 || !Number.isSafeInteger(whole)) return undefined;
  return whole;
}
