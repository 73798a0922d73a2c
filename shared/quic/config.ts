import { quiche, type Config } from './native.js';
import type { QuicTransportOptions, TlsOptions } from './options.js';

const toBytes = (pem: string | Buffer): Uint8Array => (typeof pem === 'string' ? Buffer.from(pem) : pem);

/**
 * Builds quiche's Config once per endpoint and packet size; connections share it. `sendPayload`
 * is the largest UDP payload this side sends (see udpPayloadFor); any peer may send us up to the
 * loopback size, which only a peer on this machine does.
 */
export function buildConfig(o: QuicTransportOptions, tls: TlsOptions, isServer: boolean, sendPayload = o.maxUdpPayload): Config {
  const verifyPeer = tls.verifyPeer ?? !isServer;
  const config = quiche.Config.withBoringSslCtx(
    verifyPeer,
    false,
    tls.ca ? toBytes(tls.ca) : null,
    tls.key ? [toBytes(tls.key)] : null,
    tls.cert ? [toBytes(tls.cert)] : null,
    null,
  );
  // Without ALPN quiche fails the first send() with TlsFail.
  config.setApplicationProtos(o.alpn);
  config.setMaxIdleTimeout(o.idleTimeoutMs);
  config.setMaxRecvUdpPayloadSize(o.loopbackUdpPayload);
  config.setMaxSendUdpPayloadSize(sendPayload);
  config.setInitialMaxData(o.connectionWindow);
  config.setInitialMaxStreamDataBidiLocal(o.streamWindow);
  config.setInitialMaxStreamDataBidiRemote(o.streamWindow);
  config.setInitialMaxStreamDataUni(o.streamWindow);
  config.setInitialMaxStreamsBidi(o.maxStreams);
  config.setInitialMaxStreamsUni(16);
  config.setMaxStreamWindow(o.maxStreamWindow);
  config.setMaxConnectionWindow(o.maxConnectionWindow);
  config.setCcAlgorithmName(o.congestionControl);
  // One path per connection: no migration to handle.
  config.setDisableActiveMigration(true);
  return config;
}
