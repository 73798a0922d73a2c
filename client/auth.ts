import { ReverstError } from '../shared/errors.js';

/** What the client puts in its registration's `Authorization` metadata: `<scheme> <credentials>`. */
export interface Auth {
  scheme: string;
  credentials: string;
}

/** HTTP Basic (RFC 7617), as the seed's `basic` strategy expects it. */
export function basic(username: string, password: string): Auth {
  // The server splits at the first ':', so a colon in the username could never match.
  if (username.includes(':')) throw new ReverstError('ERR_INVALID_OPTION', 'basic auth: the username must not contain ":"');
  return { scheme: 'Basic', credentials: Buffer.from(`${username}:${password}`, 'utf8').toString('base64') };
}

export function bearer(token: string): Auth {
  return { scheme: 'Bearer', credentials: token };
}

/** The metadata value for `auth`; rejects values the server's `<Scheme> <payload>` parser would misread. */
export function authorizationValue(auth: Auth): string {
  const { scheme, credentials } = auth;
  if (typeof scheme !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(scheme)) {
    throw new ReverstError('ERR_INVALID_OPTION', `auth.scheme must be one token such as "Basic" or "Bearer", got ${JSON.stringify(scheme)}`);
  }
  if (typeof credentials !== 'string' || credentials.trim() === '') {
    throw new ReverstError('ERR_INVALID_OPTION', `auth.credentials must be a non-empty string (scheme ${scheme})`);
  }
  return `${scheme} ${credentials}`;
}
