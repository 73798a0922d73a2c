// Typed errors of the transport. Nothing outside shared/quic sees quiche's
// generic Error strings: they are turned into these.
import { ReverstError, type ErrorCode } from '../errors.js';

/** The transport's codes, documented with all the others in ERROR_CODES. */
export type QuicErrorCode = Extract<ErrorCode, `ERR_QUIC_${string}`>;

export class QuicError extends ReverstError {
  override name = 'QuicError';
  declare readonly code: QuicErrorCode;
  constructor(code: QuicErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { cause: options.cause });
  }
}

/** The handshake did not finish within the connect timeout. */
export class QuicConnectTimeoutError extends QuicError {
  override name = 'QuicConnectTimeoutError';
  constructor(address: string, timeoutMs: number) {
    super(
      'ERR_QUIC_CONNECT_TIMEOUT',
      `no QUIC handshake with ${address} within ${timeoutMs} ms (is a node listening there? raise connectTimeout if the path is slow)`,
    );
  }
}

/** The peer's host answered with ICMP port unreachable: nothing listens on that UDP port. */
export class QuicConnectionRefusedError extends QuicError {
  override name = 'QuicConnectionRefusedError';
  constructor(address: string, cause?: unknown) {
    super('ERR_QUIC_CONNECTION_REFUSED', `connection refused by ${address}: nothing listens on that UDP port`, { cause });
  }
}

// TLS alert descriptions (RFC 8446 §6) that a misconfiguration produces.
const TLS_ALERTS: Record<number, string> = {
  40: 'handshake failure',
  42: 'bad certificate',
  43: 'unsupported certificate',
  45: 'certificate expired',
  46: 'certificate unknown',
  48: 'unknown CA: the server certificate is not signed by a trusted CA (check ca)',
  49: 'access denied',
  80: 'internal error',
  112: 'unrecognized name',
  116: 'certificate required',
  120: 'no application protocol: the peers share no ALPN (check that both speak the same protocol version)',
};

/** The TLS handshake failed: certificate, server name or ALPN. */
export class QuicTlsError extends QuicError {
  override name = 'QuicTlsError';
  constructor(
    readonly alert: number,
    readonly byPeer: boolean,
    detail?: string,
  ) {
    const what = TLS_ALERTS[alert] ?? `alert ${alert}`;
    super('ERR_QUIC_TLS', `TLS handshake failed (${byPeer ? 'peer' : 'local'}): ${what}${detail ? ` — ${detail}` : ''}`);
  }
}

/** No packet from the peer within the idle timeout: the peer is gone. */
export class QuicIdleTimeoutError extends QuicError {
  override name = 'QuicIdleTimeoutError';
  constructor(timeoutMs: number) {
    super('ERR_QUIC_IDLE_TIMEOUT', `peer silent for the idle timeout (${timeoutMs} ms): connection dropped`);
  }
}

/** What we sent went unacknowledged, with nothing at all heard from the peer, for this long: the peer is gone. */
export class QuicPeerUnresponsiveError extends QuicError {
  override name = 'QuicPeerUnresponsiveError';
  constructor(timeoutMs: number) {
    super('ERR_QUIC_PEER_UNRESPONSIVE', `peer acknowledged nothing for ${timeoutMs} ms while data waited for it: connection dropped`);
  }
}

/** The connection was closed (by either side) while something still used it. */
export class QuicClosedError extends QuicError {
  override name = 'QuicClosedError';
  constructor(readonly info: QuicCloseInfo) {
    const who = info.byPeer ? 'peer' : 'local side';
    const reason = info.reason ? `: ${info.reason}` : '';
    super('ERR_QUIC_CLOSED', `connection closed by ${who} (${info.app ? 'application' : 'transport'} code 0x${info.code.toString(16)})${reason}`);
  }
}

/** The peer reset the stream (RESET_STREAM or STOP_SENDING) with an application code. */
export class QuicStreamResetError extends QuicError {
  override name = 'QuicStreamResetError';
  constructor(
    readonly streamId: number,
    readonly resetCode: number,
  ) {
    super('ERR_QUIC_STREAM_RESET', `stream ${streamId} reset by peer (code 0x${resetCode.toString(16)})`);
  }
}

/** Why a connection ended. `error` is set when the end was not a deliberate application close. */
export interface QuicCloseInfo {
  byPeer: boolean;
  app: boolean;
  code: number;
  reason: string;
  error?: QuicError;
}

// quiche reports TLS failures as transport error codes 0x100 + alert.
const CRYPTO_ERROR_START = 0x100;
const CRYPTO_ERROR_STOP = 0x1ff;

export function isCryptoError(code: number): boolean {
  return code >= CRYPTO_ERROR_START && code <= CRYPTO_ERROR_STOP;
}

export function tlsAlertOf(code: number): number {
  return code - CRYPTO_ERROR_START;
}
