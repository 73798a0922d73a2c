// The tunnel against a stand-in node speaking the real protocol over real QUIC, so that
// refusals, lost connections, drains and restarts can be driven on demand.
import { once } from 'node:events';
import { beforeAll, describe, expect, it } from 'vitest';
import { freePort, makeCa, makeServerCert, onCleanup, useCleanup, type KeyPair } from '../test/harness/index.js';
import { startFakeNode, type FakeNode } from '../test/fixtures/fake-node.js';
import { CloseCode } from '../shared/protocol.js';
import { QuicTlsError } from '../shared/quic/index.js';
import { BadRequestError, ServerError, UnauthorizedError, basic, connect, type ConnectOptions, type ReconnectingEvent, Tunnel } from './index.js';

useCleanup();

let ca: KeyPair;
let server: KeyPair;
beforeAll(async () => {
  ca = await makeCa();
  server = await makeServerCert(ca);
});

const hello = (request: Request) => new Response(`hello ${new URL(request.url).pathname}`);

function tunnelOptions(addresses: string[], extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return {
    addresses,
    serverName: 'localhost',
    ca: ca.cert,
    group: 'g',
    auth: basic('user', 'pass'),
    handler: hello,
    minDelayMs: 20,
    maxDelayMs: 200,
    ...extra,
  };
}

function track(tunnel: Tunnel): Tunnel {
  onCleanup(() => tunnel.close({ graceMs: 0 }));
  return tunnel;
}

async function open(addresses: string[], extra: Partial<ConnectOptions> = {}): Promise<Tunnel> {
  return track(await connect(tunnelOptions(addresses, extra)));
}

function start(addresses: string[], extra: Partial<ConnectOptions> = {}): { tunnel: Tunnel; retries: ReconnectingEvent[] } {
  const tunnel = track(new Tunnel(tunnelOptions(addresses, extra)));
  const retries: ReconnectingEvent[] = [];
  tunnel.on('reconnecting', (event) => retries.push(event));
  return { tunnel, retries };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A handler whose requests wait until the test lets them go. */
function gate() {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let arrived!: () => void;
  const arrival = new Promise<void>((resolve) => (arrived = resolve));
  const handler = async () => {
    arrived();
    await released;
    return new Response('done');
  };
  return { handler, arrival, release };
}

describe('registration', () => {
  it('registers with the group and credentials, then serves requests', async () => {
    const node = await startFakeNode({ server, nodeId: 'node-a' });
    const tunnel = await open([node.address]);
    expect(tunnel.tunnels).toEqual([{ address: node.address, nodeId: 'node-a' }]);
    const registration = await node.nextRegistration(true);
    expect(registration.request).toEqual({ Version: 1, TunnelGroup: 'g', Metadata: { Authorization: `Basic ${Buffer.from('user:pass').toString('base64')}` } });
    const res = await node.send(registration, { path: '/x' });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('hello /x');
  });

  it.each([
    ['unauthorized', UnauthorizedError],
    ['bad request', BadRequestError],
  ])('rejects with the typed error on %s, without retrying', async (reason, ErrorClass) => {
    const node = await startFakeNode({ server, refuse: () => ({ code: CloseCode.ClientError, reason }) });
    const { tunnel, retries } = start([node.address]);
    await expect(tunnel.ready).rejects.toBeInstanceOf(ErrorClass);
    expect(await tunnel.closed).toBeInstanceOf(ErrorClass);
    await sleep(100);
    expect(node.attempts).toBe(1);
    expect(retries).toEqual([]);
  });

  it('connect() rejects with the typed error', async () => {
    const node = await startFakeNode({ server, refuse: () => ({ code: CloseCode.ClientError, reason: 'unauthorized' }) });
    await expect(connect(tunnelOptions([node.address]))).rejects.toThrow(UnauthorizedError);
  });

  it('retries "not found" and server errors until the node accepts', async () => {
    let refusals = [
      { code: CloseCode.ClientError, reason: 'not found' },
      { code: CloseCode.ServerError, reason: 'store down' },
    ];
    const node = await startFakeNode({ server, refuse: () => refusals.shift() });
    const { tunnel, retries } = start([node.address]);
    await tunnel.ready;
    expect(retries.map((r) => [r.attempt, r.error.message])).toEqual([
      [1, 'not found'],
      [2, 'server error: store down'],
    ]);
    expect(node.attempts).toBe(3);
    refusals = [];
  });

  it('fails over to the next address, in order', async () => {
    const dead = `127.0.0.1:${await freePort('udp')}`;
    const node = await startFakeNode({ server, nodeId: 'b' });
    const { tunnel, retries } = start([dead, node.address]);
    const ready = once(tunnel, 'ready');
    expect(await ready).toEqual([{ address: node.address, nodeId: 'b' }]);
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatchObject({ attempt: 1, address: dead });
    expect(retries[0].delayMs).toBeGreaterThanOrEqual(20);
  });

  it('retries a TLS failure, with the reason in the event', async () => {
    const node = await startFakeNode({ server });
    const { tunnel, retries } = start([node.address], { serverName: 'not-the-name.example' });
    await expect.poll(() => retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0].error).toBeInstanceOf(QuicTlsError);
    expect(node.registrations).toHaveLength(0);
    await tunnel.close();
  });

  it('without a CA, verifies against the public roots (which do not include a test CA)', async () => {
    const node = await startFakeNode({ server });
    const { tunnel, retries } = start([node.address], { ca: undefined });
    await expect.poll(() => retries.length).toBeGreaterThanOrEqual(1);
    expect(retries[0].error.message).toMatch(/unknown CA|certificate/);
    await tunnel.close();
  });

  it('connects without verification when insecure', async () => {
    const node = await startFakeNode({ server });
    const tunnel = await open([node.address], { ca: undefined, insecure: true, serverName: 'anything' });
    expect(tunnel.tunnels).toHaveLength(1);
  });

  it('stops when the signal aborts while it is still retrying', async () => {
    const dead = `127.0.0.1:${await freePort('udp')}`;
    const abort = new AbortController();
    const { tunnel, retries } = start([dead], { signal: abort.signal });
    await expect.poll(() => retries.length).toBeGreaterThanOrEqual(1);
    abort.abort();
    await expect(tunnel.ready).rejects.toThrow();
    expect(await tunnel.closed).toBeUndefined();
  });
});

describe('staying connected', () => {
  it('reconnects when the node closes the connection', async () => {
    const node = await startFakeNode({ server });
    const { tunnel, retries } = start([node.address]);
    await tunnel.ready;
    const first = await node.nextRegistration(true);
    const second = node.nextRegistration();
    await first.conn.close({ code: CloseCode.ServerError, reason: 'restarting' });
    const registration = await second;
    expect(retries[0].error).toBeInstanceOf(ServerError);
    expect(retries[0].error.message).toBe('server error: restarting');
    expect((await node.send(registration)).status).toBe(200);
  });

  it('comes back after the node restarts on the same port', async () => {
    let node: FakeNode = await startFakeNode({ server, nodeId: 'before' });
    const { tunnel, retries } = start([node.address]);
    await tunnel.ready;
    await node.close();
    await expect.poll(() => retries.length).toBeGreaterThanOrEqual(3);
    node = await startFakeNode({ server, nodeId: 'after', port: node.port });
    const [ready] = await once(tunnel, 'ready');
    expect(ready).toEqual({ address: node.address, nodeId: 'after' });
    expect((await node.send(await node.nextRegistration(true), { path: '/back' })).body.toString()).toBe('hello /back');
  });

  it('does not crash on a request stream the node resets, and keeps serving', async () => {
    const node = await startFakeNode({ server });
    await open([node.address]);
    const registration = await node.nextRegistration(true);
    const stream = await node.openRequestStream(registration);
    stream.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial');
    await sleep(50);
    stream.reset(0x10);
    await sleep(50);
    expect((await node.send(registration)).status).toBe(200);
  });

  it('ignores control frames of unknown types', async () => {
    const node = await startFakeNode({ server });
    const tunnel = await open([node.address]);
    const registration = await node.nextRegistration(true);
    const { encodeFrame } = await import('../shared/protocol.js');
    registration.control.write(encodeFrame({ Type: 'from-the-future', Anything: 1 }));
    await sleep(100);
    expect(tunnel.tunnels).toHaveLength(1);
    expect((await node.send(registration)).status).toBe(200);
  });

  it('stops with the typed error when the node later refuses it for good', async () => {
    const node = await startFakeNode({ server });
    const tunnel = await open([node.address]);
    const errors: Error[] = [];
    tunnel.on('error', (error) => errors.push(error));
    const registration = await node.nextRegistration(true);
    await registration.conn.close({ code: CloseCode.ClientError, reason: 'unauthorized' });
    expect(await tunnel.closed).toBeInstanceOf(UnauthorizedError);
    expect(errors).toHaveLength(1);
    await sleep(100);
    expect(node.attempts).toBe(1);
  });

  it('on drain, registers elsewhere first, lets in-flight requests finish, then lets the old connection go', async () => {
    const a = await startFakeNode({ server, nodeId: 'a' });
    const b = await startFakeNode({ server, nodeId: 'b' });
    const slow = gate();
    const tunnel = await open([a.address, b.address], { handler: slow.handler });
    const onA = await a.nextRegistration(true);
    const inFlight = a.send(onA);
    await slow.arrival;

    const drained = once(tunnel, 'drain');
    const replaced = once(tunnel, 'ready');
    let aClosedAt = 0;
    void onA.conn.closed.then(() => (aClosedAt = performance.now()));
    a.drain(onA, 10_000);
    expect(await drained).toEqual([{ address: a.address, nodeId: 'a', deadlineMs: 10_000 }]);
    expect(await replaced).toEqual([{ address: b.address, nodeId: 'b' }]);
    expect(tunnel.tunnels).toEqual([{ address: b.address, nodeId: 'b' }]);
    // The replacement is up but a request is still running on the drained connection.
    await sleep(100);
    expect(aClosedAt).toBe(0);
    slow.release();
    expect((await inFlight).body.toString()).toBe('done');
    await onA.conn.closed;
    expect(aClosedAt).toBeGreaterThan(0);
  });

  it('holds tunnels on distinct nodes when asked for several connections', async () => {
    const a = await startFakeNode({ server, nodeId: 'a' });
    const b = await startFakeNode({ server, nodeId: 'b' });
    const tunnel = await open([a.address, b.address], { connections: 2 });
    await expect.poll(() => tunnel.tunnels.map((t) => t.nodeId).sort()).toEqual(['a', 'b']);
  });
});

describe('close()', () => {
  it('lets an in-flight request finish, refuses new ones meanwhile, and does not reconnect', async () => {
    const node = await startFakeNode({ server });
    const slow = gate();
    const tunnel = await open([node.address], { handler: slow.handler });
    const registration = await node.nextRegistration(true);
    const inFlight = node.send(registration);
    await slow.arrival;
    const closing = tunnel.close({ graceMs: 5_000 });
    // Arriving after close() began: reset unanswered, so a node can retry it elsewhere.
    await expect(node.send(registration, { path: '/late' })).rejects.toThrow();
    slow.release();
    expect((await inFlight).body.toString()).toBe('done');
    await closing;
    expect(await tunnel.closed).toBeUndefined();
    expect((await registration.conn.closed).reason).toBe('client leaving');
    await sleep(100);
    expect(node.attempts).toBe(1);
  });

  it('resets requests still running when the grace runs out', async () => {
    const node = await startFakeNode({ server });
    const stuck = gate();
    const tunnel = await open([node.address], { handler: stuck.handler });
    const registration = await node.nextRegistration(true);
    const cut = expect(node.send(registration)).rejects.toThrow();
    await stuck.arrival;
    const started = performance.now();
    await tunnel.close({ graceMs: 100 });
    expect(performance.now() - started).toBeLessThan(2_000);
    await cut;
    stuck.release();
  });
});
