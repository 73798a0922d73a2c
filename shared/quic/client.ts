import { lookup } from 'node:dns/promises';
import { clientConfig } from './config.js';
import { QuicConnection, type HostPort } from './connection.js';
import { QuicConnectTimeoutError, QuicConnectionRefusedError, QuicClosedError } from './errors.js';
import { quiche } from './native.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, parseQuicOptions, udpPayloadFor, type QuicTransportOverrides, type TlsOptions } from './options.js';
import { randomId } from './buffers.js';
import { bindUdp } from './socket.js';

/** Connect timeouts a handshake gets once the server has answered (see connectQuic). */
const CONNECT_PATIENCE = 3;

export interface QuicConnectOptions extends QuicTransportOverrides, TlsOptions {
  alpn: string[];
  host: string;
  port: number;
  /** Name checked against the server certificate and sent as SNI (default: host). */
  serverName?: string | undefined;
  connectTimeoutMs?: number | undefined;
}

/**
 * Dial a QUIC server on a socket of its own. Resolves once the handshake is
 * complete; rejects with a typed error on timeout, refusal or TLS failure.
 */
export async function connectQuic(opts: QuicConnectOptions): Promise<QuicConnection> {
  const options = parseQuicOptions(opts);
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const target = `${opts.host}:${opts.port}`;
  const { address, family } = await lookup(opts.host);
  const sendPayload = udpPayloadFor(options, address);
  const config = clientConfig(options, opts, sendPayload);
  const socket = await bindUdp(family === 6 ? '::' : '0.0.0.0', 0, options.socketBuffer);
  const remote: HostPort = { host: address, port: opts.port };
  let local: HostPort;
  let native;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(opts.port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const a = socket.address();
    local = { host: a.address, port: a.port };
    native = quiche.Connection.connect(opts.serverName ?? opts.host, randomId(20), local, remote, config);
  } catch (err) {
    // Reconnect loops call this again and again: never leave the socket behind.
    socket.close();
    throw err;
  }
  const conn = new QuicConnection(native, {
    isServer: false,
    options,
    remote,
    local,
    sendPayload,
    sink: {
      // The socket is connected: no per-packet address (and no lookup).
      sendPacket: (buf, offset, length) => socket.send(buf, offset, length),
      release: () => socket.close(),
    },
  });
  socket.on('message', (msg) => conn.receive(msg, remote));
  socket.on('error', (err: NodeJS.ErrnoException) => {
    // ICMP port unreachable surfaces as ECONNREFUSED on a connected socket: the
    // peer's process is gone (before or after the handshake), so don't wait for
    // the idle timeout to say so.
    if (err.code === 'ECONNREFUSED') conn.abort(new QuicConnectionRefusedError(target, err));
  });

  // A server that has answered (even with a Retry) is there and working through a crowd: giving
  // up to dial again would only add to its load, so its handshake gets a few more timeouts.
  const dialled = performance.now();
  let waited = 0;
  let timer: NodeJS.Timeout | undefined;
  const onTimeout = (): void => {
    waited += timeoutMs;
    if (conn.heardSince(dialled) && waited < timeoutMs * CONNECT_PATIENCE) timer = setTimeout(onTimeout, timeoutMs);
    else conn.giveUp(new QuicConnectTimeoutError(target, waited));
  };
  timer = setTimeout(onTimeout, timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      conn.once('established', resolve);
      conn.closed.then((info) => reject(info.error ?? new QuicClosedError(info)));
      conn.schedule();
    });
  } finally {
    clearTimeout(timer);
  }
  return conn;
}
