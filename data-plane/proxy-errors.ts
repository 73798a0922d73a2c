import { STATUS_CODES } from 'node:http';
import { type ErrorCode, ReverstError } from '../shared/errors.js';

/** The header a hop's "no tunnel here" answer carries on HTTP/1.1 (and that the node drops from visitors). */
export const NO_TUNNEL_HEADER = 'x-reverst-no-tunnel';

/**
 * An answer the node gives a visitor itself. Like hono's HTTPException it knows its
 * response: a request step throws one, and the request's single finish() sends it.
 */
export class ProxyError extends ReverstError {
  override name = 'ProxyError';
  declare readonly status: number;
  /** Headers of the answer besides its content type and length. */
  readonly headers: Readonly<Record<string, string>>;
  /** A hop answer meaning "nothing was processed here": the node that sent it may try another node. */
  readonly noTunnelHere: boolean;

  private constructor(
    code: ErrorCode,
    status: number,
    message: string,
    options: { headers?: Record<string, string>; cause?: unknown; noTunnelHere?: boolean } = {},
  ) {
    super(code, message, { status, cause: options.cause });
    this.headers = options.headers ?? {};
    this.noTunnelHere = options.noTunnelHere ?? false;
  }

  /** The answer's body: the status and one line saying which. */
  get body(): string {
    return `${this.status} ${STATUS_CODES[this.status] ?? ''}: ${this.message}`;
  }

  static unknownHost(host: string): ProxyError {
    return new ProxyError('ERR_PROXY_UNKNOWN_HOST', 404, `unknown host: no tunnel group serves "${host.slice(0, 200)}"`);
  }

  static badRequest(detail: string): ProxyError {
    return new ProxyError('ERR_PROXY_BAD_REQUEST', 400, detail, { headers: { connection: 'close' } });
  }

  static badTarget(target: string): ProxyError {
    return ProxyError.badRequest(`the request target must be a path or an absolute http(s) URL, got "${target.slice(0, 200)}"`);
  }

  static noTunnel(group: string): ProxyError {
    return new ProxyError('ERR_PROXY_NO_TUNNEL', 503, `no tunnel is registered for group "${group}"`, { headers: { 'retry-after': '1' } });
  }

  /** To a hop: this node holds no tunnel for the group; the sending node may know another one. */
  static noTunnelHere(group: string): ProxyError {
    return new ProxyError(
      'ERR_PROXY_NO_TUNNEL',
      503,
      `no tunnel for group "${group}" on this node could take the request (forwarded requests are not forwarded again)`,
      { headers: { [NO_TUNNEL_HEADER]: '1' }, noTunnelHere: true },
    );
  }

  static tunnelFailed(requestId: string, cause?: unknown): ProxyError {
    return new ProxyError('ERR_PROXY_TUNNEL_FAILED', 502, `the tunnel failed before the response began (request ${requestId})`, { cause });
  }

  static hopFailed(requestId: string, cause?: unknown): ProxyError {
    return new ProxyError('ERR_PROXY_TUNNEL_FAILED', 502, `the node holding the tunnel failed while the request was being sent (request ${requestId})`, {
      cause,
    });
  }

  static badResponse(requestId: string, cause: unknown): ProxyError {
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new ProxyError('ERR_PROXY_TUNNEL_FAILED', 502, `the tunnel sent a response head that cannot be forwarded: ${detail} (request ${requestId})`, {
      cause,
    });
  }

  static timeout(ms: number, requestId: string): ProxyError {
    return new ProxyError('ERR_PROXY_TIMEOUT', 504, `no response from the tunnel within ${ms} ms of the request's last byte (request ${requestId})`);
  }

  static bodyTooLarge(limit: number): ProxyError {
    // The rest of the body is never read: the connection cannot carry another request.
    return new ProxyError('ERR_PROXY_BODY_TOO_LARGE', 413, `the request body is over the limit of ${limit} bytes`, { headers: { connection: 'close' } });
  }

  static headersTooLarge(detail: string): ProxyError {
    return new ProxyError('ERR_PROXY_HEADERS_TOO_LARGE', 431, `the header section is over the limit: ${detail}`, { headers: { connection: 'close' } });
  }

  static internal(requestId: string, cause: unknown): ProxyError {
    return new ProxyError('ERR_PROXY_TUNNEL_FAILED', 502, `proxy error (request ${requestId})`, { cause });
  }
}
