/**
 * Every error reverst raises on purpose carries a stable `code` callers can switch on
 * (messages may change, codes do not). Each code is documented here; a test checks that
 * every error class uses a documented code.
 */
export const ERROR_CODES = {
  ERR_INVALID_OPTION: 'an option passed to a reverst API or flag has an unusable value',
  ERR_CONFIG_INVALID: 'the tunnel groups configuration could not be loaded; the message names source, line, column and field',
  ERR_CONFIG_SOURCE_UNSUPPORTED: 'the tunnel groups source (-g) uses a scheme this build cannot read',
  ERR_CONTROL_PLANE_UNREACHABLE:
    'the control plane a node follows (-g http(s)://…) did not answer, or answered with a server error; the node keeps its last config and retries',
  ERR_CONTROL_PLANE_REFUSED: "the control plane refused the node's API token (check --control-plane-token-file)",
  ERR_PROTOCOL_FRAME_TOO_LARGE: 'a frame is longer than the negotiated maximum frame size',
  ERR_PROTOCOL_MALFORMED_FRAME: 'a frame body is not a valid msgpack map',
  ERR_PROTOCOL_UNEXPECTED_EOF: 'the stream ended before a whole frame arrived',
  ERR_PROTOCOL_TIMEOUT: 'no whole frame arrived within the allowed time',
  ERR_PROTOCOL_BAD_MESSAGE: 'a frame decoded but a field has the wrong type or value',
  ERR_PROTOCOL_BAD_HEAD: 'a request or response head on a request stream is malformed or over the size limit',
  ERR_UNAUTHORIZED: 'the tunnel group rejected the credentials (do not retry with the same credentials)',
  ERR_GROUP_NOT_FOUND: 'the server does not know the requested tunnel group',
  ERR_BAD_REQUEST: 'the server rejected the registration as malformed (do not retry unchanged)',
  ERR_SERVER: 'the server failed or went away; retrying is expected to help',
  ERR_PROXY_UNKNOWN_HOST: 'a visitor asked for a host no tunnel group serves (404)',
  ERR_PROXY_BAD_REQUEST: 'a visitor request the node cannot forward, such as a target that is neither a path nor an absolute http(s) URL (400)',
  ERR_PROXY_NO_TUNNEL: 'no tunnel, on this node or another, could take the request before it began (503)',
  ERR_PROXY_TUNNEL_FAILED: 'the tunnel or the hop failed before a usable response head arrived (502)',
  ERR_PROXY_TIMEOUT: "no response head arrived within --request-timeout of the request's last byte (504)",
  ERR_PROXY_BODY_TOO_LARGE: 'the request body is over --max-body-size (413)',
  ERR_PROXY_HEADERS_TOO_LARGE: 'the request header section is over --max-header-size (431)',
  ERR_HOP_REFUSED: 'another node refused a hop connection: wrong cluster secret or not a hop peer',
  ERR_HOP_NO_TUNNEL: 'the node a request was forwarded to holds no tunnel for its group (a stale route); nothing was processed there',
  ERR_PROXY_LENGTH_MISMATCH: "a relayed response body ran past or stopped short of its Content-Length; the visitor's response is cut",
  ERR_TLS_SERVER_NAME: "the node's certificate is not valid for the server name asked for; the message names both (do not retry unchanged)",
  ERR_LISTEN: 'a listener could not be opened; the message names the flag and the address (in use, not local, or privileged)',
  ERR_QUIC_CONNECT_TIMEOUT: 'no QUIC handshake completed within the connect timeout',
  ERR_QUIC_CONNECTION_REFUSED: 'the peer host answered that nothing listens on that UDP port',
  ERR_QUIC_TLS: 'the TLS handshake failed (certificate, CA, server name or ALPN)',
  ERR_QUIC_IDLE_TIMEOUT: 'nothing was heard from the peer within the idle timeout',
  ERR_QUIC_PEER_UNRESPONSIVE: 'the peer acknowledged nothing for the unresponsive timeout while data waited for it',
  ERR_QUIC_CLOSED: 'the connection was closed while something still used it',
  ERR_QUIC_STREAM_RESET: 'the peer reset the stream',
  ERR_QUIC_PROTOCOL: 'the peer broke the QUIC protocol, or quiche failed',
  ERR_TUNNEL_SILENT: "a tunnel's client acknowledged nothing of a request for a second; the node moves the request to another tunnel",
  ERR_K8S_REF_INVALID: 'a k8s://configmap/… or k8s://secret/… reference is malformed (it needs <namespace>/<name>/<key>)',
  ERR_K8S_NO_CONFIG: 'no Kubernetes config was found: set KUBECONFIG, or run in a pod with a service account',
  ERR_K8S_NOT_FOUND: 'the referenced ConfigMap or Secret, or its key, does not exist',
  ERR_K8S_FORBIDDEN: 'the Kubernetes API refused access (403): the message names the verb and object to grant in the Role',
  ERR_K8S_API: 'the Kubernetes API could not be reached or answered with an error (401, 5xx, TLS or network trouble)',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ReverstErrorOptions {
  status?: number | undefined;
  cause?: unknown | undefined;
}

export class ReverstError extends Error {
  override name = 'ReverstError';
  readonly code: ErrorCode;
  /** The HTTP status this error maps to, where one applies. */
  readonly status?: number | undefined;

  constructor(code: ErrorCode, message: string, options: ReverstErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status;
  }
}

/** Where in a configuration source a problem is. */
export interface ConfigLocation {
  source: string;
  line?: number | undefined;
  column?: number | undefined;
  /** Field path such as `groups."flipt".authentication.basic.password`. */
  field?: string | undefined;
}

export interface ConfigIssue extends ConfigLocation {
  message: string;
}

export function formatConfigIssue(issue: ConfigIssue): string {
  const position = issue.line === undefined ? issue.source : `${issue.source}:${issue.line}:${issue.column ?? 1}`;
  return issue.field ? `${position}: ${issue.field}: ${issue.message}` : `${position}: ${issue.message}`;
}

export class ConfigError extends ReverstError {
  override name = 'ConfigError';
  readonly source: string;
  readonly line?: number | undefined;
  readonly column?: number | undefined;
  readonly field?: string | undefined;
  /** All problems found; the location fields above are those of the first. */
  readonly issues: readonly ConfigIssue[];

  constructor(issues: ConfigIssue[], options: { code?: ErrorCode; cause?: unknown } = {}) {
    if (issues.length === 0) throw new RangeError('ConfigError needs at least one issue');
    super(options.code ?? 'ERR_CONFIG_INVALID', issues.map(formatConfigIssue).join('\n'), { cause: options.cause });
    const first = issues[0]!;
    this.source = first.source;
    this.line = first.line;
    this.column = first.column;
    this.field = first.field;
    this.issues = issues;
  }
}

/** A peer sent bytes that do not follow the wire protocol. */
export class ProtocolError extends ReverstError {
  override name = 'ProtocolError';
}

/**
 * Why a registration failed, as the client sees it. Each class maps one-to-one to a
 * QUIC close code and reason (see `shared/protocol.ts`), and says whether retrying can help.
 */
export abstract class RegistrationError extends ReverstError {
  abstract readonly retryable: boolean;
}

export class UnauthorizedError extends RegistrationError {
  override name = 'UnauthorizedError';
  readonly retryable = false;
  constructor(message = 'unauthorized', options: ReverstErrorOptions = {}) {
    super('ERR_UNAUTHORIZED', message, { status: 401, ...options });
  }
}

export class NotFoundError extends RegistrationError {
  override name = 'NotFoundError';
  // A group may appear when the server reloads its configuration, but usually the name is
  // wrong: clients stop, unless told to wait for it (connect's retryNotFound).
  readonly retryable = false;
  constructor(message = 'not found', options: ReverstErrorOptions = {}) {
    super('ERR_GROUP_NOT_FOUND', message, { status: 404, ...options });
  }
}

export class BadRequestError extends RegistrationError {
  override name = 'BadRequestError';
  readonly retryable = false;
  constructor(message = 'bad request', options: ReverstErrorOptions = {}) {
    super('ERR_BAD_REQUEST', message, { status: 400, ...options });
  }
}

export class ServerError extends RegistrationError {
  override name = 'ServerError';
  readonly retryable = true;
  constructor(message = 'server error', options: ReverstErrorOptions = {}) {
    super('ERR_SERVER', message, { status: 500, ...options });
  }
}

/**
 * The node's certificate is not valid for the server name the client asked for, so no
 * handshake can succeed: retrying cannot help. Says which name was asked for and which the
 * certificate holds.
 */
export class ServerNameError extends RegistrationError {
  override name = 'ServerNameError';
  readonly retryable = false;
  readonly serverName: string;
  readonly certificateNames: readonly string[];
  constructor(serverName: string, certificateNames: readonly string[], options: ReverstErrorOptions = {}) {
    const holds = certificateNames.length > 0 ? `it holds ${certificateNames.join(', ')}` : 'it holds no names';
    super('ERR_TLS_SERVER_NAME', `the node's certificate is not valid for the server name ${JSON.stringify(serverName)}: ${holds}`, options);
    this.serverName = serverName;
    this.certificateNames = certificateNames;
  }
}
