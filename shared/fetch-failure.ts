/**
 * Why a fetch() failed, in one line. fetch reports network errors as TypeError('fetch failed')
 * with the real error ("connect ECONNREFUSED 127.0.0.1:8080", "other side closed") as its cause.
 * Web-standard only: the control plane's core uses it too.
 */
export function fetchFailure(err: unknown): string {
  const { cause } = (err ?? {}) as { cause?: unknown };
  return (cause instanceof Error && cause.message) || (err instanceof Error ? err.message : String(err));
}
