import dgram from 'node:dgram';

/** A UDP socket with large kernel buffers: bursts of QUIC packets overflow the 208 KiB default. */
export async function bindUdp(host: string, port: number, bufferSize: number): Promise<dgram.Socket> {
  const family = host.includes(':') ? 6 : 4;
  // We only ever send to IP literals: answering the lookup at once spares a
  // dns.lookup and a nextTick per packet.
  const lookup = (address: string, _opts: unknown, cb: (err: Error | null, address: string, family: number) => void): void => cb(null, address, family);
  const socket = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', lookup: lookup as never });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  for (const set of [socket.setRecvBufferSize, socket.setSendBufferSize]) {
    try {
      set.call(socket, bufferSize);
    } catch {
      // The kernel refused the size; keep its default rather than fail.
    }
  }
  return socket;
}
