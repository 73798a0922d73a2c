import dgram from 'node:dgram';

/** A UDP socket with large kernel buffers: bursts of QUIC packets overflow the 208 KiB default. */
export async function bindUdp(host: string, port: number, bufferSize: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: host.includes(':') ? 'udp6' : 'udp4' });
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
