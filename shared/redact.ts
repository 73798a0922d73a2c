/**
 * The one redactor for URLs that may carry credentials (membership stores, groups sources):
 * whatever sits before `@` in the authority goes, user name included, since a lone user
 * name is a token for NATS (`nats://TOKEN@host`) and many HTTP APIs.
 */
export const REDACTED = '***';

/** `url` with its userinfo replaced by `***`, safe for logs, errors and `/readyz`. */
export function redactUrl(url: string): string {
  // Done on the text, not through URL: a malformed URL must not come out with its secret intact,
  // and URL would re-encode what is left.
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${REDACTED}@`);
}
