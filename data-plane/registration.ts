import { once } from 'node:events';
import type { AuthResult, Authenticator } from '../shared/auth/index.js';
import { NotFoundError, ProtocolError, ReverstError, ServerError, UnauthorizedError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { clip, type RateLimitedLog } from '../shared/log-limits.js';
import { CloseCode, PROTOCOL_VERSION, ResponseCode, closeForError, encodeFrame, readFrame, validateRegisterRequest } from '../shared/protocol.js';
import type { QuicConnection, QuicStream } from '../shared/quic/index.js';
import type { Metrics } from './metrics.js';
import type { Tunnel, TunnelRegistry } from './tunnels.js';

/** A client must finish registering within this long, or it is closed with 0x1 "registration timed out" (it may retry). */
export const DEFAULT_REGISTRATION_TIMEOUT_MS = 10_000;

export interface RegistrationDeps {
  nodeId: string;
  /** The group's authenticator now; undefined for a group not configured. */
  authenticator(group: string): Authenticator | undefined;
  registry: TunnelRegistry;
  metrics: Metrics;
  logger: Logger;
  /**
   * Where refusals are logged: anyone can cause them without credentials, so the
   * node passes one rate-limited log shared by every connection.
   */
  refusals: RateLimitedLog;
  timeoutMs: number;
  isDraining(): boolean;
}

/** The metrics label for registrations to a group this node does not serve: one series, whatever names peers send. */
export const UNKNOWN_GROUP_LABEL = '(unknown)';

let tunnelSeq = 0;

/**
 * Runs the registration handshake on a new connection: the client's first
 * stream carries one RegisterRequest frame; we answer with the node id and keep
 * that stream as the control stream. Any failure closes the connection with the
 * protocol's close code, so the client can print why. Each connection runs on its
 * own, so a slow external auth never holds up other registrations.
 */
export async function register(conn: QuicConnection, deps: RegistrationDeps): Promise<Tunnel | undefined> {
  const log = deps.logger.child({ remote: `${conn.remoteAddress.host}:${conn.remoteAddress.port}` });
  const deadline = Date.now() + deps.timeoutMs;
  let group = '';
  try {
    const control = await firstStream(conn, deps.timeoutMs);
    const request = checkRequest(await readFrame(control, { timeoutMs: Math.max(1, deadline - Date.now()) }));
    group = request.TunnelGroup;
    const authenticatorNow = (): Authenticator => {
      const a = deps.authenticator(group);
      if (!a) throw new NotFoundError('tunnel group is not configured on this node');
      return a;
    };
    let authenticator = authenticatorNow();
    let result = await withDeadline(authenticator.authenticate(request.Metadata.Authorization, group), deadline);
    // A reload while this client authenticated: its re-check of registered tunnels missed this
    // one, so check again against what is in force now (each reload brings new authenticators).
    for (let current = authenticatorNow(); result.ok && current !== authenticator; current = authenticatorNow()) {
      authenticator = current;
      result = await withDeadline(authenticator.authenticate(request.Metadata.Authorization, group), deadline);
    }
    if (!result.ok) {
      // An auth service that is down is the operator's problem: the client retries (0x1) instead of giving up.
      if (result.unavailable) throw new ServerError(`authentication unavailable: ${result.reason}`);
      throw new UnauthorizedError(`registration refused: ${result.reason}`);
    }
    if (conn.isClosing) return undefined;
    // A drain that began while this client authenticated: it should register elsewhere.
    if (deps.isDraining()) throw new ServerError('node is draining');

    control.write(encodeFrame({ Version: PROTOCOL_VERSION, Code: ResponseCode.Ok, Metadata: { NodeId: deps.nodeId } }));
    const tunnel: Tunnel = {
      id: `${deps.nodeId}-${++tunnelSeq}`,
      group,
      connection: conn,
      control,
      authorization: request.Metadata.Authorization,
      inFlight: 0,
    };
    watchControlStream(tunnel, deps.registry, log);
    deps.registry.add(tunnel);
    deps.metrics.registrations.inc({ group, result: 'ok' });
    log.info('tunnel registered', { group, tunnel: tunnel.id, strategy: result.strategy });
    return tunnel;
  } catch (err) {
    // A client that closes cleanly before registering (one that only looked at our certificate) made no registration.
    const info = conn.isClosing ? conn.closeInfo() : undefined;
    if (!group && info?.byPeer && info.app && info.code === CloseCode.NoError) {
      log.debug('client closed before registering', { reason: info.reason });
      return undefined;
    }
    const close = closeForError(err);
    close.reason = clip(close.reason, MAX_REASON_LENGTH);
    // Only configured groups get a series of their own: names from the wire would each add one for good.
    const label = group && deps.authenticator(group) ? group : UNKNOWN_GROUP_LABEL;
    deps.metrics.registrations.inc({ group: label, result: resultLabel(err) });
    deps.refusals.warn('registration failed', {
      remote: `${conn.remoteAddress.host}:${conn.remoteAddress.port}`,
      group: group ? clip(group) : undefined,
      reason: close.reason,
      error: clip((err as Error).message ?? String(err), MAX_REASON_LENGTH),
    });
    void conn.close(close);
    return undefined;
  }
}

/** Close reasons travel in one QUIC packet and are logged: keep them short. */
const MAX_REASON_LENGTH = 200;

/**
 * The registration frame checked; anything that goes wrong while checking it is the
 * frame's fault (a bad request the client must not retry), never a server error.
 */
function checkRequest(frame: unknown): ReturnType<typeof validateRegisterRequest> {
  try {
    return validateRegisterRequest(frame);
  } catch (err) {
    if (err instanceof ReverstError) throw err;
    throw new ProtocolError('ERR_PROTOCOL_BAD_MESSAGE', 'bad request: the registration frame could not be checked', { cause: err });
  }
}

/** What a re-check needs: the group's authenticator now, and whether its verdict still applies once it arrives. */
export interface ReauthorizeDeps {
  authenticator(): Authenticator | undefined;
  /** False once a later reload changed the group's authentication again (a newer check decides). */
  stillCurrent(): boolean;
  logger: Logger;
}

/**
 * Checks a registered tunnel's credentials against its group's current
 * authentication (after a reload changed it) and closes the tunnel with
 * `unauthorized` if they no longer pass, as a registration would have been.
 * An authentication service that cannot answer keeps the tunnel: an outage
 * should not cut tunnels that were let in. Never rejects.
 */
export async function reauthorize(tunnel: Tunnel, deps: ReauthorizeDeps): Promise<void> {
  if (tunnel.connection.isClosing) return;
  const log = deps.logger.child({ group: tunnel.group, tunnel: tunnel.id });
  let result: AuthResult;
  try {
    const authenticator = deps.authenticator();
    if (!authenticator) return; // the group is gone: its tunnels are closed as not found
    result = await authenticator.authenticate(tunnel.authorization, tunnel.group);
  } catch (err) {
    log.error('could not check a tunnel against the changed authentication; keeping it', { error: (err as Error).message });
    return;
  }
  if (result.ok || !deps.stillCurrent()) return;
  if (result.unavailable) {
    log.warn('could not check a tunnel against the changed authentication; keeping it', { reason: result.reason });
    return;
  }
  log.info("tunnel closed: its credentials no longer pass the group's authentication", { reason: result.reason });
  await tunnel.connection.close(closeForError(new UnauthorizedError(result.reason)));
}

/** The first client-initiated bidirectional stream in QUIC (RFC 9000 §2.1). */
const REGISTRATION_STREAM_ID = 0;

/**
 * The client's first stream (id 0) is the registration stream; it may open no
 * other, now or later, so every further stream is refused at once (and can never
 * surface an unhandled error). The choice goes by id, not arrival: streams that
 * arrive in one datagram, or after a loss, can be announced in any order.
 */
function firstStream(conn: QuicConnection, timeoutMs: number): Promise<QuicStream> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new ProtocolError('ERR_PROTOCOL_TIMEOUT', `no registration stream within ${timeoutMs}ms`)), timeoutMs);
    let first: QuicStream | undefined;
    conn.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      if (first || s.id !== REGISTRATION_STREAM_ID) return s.reset(0);
      first = s;
      clearTimeout(timer);
      resolve(s);
    });
    void conn.closed.then(() => {
      clearTimeout(timer);
      reject(new ProtocolError('ERR_PROTOCOL_UNEXPECTED_EOF', 'connection closed before registering'));
    });
  });
}

async function withDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProtocolError('ERR_PROTOCOL_TIMEOUT', 'registration did not complete in time')), Math.max(1, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long requests already on a leaving tunnel get to finish. */
const LEAVE_GRACE_MS = 30_000;

/**
 * The client ending its control stream means it is leaving: no new requests go
 * to the tunnel from then on, and those in flight finish before the connection closes.
 */
function watchControlStream(tunnel: Tunnel, registry: TunnelRegistry, log: Logger): void {
  const { control, connection } = tunnel;
  control.resume(); // frames from the client are not defined yet: read and ignore
  const leave = (): void => {
    if (connection.isClosing) return;
    log.info('client left: finishing its requests in flight', { tunnel: tunnel.id, inFlight: tunnel.inFlight });
    registry.remove(tunnel);
    control.end(); // the grace below waits for every stream, this one included
    void connection.close({ code: CloseCode.NoError, reason: 'client left', graceMs: LEAVE_GRACE_MS });
  };
  control.once('end', leave);
  control.once('close', leave);
  // It may have ended while the client was being authenticated.
  if (control.readableEnded || control.destroyed) leave();
  void once(control, 'error').catch(() => {});
}

function resultLabel(err: unknown): string {
  if (err instanceof UnauthorizedError) return 'unauthorized';
  if (err instanceof NotFoundError) return 'not_found';
  if (err instanceof ProtocolError && err.code === 'ERR_PROTOCOL_TIMEOUT') return 'timeout';
  if (err instanceof ProtocolError) return 'bad_request';
  return 'error';
}
