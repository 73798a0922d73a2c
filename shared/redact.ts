/**
 * The one redactor for URLs that may carry credentials (membership stores, groups sources,
 * auth endpoints): whatever sits before `@` in the authority goes, user name included, since a
 * lone user name is a token for NATS (`nats://TOKEN@host`) and many HTTP APIs.
 */
export const REDACTED = '***';

export interface RedactOptions {
  /**
   * Drop the query and fragment too: HTTP URLs carry tokens and signatures there (`?key=…`,
   * presigned `?X-Amz-Signature=…`). Off for store URLs, whose query (`?namespace=`) says
   * which cluster a message is about.
   */
  query?: boolean | undefined;
}

/** `url` with its userinfo replaced by `***` (and its query dropped if asked), safe for logs, errors, `/readyz` and responses. */
export function redactUrl(url: string, options: RedactOptions = {}): string {
  // Done on the text, not through URL: a malformed URL must not come out with its secret intact,
  // and URL would re-encode what is left.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0];
  let redacted = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${REDACTED}@`);
  // A password with an unescaped "/", "?" or "#" makes the URL unreadable, and the rule above
  // would stop at that character: take everything up to the last "@" as the userinfo instead.
  if (scheme && redacted === url && !URL.canParse(url) && url.lastIndexOf('@') > scheme.length) {
    redacted = `${scheme}${REDACTED}${url.slice(url.lastIndexOf('@'))}`;
  }
  return options.query ? redacted.replace(/[?#].*$/s, '') : redacted;
}
