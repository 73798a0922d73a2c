import { quiche, type Config } from './native.js';
import type { QuicTransportOptions, TlsOptions } from './options.js';

const toBytes = (pem: string | Buffer): Uint8Array => (typeof pem === 'string' ? Buffer.from(pem) : pem);

/** Client configs kept for reuse: a tunnel dials with the same settings every time. */
const CLIENT_CONFIG_CACHE = 16;
const clientConfigs = new Map<string, Config>();

/**
 * A client Config for these settings, built once and then reused: building one parses the CA
 * bundle and sets up a TLS context, a noticeable share of a dial when thousands reconnect at once.
 */
export function clientConfig(o: QuicTransportOptions, tls: TlsOptions, sendPayload: number): Config {
  const pem = (v: string | Buffer | undefined): string => (v === undefined ? '' : typeof v === 'string' ? v : v.toString('latin1'));
  const key = JSON.stringify([o, sendPayload, tls.verifyPeer ?? null, pem(tls.ca), pem(tls.key), pem(tls.cert)]);
  let config = clientConfigs.get(key);
  if (!config) {
    config = buildConfig(o, tls, false, sendPayload);
    if (clientConfigs.size >= CLIENT_CONFIG_CACHE) clientConfigs.delete(clientConfigs.keys().next().value!);
    clientConfigs.set(key, config);
  }
  return config;
}

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
