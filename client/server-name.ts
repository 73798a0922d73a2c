/**
 * A failed TLS handshake has several causes (CA, name, expiry); a wrong server name is the
 * one users make most and the one no retry can fix. After a TLS failure, look at the node's
 * certificate once without verifying it, to tell a wrong name apart and say which names
 * the certificate holds.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { ServerNameError } from '../shared/errors.js';
import { certificateNames } from '../shared/pem.js';
import { CloseCode } from '../shared/protocol.js';
import { QuicTlsError, connectQuic, type QuicConnectOptions } from '../shared/quic/index.js';

/** `error`, or a ServerNameError (not retryable) when the node's certificate does not carry the name asked for. */
export async function explainTlsFailure(error: unknown, dial: QuicConnectOptions): Promise<unknown> {
  if (!(error instanceof QuicTlsError) || dial.verifyPeer === false) return error;
  const serverName = dial.serverName ?? dial.host;
  let probe;
  try {
    probe = await connectQuic({ ...dial, verifyPeer: false, ca: undefined });
  } catch {
    return error;
  }
  try {
    const [leaf] = probe.peerCertificates();
    if (!leaf) return error;
    const cert = new X509Certificate(leaf);
    const valid = isIP(serverName) ? cert.checkIP(serverName) : cert.checkHost(serverName);
    return valid ? error : new ServerNameError(serverName, certificateNames(cert), { cause: error });
  } catch {
    return error;
  } finally {
    await probe.close({ code: CloseCode.NoError, reason: 'certificate checked' });
  }
}
