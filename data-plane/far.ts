import type { Duplex } from 'node:stream';
import { StreamCode } from '../shared/protocol.js';
import { QuicStreamResetError, type QuicStream } from '../shared/quic/index.js';
import { type Tunnel, TunnelSilentError, whenSilent } from './tunnels.js';

/**
 * Where a request is sent: a stream on one of this node's tunnels, or an exchange
 * with another node over the hop. Either way one duplex carries the v2 request head
 * and body out and the v2 response head and body back.
 */
export interface Far {
  readonly kind: 'tunnel' | 'hop';
  readonly stream: Duplex;
  /** The tunnel or node, for logs. */
  readonly label: string;
  /** Whether `error` shows the far side did not process the request (so even a POST may go elsewhere). */
  unprocessed(error: unknown): boolean;
  /** Drop it both ways at once (the visitor left, the deadline passed), so the far side gets its credit back. */
  abandon(): void;
}

const ignore = (): void => {};

/** A request stream on one of this node's tunnels. */
export class TunnelFar implements Far {
  readonly kind = 'tunnel';
  readonly label: string;
  #unwatch: (() => void) | undefined;

  constructor(
    readonly tunnel: Tunnel,
    readonly stream: QuicStream,
  ) {
    this.label = tunnel.id;
    tunnel.inFlight++;
    stream.once('close', () => tunnel.inFlight--);
    // Failures are seen by the request reading it; one arriving between its listeners must not crash the node.
    stream.on('error', ignore);
  }

  unprocessed(error: unknown): boolean {
    // Never on the wire, refused by a client that is leaving (like HTTP/3's H3_REQUEST_REJECTED), or a head it could not read.
    if (!this.stream.created || error instanceof TunnelSilentError) return true;
    return error instanceof QuicStreamResetError && (error.resetCode === StreamCode.Refused || error.resetCode === StreamCode.BadHead);
  }

  /**
   * Calls `onSilent` if the tunnel's client turns suspect having sent nothing since `since`
   * (before the request's first byte went out): the request never reached a live client.
   */
  whenSilent(since: number, onSilent: (silent: TunnelSilentError) => void): void {
    this.#unwatch = whenSilent(this.tunnel, since, () => onSilent(new TunnelSilentError(this.tunnel.id)));
    this.stream.once('close', () => this.unwatch());
  }

  unwatch(): void {
    this.#unwatch?.();
    this.#unwatch = undefined;
  }

  abandon(): void {
    if (!this.stream.destroyed) this.stream.reset(StreamCode.Cancelled);
  }
}
